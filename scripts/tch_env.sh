# Source me (bash): puts .venv-tch's python first on PATH and points torch-sys / the loader at
# PyPI's libtorch 2.9.0. Run scripts/setup_tch.sh once first.
#   source scripts/tch_env.sh && CARGO_TARGET_DIR=target-tch cargo build --release -p slmc-cli --features tch
_slmc_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$_slmc_root/scripts/setup_tch.sh" --env)"
unset _slmc_root
