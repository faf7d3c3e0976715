//! Builds the appliance kernel (release, x86_64-unknown-none) with cargo.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (this crate lives in `<root>/qemu`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Its own target directory, so building it from inside `cargo test` does not
/// wait on the lock of the outer build.
pub fn kernel_target_dir() -> PathBuf {
    workspace_root().join("target").join("kernel")
}

/// Builds the kernel once per process and returns the ELF's path.
pub fn kernel() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_kernel().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs cargo for the kernel; `Ok(path)` of the ELF.
pub fn build_kernel() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "pias-kernel",
            "--target",
            "x86_64-unknown-none",
            "--release",
        ])
        .arg("--target-dir")
        .arg(kernel_target_dir())
        .status()
        .context("running cargo to build the kernel")?;
    if !status.success() {
        bail!("kernel build failed ({status})");
    }
    let elf = kernel_target_dir().join("x86_64-unknown-none/release/pias-kernel");
    if !elf.exists() {
        bail!("kernel build produced no {}", elf.display());
    }
    Ok(elf)
}
