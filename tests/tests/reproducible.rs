//! The same sources give the same kernel bytes: the sources copied to another
//! directory and built there into a fresh target directory (told the same git
//! revision, as a build from a tarball would be) give an ELF identical, byte
//! for byte, to the one the other tests boot.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_kernel_builds_to_the_same_bytes_from_a_copy_of_the_sources() {
    let first = std::fs::read(pias_tests::kernel()).unwrap();
    // Tracked and new (not ignored) files, as they are in the working tree.
    let copy = tempfile::tempdir().unwrap();
    let files = git(&["ls-files", "-co", "--exclude-standard", "-z"]);
    for f in files.split('\0').filter(|f| !f.is_empty()) {
        let from = root().join(f);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = copy.path().join("src").join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let rev = git(&["rev-parse", "--short=12", "HEAD"]);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(copy.path().join("src"))
        .args(["build", "--offline", "-p", "pias-kernel", "--target"])
        .args(["x86_64-unknown-none", "--release", "--target-dir"])
        .arg(copy.path().join("target"))
        .env("PIAS_GIT_REV", rev.trim())
        .status()
        .unwrap();
    assert!(status.success(), "building the copy failed");
    let second = std::fs::read(
        copy.path()
            .join("target/x86_64-unknown-none/release/pias-kernel"),
    )
    .unwrap();
    let differ = first
        .iter()
        .zip(&second)
        .position(|(a, b)| a != b)
        .map_or(String::new(), |at| {
            format!(", first difference at byte {at}")
        });
    assert!(
        first == second,
        "{} bytes against {}{differ}",
        first.len(),
        second.len()
    );
    eprintln!("kernel: {} bytes, identical from two builds", first.len());
}
