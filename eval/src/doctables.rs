//! The tables of docs/evaluation.md, generated from the experiments' CSV
//! files (the same files the figures are drawn from) and spliced into the
//! page between marker comments:
//!
//! ```text
//! <!-- table:NAME -->
//! | generated | table |
//! <!-- /table -->
//! ```
//!
//! `pias-eval figures` rewrites them; a test checks that the committed page
//! holds what the committed CSV files give.

use crate::csvdata::{Csv, Row};
use crate::figures::{self, commas, Timeline, RAPS};
use crate::paper;
use crate::workload::Kind;
use std::error::Error;
use std::path::Path;

type Res<T> = Result<T, Box<dyn Error>>;

const OPEN: &str = "<!-- table:";
const CLOSE: &str = "<!-- /table -->";

/// A rate with the digits that matter: 313.1, 5.50, 0.248.
fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn header(cells: &[&str]) -> String {
    let mut s = row(&cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    s += &row(&vec!["---".to_string(); cells.len()]);
    s
}

fn inaccuracy(i: u8) -> String {
    if i == 0 {
        "0% (exact)".into()
    } else {
        format!("{i}%")
    }
}

/// Fig 6's means over the event, per inaccuracy.
fn fig6(dir: &Path, k: Kind) -> Res<String> {
    let t = Timeline::read(dir, k)?;
    let mut s = header(&[
        "inaccuracy",
        "messages/min to all 4 RAPs",
        "per RAP",
        "first minute (all 4)",
        "last minute (all 4)",
    ]);
    for ((i, mean), (_, v)) in t.means().into_iter().zip(&t.per_inaccuracy) {
        s += &row(&[
            inaccuracy(i),
            commas(mean),
            commas(mean / RAPS),
            commas(v.first().copied().unwrap_or(0.0)),
            commas(v.last().copied().unwrap_or(0.0)),
        ]);
    }
    Ok(s)
}

/// Fig 7: messages a second per RAP, a row per (proxies, group bound).
fn fig7(dir: &Path, k: Kind) -> Res<String> {
    let csv = Csv::read(&dir.join(figures::fig7_csv(k)))?;
    let mut inacc: Vec<u8> = Vec::new();
    let mut lines: Vec<((f64, f64), Vec<f64>)> = Vec::new();
    for r in csv.rows() {
        let key = (r.num("proxies")?, r.num("max_group")?);
        let i = r.num("inaccuracy_pct")? as u8;
        if !inacc.contains(&i) {
            inacc.push(i);
        }
        let v = r.num("mean_per_rap_msgs_per_s")?;
        match lines.iter_mut().find(|(x, _)| *x == key) {
            Some((_, vs)) => vs.push(v),
            None => lines.push((key, vec![v])),
        }
    }
    let mut cols = vec!["proxies".to_string(), "group ≤".to_string()];
    cols.extend(inacc.iter().map(|i| format!("{i}%")));
    let mut s = header(&cols.iter().map(String::as_str).collect::<Vec<_>>());
    for ((p, g), vs) in &lines {
        let mut cells = vec![commas(*p), commas(*g)];
        cells.extend(vs.iter().map(|&v| rate(v)));
        s += &row(&cells);
    }
    Ok(s)
}

/// The row of a Fig 7 CSV for a deployment, a bound and an inaccuracy.
fn fig7_at<'a>(csv: &'a Csv, p: usize, g: usize, i: u8) -> Res<Option<Row<'a>>> {
    for r in csv.rows() {
        if r.num("proxies")? as usize == p
            && r.num("max_group")? as usize == g
            && r.num("inaccuracy_pct")? as u8 == i
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Both workloads beside the paper, per RAP.
fn beside_the_paper(dir: &Path) -> Res<String> {
    let csvs = Kind::ALL
        .iter()
        .map(|&k| Csv::read(&dir.join(figures::fig7_csv(k))))
        .collect::<Res<Vec<Csv>>>()?;
    let mut cols = vec!["per RAP".to_string(), "paper".to_string()];
    cols.extend(
        Kind::ALL
            .iter()
            .map(|k| format!("ours, {} workload", k.name())),
    );
    let mut s = header(&cols.iter().map(String::as_str).collect::<Vec<_>>());
    let (p, g) = (paper::FIG6_PROXIES, paper::FIG6_GROUP);
    let at = |csv: &Csv, p: usize, i: u8| -> Res<Option<f64>> {
        fig7_at(csv, p, g, i)?
            .map(|r| r.num("mean_per_rap_msgs_per_s"))
            .transpose()
    };
    let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("not run".into(), f);
    let per_min = |v: f64| format!("{}/min", commas(v * 60.0));
    let mut exact_row = vec![
        format!(
            "exact counts, {} proxies, group ≤ {}",
            commas(p as f64),
            commas(g as f64)
        ),
        format!("{}/min", commas(paper::EXACT_PER_MIN)),
    ];
    let mut half_row = vec![
        "50% inaccuracy, the same".to_string(),
        format!("{}/min", commas(paper::HALF_PER_MIN)),
    ];
    let mut ratio_row = vec![
        "reduction exact → 50%".to_string(),
        format!("{:.1}×", paper::EXACT_PER_MIN / paper::HALF_PER_MIN),
    ];
    for csv in &csvs {
        let (e, h) = (at(csv, p, 0)?, at(csv, p, 50)?);
        exact_row.push(cell(e, &per_min));
        half_row.push(cell(h, &per_min));
        ratio_row.push(match (e, h) {
            (Some(e), Some(h)) if h > 0.0 => format!("{:.1}×", e / h),
            _ => "not run".into(),
        });
    }
    s += &row(&exact_row);
    s += &row(&half_row);
    s += &row(&ratio_row);
    for (q, v) in paper::FIG7_FULL_INACCURACY {
        let mut r = vec![
            format!(
                "{} proxies, 100% inaccuracy, group ≤ {}",
                commas(q as f64),
                commas(g as f64)
            ),
            format!("~{v}/s (read off Fig 7)"),
        ];
        for csv in &csvs {
            r.push(cell(at(csv, q, 100)?, &|x| format!("{}/s", rate(x))));
        }
        s += &row(&r);
    }
    Ok(s)
}

/// Both workloads' parameters, their expected churn, and what the runs at
/// the paper's Fig 6 deployment measured.
fn workloads(dir: &Path) -> Res<String> {
    let ws: Vec<_> = Kind::ALL
        .iter()
        .map(|&k| (k, k.workload(paper::FIG6_GROUP)))
        .collect();
    let mut cols = vec!["parameter".to_string()];
    cols.extend(ws.iter().map(|(k, _)| format!("`{}`", k.name())));
    let mut s = header(&cols.iter().map(String::as_str).collect::<Vec<_>>());
    let line = |name: &str, f: &dyn Fn(&crate::workload::Workload) -> String| {
        let mut cells = vec![name.to_string()];
        cells.extend(ws.iter().map(|(_, w)| f(w)));
        row(&cells)
    };
    s += &line("arrivals, flash crowd (Poisson)", &|w| {
        format!("{} joins/s for {} min", w.flash_rate, w.flash_secs / 60)
    });
    s += &line("arrivals, rest of the event (Poisson)", &|w| {
        format!("{} joins/s", w.rate_after)
    });
    s += &line("event", &|w| format!("{} min", w.duration_secs / 60));
    s += &line("session length", &|w| {
        format!(
            "log-normal, median {} min, σ = {}",
            w.session_median_secs / 60.0,
            w.session_sigma
        )
    });
    s += &line(
        "expected joins + leaves a minute (from the parameters)",
        &|w| commas(w.expected_changes_per_min()),
    );
    let mut measured = vec![format!(
        "measured joins + leaves a minute ({} proxies, group ≤ {})",
        commas(paper::FIG6_PROXIES as f64),
        commas(paper::FIG6_GROUP as f64)
    )];
    let mut peak = vec!["largest group (members)".to_string()];
    for (k, w) in &ws {
        let csv = Csv::read(&dir.join(figures::fig7_csv(*k)))?;
        let r = fig7_at(&csv, paper::FIG6_PROXIES, paper::FIG6_GROUP, 0)?;
        let minutes = w.duration_secs as f64 / 60.0;
        measured.push(match r {
            Some(r) => commas((r.num("joins")? + r.num("leaves")?) / minutes),
            None => "not run".into(),
        });
        peak.push(match r {
            Some(r) => commas(r.num("peak_size")?),
            None => "not run".into(),
        });
    }
    s += &row(&measured);
    s += &row(&peak);
    Ok(s)
}

fn stretch(dir: &Path) -> Res<String> {
    let csv = Csv::read(&dir.join(figures::STRETCH_CSV))?;
    let mut s = header(&["proxies", "p25", "median", "p75", "p90", "p95"]);
    for r in csv.rows() {
        let mut cells = vec![commas(r.num("proxies")?)];
        for c in ["p25", "p50", "p75", "p90", "p95"] {
            cells.push(format!("{:.2}", r.num(c)?));
        }
        s += &row(&cells);
    }
    Ok(s)
}

fn overhead(dir: &Path) -> Res<String> {
    let csv = Csv::read(&dir.join(figures::OVERHEAD_CSV))?;
    let formula = csv
        .rows()
        .next()
        .map(|r| r.num("refresh_formula_msgs_per_s"))
        .transpose()?
        .unwrap_or(0.0);
    let reports = format!("count reports+acks/s (formula {formula:.3})");
    let mut s = header(&[
        "proxies",
        "heartbeats sent/s",
        "RTT probes+replies/s",
        &reports,
        "reports a RAP receives/s: mean, busiest",
        "news messages per failure",
        "proxies informed",
        "within",
        "heap reserved",
        "shared roster",
    ]);
    for r in csv.rows() {
        let n = r.num("proxies")?;
        s += &row(&[
            commas(n),
            format!("{:.2}", r.num("heartbeat_msgs_per_s")?),
            format!("{:.3}", r.num("rtt_msgs_per_s")?),
            format!("{:.3}", r.num("refresh_msgs_per_s")?),
            format!(
                "{:.3}, {:.2}",
                r.num("rap_reports_mean_per_s")?,
                r.num("rap_reports_max_per_s")?
            ),
            format!("{:.1}", r.num("news_msgs_per_failure")?),
            format!("{} of {}", commas(r.num("informed")?), commas(n - 1.0)),
            format!("{:.1} s", r.num("informed_within_s")?),
            format!(
                "{} KiB",
                commas(r.num("reserved_bytes_per_proxy")? / 1024.0)
            ),
            format!("{} KiB", commas(r.num("shared_bytes")? / 1024.0)),
        ]);
    }
    Ok(s)
}

fn failover(dir: &Path) -> Res<String> {
    let csv = Csv::read(&dir.join(figures::FAILOVER_CSV))?;
    let mut s = header(&["measure", "n", "p10", "median", "p90", "max"]);
    for (measure, label) in figures::FAILOVER_MEASURES {
        let mut v = Vec::new();
        for r in csv.rows() {
            if r.text("measure")? == measure {
                v.push(r.num("seconds")?);
            }
        }
        v.sort_by(f64::total_cmp);
        let q = |q: f64| {
            v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
                .map_or("–".into(), |x| format!("{x:.2} s"))
        };
        s += &row(&[
            label.to_string(),
            v.len().to_string(),
            q(0.1),
            q(0.5),
            q(0.9),
            q(1.0),
        ]);
    }
    Ok(s)
}

/// Every table whose CSV files are in `dir`: (marker name, markdown).
pub fn tables(dir: &Path) -> Res<Vec<(String, String)>> {
    let mut out = Vec::new();
    let exists = |f: &str| dir.join(f).exists();
    if exists(figures::STRETCH_CSV) {
        out.push(("stretch".into(), stretch(dir)?));
    }
    for k in Kind::ALL {
        if exists(&figures::fig6_csv(k)) {
            out.push((format!("fig6-{}", k.name()), fig6(dir, k)?));
        }
        if exists(&figures::fig7_csv(k)) {
            out.push((format!("fig7-{}", k.name()), fig7(dir, k)?));
        }
    }
    if Kind::ALL.iter().all(|&k| exists(&figures::fig7_csv(k))) {
        out.push(("workloads".into(), workloads(dir)?));
        out.push(("paper".into(), beside_the_paper(dir)?));
    }
    if exists(figures::OVERHEAD_CSV) {
        out.push(("overhead".into(), overhead(dir)?));
    }
    if exists(figures::FAILOVER_CSV) {
        out.push(("failover".into(), failover(dir)?));
    }
    Ok(out)
}

/// Where the next marker opening a block starts: at the start of a line.
fn find_open(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(OPEN) {
        let at = from + i;
        if at == 0 || text.as_bytes()[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + OPEN.len();
    }
    None
}

/// The marked blocks of `doc`: (name, text between the markers).
pub fn blocks(doc: &str) -> Res<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = find_open(rest) {
        let after = &rest[start + OPEN.len()..];
        let name_end = after
            .find(" -->\n")
            .ok_or("a table marker not closed by ` -->` and a line break")?;
        let name = after[..name_end].to_string();
        let body = &after[name_end + " -->\n".len()..];
        let end = body
            .find(CLOSE)
            .ok_or_else(|| format!("table {name}: no {CLOSE}"))?;
        out.push((name, body[..end].to_string()));
        rest = &body[end + CLOSE.len()..];
    }
    Ok(out)
}

/// `doc` with every marked block replaced by its table. Every block must
/// have a table and every table a block.
pub fn splice(doc: &str, tables: &[(String, String)]) -> Res<String> {
    let names: Vec<String> = blocks(doc)?.into_iter().map(|(n, _)| n).collect();
    for (name, _) in tables {
        if !names.contains(name) {
            return Err(format!("no `{OPEN}{name} -->` … `{CLOSE}` block in the page").into());
        }
    }
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(start) = find_open(rest) {
        let after = &rest[start + OPEN.len()..];
        let name_end = after.find(" -->\n").ok_or("unclosed table marker")?;
        let name = &after[..name_end];
        let body_at = start + OPEN.len() + name_end + " -->\n".len();
        let end = rest[body_at..]
            .find(CLOSE)
            .ok_or_else(|| format!("table {name}: no {CLOSE}"))?;
        let table = tables
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("table {name}: no CSV file gives it"))?;
        out.push_str(&rest[..body_at]);
        out.push_str(&table.1);
        rest = &rest[body_at + end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Redraws every figure in `dir` from its CSV files and rewrites the tables
/// of the page at `doc`. Returns the SVGs written.
pub fn regenerate(dir: &Path, doc: &Path) -> Res<Vec<std::path::PathBuf>> {
    let svgs = figures::render_all(dir)?;
    let text = std::fs::read_to_string(doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let new = splice(&text, &tables(dir)?)?;
    if new != text {
        std::fs::write(doc, new).map_err(|e| format!("{}: {e}", doc.display()))?;
    }
    Ok(svgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_replaces_only_the_marked_blocks() {
        let doc =
            "a\n<!-- table:x -->\nold\n<!-- /table -->\nb\n<!-- table:y -->\n<!-- /table -->\n";
        let t = vec![
            ("x".to_string(), "| new |\n".to_string()),
            ("y".to_string(), "| y |\n".to_string()),
        ];
        let out = splice(doc, &t).unwrap();
        assert_eq!(
            out,
            "a\n<!-- table:x -->\n| new |\n<!-- /table -->\nb\n<!-- table:y -->\n| y |\n<!-- /table -->\n"
        );
        assert_eq!(blocks(&out).unwrap(), t);
        // A table without its block, or a block without a table, is an error.
        assert!(splice(doc, &[("z".into(), String::new())]).is_err());
        assert!(splice(doc, &t[..1]).is_err());
        assert!(blocks("<!-- table:x -->\nno end\n").is_err());
        // A marker quoted inside a line is prose, not a block.
        assert!(blocks("see `<!-- table:x -->`\n").unwrap().is_empty());
    }

    #[test]
    fn rates_keep_their_digits() {
        assert_eq!(rate(313.14), "313.1");
        assert_eq!(rate(5.5), "5.50");
        assert_eq!(rate(0.2476), "0.248");
        assert_eq!(commas(18955.4), "18,955");
        assert_eq!(commas(999.6), "1,000");
        assert_eq!(commas(12.0), "12");
    }
}
