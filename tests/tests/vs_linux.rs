//! The side-by-side benchmark against a Linux + nftables guest, as CI's
//! smoke (`pias-qemu bench --vs-linux --quick`): it completes and every row
//! has both sides measured (the ratios are figures, not tests: the machines
//! are shared), and the CSV has the documented columns.

use pias_qemu::vslinux::compare::{self, Plan, PIAS_ONLY, ROWS};
use pias_tests::test_accel;

#[test]
fn the_quick_comparison_measures_every_row_on_both_sides() {
    let out = tempfile::tempdir().unwrap();
    let rows = compare::run(Plan::QUICK, test_accel(), out.path())
        .unwrap_or_else(|e| panic!("the comparison did not complete: {e:#}"));
    assert_eq!(rows.len(), ROWS.len() + PIAS_ONLY.len());
    for r in &rows {
        assert!(r.pias.is_finite() && r.pias >= 0.0, "{r:?}");
        if let Some(l) = r.linux {
            assert!(l.is_finite() && l >= 0.0, "{r:?}");
        }
    }
    let both = rows.iter().filter(|r| r.linux.is_some()).count();
    assert_eq!(both, ROWS.len(), "every shared row has a Linux figure");
    let csv = std::fs::read_to_string(out.path().join("vs-linux.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("metric,unit,pias,linux,ratio,goal,met"));
    assert_eq!(lines.count(), rows.len());
    assert!(out.path().join("vs-linux.md").exists());
    // The LAN's namespaces (the lab's and the client's, lossy client's and
    // target's beside it) are gone.
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let mine = format!("pias-vslinux-{}-", std::process::id());
    let left: Vec<_> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with(&mine))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
