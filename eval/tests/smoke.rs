//! The reduced evaluation (`pias-eval all --smoke`): every experiment runs end
//! to end through the real proxies, and its figures have the expected shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/topologies")
}

fn eval(args: &[&str], out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_pias-eval"))
        .args(args)
        .args(["--smoke", "--quiet"])
        .arg("--data")
        .arg(data())
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "pias-eval {args:?} failed");
}

/// Rows of a CSV as maps from column name to value.
fn csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col}"))
        .parse()
        .unwrap()
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.starts_with("<svg"), "{} is not an SVG", path.display());
    assert!(svg.contains("<polyline"), "{} has no line", path.display());
}

#[test]
fn the_smoke_run_writes_every_figure_with_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    eval(&["all"], dir.path());
    let out = dir.path();
    for f in [
        "stretch",
        "fig6_messages_over_time",
        "fig7_group_messages",
        "overhead",
        "failover",
    ] {
        assert!(out.join(format!("{f}.csv")).exists(), "{f}.csv");
        assert_svg(&out.join(format!("{f}.svg")));
    }

    // Fig 7: messages fall as inaccuracy rises; more proxies, more messages;
    // no member refused; with exact counts the RAP knows the exact size.
    let fig7 = csv(&out.join("fig7_group_messages.csv"));
    let mut by_line: HashMap<(String, String), Vec<(f64, f64)>> = HashMap::new();
    // Figs 6–7 count the reports group dynamics cause: no refresh falls in
    // the event, and without loss no report is retried.
    for r in &fig7 {
        assert_eq!(num(r, "nacks"), 0.0, "{r:?}");
        assert_eq!(num(r, "report_refreshes"), 0.0, "{r:?}");
        assert_eq!(num(r, "report_retries"), 0.0, "{r:?}");
        assert_eq!(num(r, "seeds"), 2.0);
        let inacc = num(r, "inaccuracy_pct");
        let err = num(r, "worst_rap_error");
        assert!(
            err <= inacc / 100.0 + 1e-9,
            "RAP count off by {err} at {inacc}%"
        );
        by_line
            .entry((r["proxies"].clone(), r["max_group"].clone()))
            .or_default()
            .push((inacc, num(r, "mean_msgs_per_s")));
    }
    assert_eq!(by_line.len(), 4);
    for (line, pts) in &by_line {
        assert!(
            pts.windows(2).all(|w| w[0].0 < w[1].0 && w[1].1 <= w[0].1),
            "{line:?}: messages must fall as inaccuracy rises: {pts:?}"
        );
        assert!(pts[0].1 > 1.5 * pts[pts.len() - 1].1, "{line:?}: {pts:?}");
    }
    let at_full = |p: &str| {
        fig7.iter()
            .filter(|r| r["proxies"] == p && num(r, "inaccuracy_pct") == 100.0)
            .map(|r| num(r, "mean_msgs_per_s"))
            .fold(f64::MAX, f64::min)
    };
    assert!(
        at_full("80") > at_full("20"),
        "more JAPs, more reports at 100%"
    );
    // The tight bound binds: a smaller peak.
    let peak = |g: &str| {
        fig7.iter()
            .filter(|r| r["max_group"] == g)
            .map(|r| num(r, "peak_size"))
            .fold(0.0, f64::max)
    };
    assert!(peak("60") <= 60.0 && peak("1800") > 60.0);

    // Fig 6: one row a minute; exact counts cost the most every minute in total.
    let fig6 = csv(&out.join("fig6_messages_over_time.csv"));
    assert_eq!(fig6.len(), 6);
    assert!(fig6.iter().all(|r| num(r, "group_size") > 0.0));
    let total = |col: &str| fig6.iter().map(|r| num(r, col)).sum::<f64>();
    assert!(total("msgs_per_min_inaccuracy_0") > total("msgs_per_min_inaccuracy_100"));

    // Overhead: heartbeats to the 29 watchers (3 POPs of 10, less oneself)
    // each second; every live proxy learns of the death; nothing refused.
    let over = csv(&out.join("overhead.csv"));
    assert_eq!(over.len(), 2);
    for r in &over {
        let hb = num(r, "heartbeat_msgs_per_s");
        assert!((hb - 29.0).abs() < 0.5, "heartbeats/s {hb}");
        assert_eq!(num(r, "informed"), num(r, "proxies") - 1.0, "{r:?}");
        assert!(num(r, "informed_within_s") < 6.0);
        assert!(num(r, "news_msgs_per_failure") > 1.0);
        assert_eq!(num(r, "refusals"), 0.0);
        assert!(num(r, "reserved_bytes_per_proxy") > 0.0);
    }
    assert!(
        num(&over[1], "reserved_bytes_per_proxy") > num(&over[0], "reserved_bytes_per_proxy"),
        "a larger deployment reserves a larger peer table"
    );

    // Failover: clients of a dead JAP wait for its death to be detected (dead
    // after 3.5 s of silence) and no longer; a new client meets a dead RAP at
    // worst with one lookup timeout (0.3 s) more than usual.
    let fo = csv(&out.join("failover.csv"));
    let of = |m: &str| -> Vec<f64> {
        fo.iter()
            .filter(|r| r["measure"] == m)
            .map(|r| num(r, "seconds"))
            .collect()
    };
    let outages = of("jap_death_outage");
    assert!(!outages.is_empty());
    assert!(
        outages.iter().all(|&s| (3.0..6.0).contains(&s)),
        "{outages:?}"
    );
    let after = of("rap_death_first_reply");
    let before = of("no_death_first_reply");
    assert!(!after.is_empty() && !before.is_empty());
    let worst_before = before.iter().copied().fold(0.0, f64::max);
    assert!(after.iter().all(|&s| s <= worst_before + 0.35), "{after:?}");
}

#[test]
fn the_group_experiment_is_deterministic_for_a_seed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    eval(&["groups"], a.path());
    eval(&["groups"], b.path());
    for f in ["fig7_group_messages.csv", "fig6_messages_over_time.csv"] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs between two runs with one seed"
        );
    }
}
