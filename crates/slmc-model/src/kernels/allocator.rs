//! The C allocator's settings for tensor work. glibc returns every freed block above 128 KB to
//! the kernel (`munmap`, or trimming the heap top), so each new activation buffer is faulted in
//! and zeroed page by page again: measured on flex, about 15 % of a training step and the
//! difference between 150 and 195 GFLOP/s for a 1024 × 384 × 1024 product. Keeping freed memory
//! in the process (mmap only above 32 MB, no trimming) lets buffers be reused, as PyTorch's and
//! other tensor runtimes' caching allocators do. Peak resident memory is unchanged: nothing is
//! allocated that would not be; it is just not handed back between steps.

/// Applies the settings above (glibc on Linux; elsewhere nothing). Settings the user gives in
/// the environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) win. Call once, early,
/// before threads allocate.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before the compute
        // threads start.
        unsafe {
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            }
            if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        }
    }
}

/// Hands the free memory the allocator keeps back to the kernel (glibc's `malloc_trim`), so that
/// resident memory counts live data only: what a stage does before it resets its peak-memory
/// measurement. Elsewhere nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
