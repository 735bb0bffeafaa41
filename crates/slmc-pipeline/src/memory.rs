//! The process's peak resident memory (Linux `VmHWM`), and resetting it so that a stage can
//! measure the peak of its own work (a training loop) apart from loading and saving.

/// The peak resident memory since the process started or since [`reset_peak_rss`], in bytes.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak to the current resident memory (`5` into `/proc/self/clear_refs`, Linux ≥ 4.0);
/// false where that is not possible. Free memory the allocator keeps for reuse
/// (`slmc_model::kernels::tune_allocator`) is released first, so the new peak starts from live data.
pub(crate) fn reset_peak_rss() -> bool {
    slmc_model::kernels::release_free_memory();
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
