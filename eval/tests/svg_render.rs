//! Every committed figure renders with a real SVG renderer: `rsvg-convert`
//! (Debian's librsvg2-bin). Missing, it is a failure, not a skip.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_committed_svg_renders_with_rsvg_convert() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/figures");
    let svgs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .collect();
    assert!(!svgs.is_empty(), "no SVG in {}", dir.display());
    let tmp = tempfile::tempdir().unwrap();
    for svg in svgs {
        let png = tmp.path().join("out.png");
        let out = Command::new("rsvg-convert")
            .arg("--format=png")
            .arg("--output")
            .arg(&png)
            .arg(&svg)
            .output()
            .unwrap_or_else(|e| {
                panic!("rsvg-convert could not be run ({e}): install Debian's librsvg2-bin")
            });
        assert!(
            out.status.success(),
            "rsvg-convert {}: {}",
            svg.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 1000,
            "{}: {} bytes of PNG",
            svg.display(),
            bytes.len()
        );
    }
}
