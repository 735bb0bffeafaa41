//! Backend selection: flex (pure-Rust CPU) always; cuda and tch when compiled in.

use anyhow::{Context, bail};
use burn::prelude::Device;

/// The device named on the command line.
pub fn device(name: &str) -> anyhow::Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        // burn 0.22 marks burn-tch deprecated (in favour of CubeCL backends); it is still the
        // libtorch route, built offline against PyPI's torch (docs/backends.md).
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => Ok(Device::libtorch()),
        #[cfg(not(feature = "cuda"))]
        "cuda" => not_built(name),
        #[cfg(not(feature = "tch"))]
        "tch" => not_built(name),
        other => bail!("unknown device `{other}`; expected flex, cuda or tch"),
    }
}

fn not_built(name: &str) -> anyhow::Result<Device> {
    bail!(
        "this slmc was built without the `{name}` backend; rebuild with `cargo build --release --features {name}`"
    )
}

/// Sizes the global thread pool the flex backend computes on. More threads than cores only
/// slow the kernels down (they wait on each other), so a larger count is lowered to the core
/// count, with a warning.
pub fn configure_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let Some(asked) = threads else { return Ok(()) };
    if asked == 0 {
        bail!("--threads must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(asked, |n| n.get());
    let n = asked.min(cores);
    if n < asked {
        eprintln!("warning: --threads {asked} is more than the {cores} cores here; using {cores}");
    }
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("could not size the thread pool")
}
