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
        "fig6_messages_over_time_calibrated",
        "fig6_messages_over_time_heavy",
        "fig7_group_messages_calibrated",
        "fig7_group_messages_heavy",
        "overhead",
        "failover",
    ] {
        assert!(out.join(format!("{f}.csv")).exists(), "{f}.csv");
        assert_svg(&out.join(format!("{f}.svg")));
    }
    assert_svg(&out.join("fig6_mean_vs_paper.svg"));
    for workload in ["calibrated", "heavy"] {
        group_figures_have_their_shape(out, workload);
    }

    // Overhead: heartbeats to the 29 watchers (3 POPs of 10, less oneself)
    // every heartbeat period; every live proxy learns of the death; nothing refused.
    let over = csv(&out.join("overhead.csv"));
    assert_eq!(over.len(), 2);
    let per_s = 1000.0 / f64::from(pias::config::Timers::default().heartbeat_ms);
    for r in &over {
        let hb = num(r, "heartbeat_msgs_per_s");
        assert!((hb - 29.0 * per_s).abs() < 0.5 * per_s, "heartbeats/s {hb}");
        assert_eq!(num(r, "informed"), num(r, "proxies") - 1.0, "{r:?}");
        assert!(num(r, "informed_within_s") < 6.0);
        assert!(num(r, "news_msgs_per_failure") > 1.0);
        assert_eq!(num(r, "refusals"), 0.0);
        assert_eq!(num(r, "peers_refused"), 0.0, "{r:?}");
        assert_eq!(num(r, "peers_forgotten"), 0.0, "{r:?}");
        // At least the 64-slot send queue of whole messages the run sizes.
        let queue = 64.0 * pias::wire::MAX_MESSAGE as f64;
        let reserved = num(r, "reserved_bytes_per_proxy");
        assert!(
            reserved > queue,
            "{reserved} bytes: less than the send queue ({queue})"
        );

        // Soft state: each proxy is the JAP of G groups with k = 4 RAPs; in the
        // steady state (one refresh period, 30 s) every (group, JAP) sends each
        // RAP one refresh and gets one ack, except the reports a JAP sends
        // itself as one of the group's RAPs (about 1/N of them, not on the
        // network). The run's resolution is one message in the steady state.
        let n = num(r, "proxies");
        let one = 1.0 / (n * 30.0);
        let g = num(r, "jap_groups");
        let formula = num(r, "refresh_formula_msgs_per_s");
        assert!((formula - g * 4.0 * 2.0 / 30.0).abs() < 1e-3, "{r:?}");
        let own = num(r, "self_report_share");
        assert!(own <= 2.0 / n, "{own} of the reports to itself");
        let measured = num(r, "refresh_msgs_per_s");
        assert!(
            (measured - formula * (1.0 - own)).abs() <= one + 1e-4,
            "reports+acks/s {measured}, formula {formula}, {own} to itself"
        );
        assert!((measured - formula).abs() <= formula * own + one + 1e-4);
        // What a RAP receives: G × k / 30 s on average (its own reports
        // included), and the busiest its entries once per refresh period.
        assert!((num(r, "rap_reports_mean_per_s") - g * 4.0 / 30.0).abs() <= one + 1e-4);
        let busiest = num(r, "rap_entries_max");
        assert!((num(r, "rap_reports_max_per_s") - busiest / 30.0).abs() <= 1.0 / 30.0 + 1e-4);
        assert_eq!(num(r, "report_retries"), 0.0, "{r:?}");
        // A death moves the dead RAP's entries to its successor: one report
        // and one ack each (none for a JAP that is the successor itself).
        let moved = num(r, "report_msgs_after_failure");
        let held = num(r, "victim_rap_entries");
        assert!(
            moved <= 2.0 * held && (held == 0.0) == (moved == 0.0),
            "{r:?}"
        );
    }
    // Memory per proxy from one proxy built for each RAP load at each size:
    // what the simulated deployments reserved per proxy (within 6 KiB: the
    // simulator's own state per proxy, 3-4 KiB, and the tables sized for the
    // death),
    // and flat in the deployment: peer state is sized by what a proxy does,
    // not by the roster (at 100 proxies the roster caps it).
    let mem = csv(&out.join("overhead_memory.csv"));
    assert_eq!(mem.len(), 3);
    for r in &over {
        let one = mem
            .iter()
            .find(|m| m["proxies"] == r["proxies"])
            .map(|m| num(m, "reserved_bytes_per_proxy"))
            .unwrap();
        let all = num(r, "reserved_bytes_per_proxy");
        assert!((one - all).abs() <= 6.0 * 1024.0, "{one} against {all}");
    }
    let (at300, at1000) = (
        num(&mem[1], "reserved_bytes_per_proxy"),
        num(&mem[2], "reserved_bytes_per_proxy"),
    );
    assert!(
        (at1000 - at300).abs() <= 0.05 * at300,
        "{at300} at 300 proxies, {at1000} at 1,000"
    );

    // Failover: clients of a dead JAP wait for its death to be detected (dead
    // after `peer_dead_ms` of silence, then the next heartbeat tick and the
    // news) and no longer — under 1 s with the defaults (measured 0.68–0.83 s
    // with 150/600 ms); a new client meets a dead RAP at worst with one lookup
    // timeout (0.3 s) more than usual.
    let t = pias::config::Timers::default();
    let (dead, tick) = (
        f64::from(t.peer_dead_ms) / 1e3,
        f64::from(t.heartbeat_ms) / 1e3,
    );
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
        outages
            .iter()
            .all(|&s| (dead..dead + tick + 0.15).contains(&s) && s < 1.0),
        "{outages:?}"
    );
    let after = of("rap_death_first_reply");
    let before = of("no_death_first_reply");
    assert!(!after.is_empty() && !before.is_empty());
    // As many new clients start after the death as before it, and every one
    // is answered (it resends until then: a timed-out lookup's retry carries
    // no packet).
    assert_eq!(after.len(), before.len(), "a new client went unanswered");
    let worst_before = before.iter().copied().fold(0.0, f64::max);
    assert!(after.iter().all(|&s| s <= worst_before + 0.35), "{after:?}");
}

