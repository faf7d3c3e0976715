//! Bootable disk images: the kernel and a config blob behind GRUB (multiboot2,
//! the blob as the boot module), as a hybrid ISO, a raw disk or a qcow2.
//!
//! The blob sits in a fixed slot of `MAX_BLOB` bytes (zeros after it; the
//! kernel's loader trims them), so `set_config` can replace the config of an
//! existing image in place, without GRUB or a rebuild.

use anyhow::{bail, Context, Result};
use pias::blob::{self, MAX_BLOB};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image formats `build` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A hybrid ISO 9660 image: boots as a CD-ROM or, written to a disk or
    /// USB stick, as a disk (GRUB for BIOS from `grub-pc-bin`).
    Iso,
    /// The same bytes, named as a raw disk image (`-drive format=raw`).
    Raw,
    /// The raw disk converted by `qemu-img convert -O qcow2`.
    Qcow2,
}

/// ISO 9660 places every file's data at a 2,048-byte sector boundary.
const SECTOR: usize = 2048;

/// The GRUB menu: serial console, no delay, the kernel and its config module.
const GRUB_CFG: &str = "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\n\
terminal_input serial console\nterminal_output serial console\n\
menuentry \"PIAS\" {\n  multiboot2 /boot/pias.elf\n  module2 /boot/pias.blob pias-config\n  boot\n}\n";

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The blob in its slot: `MAX_BLOB` bytes, zeros after the blob.
fn slot(blob_bytes: &[u8]) -> Result<Vec<u8>> {
    blob::decode(blob_bytes).map_err(|e| anyhow::anyhow!("the config blob is refused: {e}"))?;
    let mut slot = blob_bytes.to_vec();
    slot.resize(MAX_BLOB, 0);
    Ok(slot)
}

/// Writes a bootable image of `kernel` with `blob_bytes` as its config.
/// Needs `grub-mkrescue` (grub-common, grub-pc-bin, xorriso, mtools) and, for
/// qcow2, `qemu-img` (qemu-utils).
pub fn build(kernel: &Path, blob_bytes: &[u8], format: Format, out: &Path) -> Result<()> {
    let slot = slot(blob_bytes)?;
    let tree = tempfile::tempdir()?;
    let boot = tree.path().join("boot");
    fs::create_dir_all(boot.join("grub"))?;
    fs::copy(kernel, boot.join("pias.elf"))
        .with_context(|| format!("copying the kernel {}", kernel.display()))?;
    fs::write(boot.join("pias.blob"), &slot)?;
    fs::write(boot.join("grub/grub.cfg"), GRUB_CFG)?;
    let iso = match format {
        Format::Iso | Format::Raw => out.to_path_buf(),
        Format::Qcow2 => tree.path().join("disk.raw"),
    };
    run(
        Command::new("grub-mkrescue")
            .arg("-o")
            .arg(&iso)
            .arg(tree.path()),
        "grub-mkrescue (packages grub-common, grub-pc-bin, xorriso, mtools)",
    )?;
    if format == Format::Qcow2 {
        convert(&iso, "raw", out, "qcow2")?;
    }
    // The slot must be findable for set_config later.
    find_slot(&mut File::open(&iso)?)?;
    Ok(())
}

fn convert(from: &Path, from_fmt: &str, to: &Path, to_fmt: &str) -> Result<()> {
    run(
        Command::new("qemu-img")
            .args(["convert", "-f", from_fmt, "-O", to_fmt])
            .arg(from)
            .arg(to),
        "qemu-img convert (package qemu-utils)",
    )
}

/// Whether `path` is a qcow2 image (its magic, "QFI\xfb").
pub fn is_qcow2(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(f.read_exact(&mut magic).is_ok() && magic == *b"QFI\xfb")
}

/// The offset of the one config slot in a raw image: a sector that starts
/// with a valid blob followed by zeros to the slot's end. None, or more than
/// one, is an error (not an image `build` wrote).
fn find_slot(f: &mut File) -> Result<u64> {
    let len = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    let mut found = Vec::new();
    let mut sector = vec![0u8; SECTOR];
    let mut at = 0u64;
    while at + SECTOR as u64 <= len {
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut sector)?;
        if sector.starts_with(&blob::MAGIC) && at + MAX_BLOB as u64 <= len {
            let mut candidate = vec![0u8; MAX_BLOB];
            f.seek(SeekFrom::Start(at))?;
            f.read_exact(&mut candidate)?;
            let inner = blob::unpad(&candidate);
            if inner.len() < MAX_BLOB && blob::payload(inner).is_ok() {
                found.push(at);
            }
        }
        at += SECTOR as u64;
    }
    match found[..] {
        [one] => Ok(one),
        [] => bail!("no PIAS config slot in the image (was it written by `pias-image disk`?)"),
        _ => bail!(
            "{} config slots in the image; refusing to guess which to replace",
            found.len()
        ),
    }
}

/// Replaces the config of an image `build` wrote (any format) with
/// `blob_bytes`, in place. A qcow2 is converted to raw, patched and converted
/// back; the original is replaced only once all of that worked.
pub fn set_config(image: &Path, blob_bytes: &[u8]) -> Result<()> {
    let slot = slot(blob_bytes)?;
    if is_qcow2(image)? {
        let dir = tempfile::tempdir()?;
        let raw = dir.path().join("disk.raw");
        convert(image, "qcow2", &raw, "raw")?;
        patch(&raw, &slot)?;
        let tmp: PathBuf = dir.path().join("disk.qcow2");
        convert(&raw, "raw", &tmp, "qcow2")?;
        fs::copy(&tmp, image).with_context(|| format!("writing {}", image.display()))?;
        return Ok(());
    }
    patch(image, &slot)
}

fn patch(raw: &Path, slot: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)
        .with_context(|| format!("opening {} to write", raw.display()))?;
    let at = find_slot(&mut f)?;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(slot)?;
    f.sync_all()?;
    Ok(())
}

/// The config blob inside an image `build` wrote (any format), unpadded.
pub fn get_config(image: &Path) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let raw = if is_qcow2(image)? {
        let raw = dir.path().join("disk.raw");
        convert(image, "qcow2", &raw, "raw")?;
        raw
    } else {
        image.to_path_buf()
    };
    let mut f = File::open(&raw).with_context(|| format!("opening {}", raw.display()))?;
    let at = find_slot(&mut f)?;
    let mut bytes = vec![0u8; MAX_BLOB];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut bytes)?;
    Ok(blob::unpad(&bytes).to_vec())
}
