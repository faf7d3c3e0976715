//! Builds the appliance kernel (release, x86_64-unknown-none) with cargo.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
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
    once(&BUILT, build_kernel)
}

/// The result of `build`, run at most once per process.
fn once(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    build: fn() -> Result<PathBuf>,
) -> Result<PathBuf> {
    cell.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs cargo for the kernel; `Ok(path)` of the ELF.
pub fn build_kernel() -> Result<PathBuf> {
    cargo_kernel(&kernel_target_dir(), &[])
}

/// The same kernel with its symbol table (the release profile strips it
/// from the appliance's image; "debuginfo" is what Cargo strips by default
/// without `debug`), built once per process in its own target directory,
/// for tests that read symbols.
pub fn kernel_with_symbols() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || {
        let dir = workspace_root().join("target").join("kernel-symbols");
        cargo_kernel(
            &dir,
            &[
                "--config",
                "profile.release.package.pias-kernel.strip=\"debuginfo\"",
            ],
        )
    })
}

/// `cargo build` of the kernel (release) into `target_dir`, with `extra`
/// arguments; the ELF's path.
fn cargo_kernel(target_dir: &Path, extra: &[&str]) -> Result<PathBuf> {
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
        .args(extra)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("running cargo to build the kernel")?;
    if !status.success() {
        bail!("kernel build failed ({status})");
    }
    let elf = target_dir.join("x86_64-unknown-none/release/pias-kernel");
    if !elf.exists() {
        bail!("kernel build produced no {}", elf.display());
    }
    Ok(elf)
}

/// Builds the target agent (`pias-agent`, release) once per process and
/// returns the binary's path; its own target directory, like the kernel's.
pub fn agent() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, build_agent)
}

fn build_agent() -> Result<PathBuf> {
    build_host_bin("pias-agent", "pias-agent", "agent")
}

/// The operator CLI (`piasctl`), built once per process in release mode.
pub fn piasctl() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BUILT, || build_host_bin("pias-ctl", "piasctl", "ctl"))
}

/// Builds binary `bin` of package `package` (release, in target/`dir`).
fn build_host_bin(package: &str, bin: &str, dir: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = workspace_root().join("target").join(dir);
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--release",
            "--target-dir",
        ])
        .arg(&dir)
        .status()
        .with_context(|| format!("running cargo to build {bin}"))?;
    if !status.success() {
        bail!("{bin} build failed ({status})");
    }
    let path = dir.join("release").join(bin);
    if !path.exists() {
        bail!("{bin} build produced no {}", path.display());
    }
    Ok(path)
}