/// Figs 6 and 7 of one workload.
fn group_figures_have_their_shape(out: &Path, workload: &str) {
    // Fig 7: messages fall as inaccuracy rises; more proxies, more messages;
    // no member refused; with exact counts the RAP knows the exact size.
    let fig7 = csv(&out.join(format!("fig7_group_messages_{workload}.csv")));
    let mut by_line: HashMap<(String, String), Vec<(f64, f64)>> = HashMap::new();
    // Figs 6–7 count the reports group dynamics cause: no refresh falls in
    // the event, and without loss no report is retried.
    for r in &fig7 {
        assert_eq!(num(r, "nacks"), 0.0, "{r:?}");
        assert_eq!(num(r, "report_refreshes"), 0.0, "{r:?}");
        assert_eq!(num(r, "report_retries"), 0.0, "{r:?}");
        // Peer state is sized per proxy (`max_peer_state`): no run refuses a
        // peer (it would fail), and none forgets one to make room.
        assert_eq!(num(r, "peers_refused"), 0.0, "{r:?}");
        assert_eq!(num(r, "peers_forgotten"), 0.0, "{r:?}");
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
            "{workload} {line:?}: messages must fall as inaccuracy rises: {pts:?}"
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
    let fig6 = csv(&out.join(format!("fig6_messages_over_time_{workload}.csv")));
    assert_eq!(fig6.len(), 6);
    assert!(fig6.iter().all(|r| num(r, "group_size") > 0.0));
    let total = |col: &str| fig6.iter().map(|r| num(r, col)).sum::<f64>();
    assert!(total("msgs_per_min_inaccuracy_0") > total("msgs_per_min_inaccuracy_100"));
}

#[test]
fn the_group_experiment_is_deterministic_for_a_seed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    eval(&["groups"], a.path());
    eval(&["groups"], b.path());
    for f in [
        "fig7_group_messages_calibrated.csv",
        "fig7_group_messages_heavy.csv",
        "fig6_messages_over_time_calibrated.csv",
        "fig6_messages_over_time_heavy.csv",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs between two runs with one seed"
        );
    }
}
