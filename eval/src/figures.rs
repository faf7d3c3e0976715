//! The evaluation's figures, drawn from the experiments' CSV files alone
//! (`pias-eval figures` redraws them from committed CSVs without simulating),
//! with the paper's reference values as marked points on the same axes.

use crate::csvdata::Csv;
use crate::paper;
use crate::plot::{self, Chart, Mark, Series};
use crate::workload::Kind;
use std::error::Error;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn Error>>;

pub const STRETCH_CSV: &str = "stretch.csv";
pub const OVERHEAD_CSV: &str = "overhead.csv";
pub const OVERHEAD_MEMORY_CSV: &str = "overhead_memory.csv";
pub const FAILOVER_CSV: &str = "failover.csv";
pub const FIG6_MEANS_SVG: &str = "fig6_mean_vs_paper.svg";
/// `pias-qemu bench --vs-linux`'s CSV (metric,unit,pias,linux,ratio,goal,met).
pub const VS_LINUX_CSV: &str = "vs-linux.csv";

/// A group experiment's messages go to this many RAPs (`groupdyn::tune`).
pub const RAPS: f64 = 4.0;

pub fn fig6_csv(k: Kind) -> String {
    format!("fig6_messages_over_time_{}.csv", k.name())
}

pub fn fig7_csv(k: Kind) -> String {
    format!("fig7_group_messages_{}.csv", k.name())
}

fn svg_of(csv: &str) -> String {
    csv.replace(".csv", ".svg")
}

/// `1,000` for 1000: the numbers of the figures' legends and the docs' tables.
pub fn commas(n: f64) -> String {
    let s = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Fig 6's CSV: (proxies, group bound, minutes as (minute, size) and the
/// message columns as (inaccuracy, messages a minute to all RAPs per minute)).
pub struct Timeline {
    pub proxies: usize,
    pub max_group: usize,
    pub size: Vec<(f64, f64)>,
    pub per_inaccuracy: Vec<(u8, Vec<f64>)>,
}

impl Timeline {
    pub fn read(dir: &Path, k: Kind) -> Res<Timeline> {
        let csv = Csv::read(&dir.join(fig6_csv(k)))?;
        let first = csv
            .rows()
            .next()
            .ok_or_else(|| format!("{}: no rows", fig6_csv(k)))?;
        let mut t = Timeline {
            proxies: first.num("proxies")? as usize,
            max_group: first.num("max_group")? as usize,
            size: Vec::new(),
            per_inaccuracy: Vec::new(),
        };
        for (col, rest) in csv.columns_with("msgs_per_min_inaccuracy_") {
            let i: u8 = rest.parse().map_err(|e| format!("{col}: {e}"))?;
            let v = csv.rows().map(|r| r.num(&col)).collect::<Res<Vec<f64>>>()?;
            t.per_inaccuracy.push((i, v));
        }
        for r in csv.rows() {
            t.size.push((r.num("minute")?, r.num("group_size")?));
        }
        Ok(t)
    }

    /// Whether this is the paper's Fig 6 configuration (1,000 proxies, ≤ 90,000).
    pub fn is_papers(&self) -> bool {
        self.proxies == paper::FIG6_PROXIES && self.max_group == paper::FIG6_GROUP
    }

    /// Mean over the event of the messages a minute to all RAPs, per inaccuracy.
    pub fn means(&self) -> Vec<(u8, f64)> {
        self.per_inaccuracy
            .iter()
            .map(|(i, v)| (*i, v.iter().sum::<f64>() / v.len().max(1) as f64))
            .collect()
    }
}

fn paper_levels(minutes: f64) -> Vec<Series> {
    let xs = [
        1.0,
        minutes / 4.0,
        minutes / 2.0,
        3.0 * minutes / 4.0,
        minutes,
    ];
    let level = |y: f64| xs.iter().map(|&x| (x, y)).collect();
    vec![
        Series::dashed(
            format!(
                "paper: mean over the event, exact counts ({}/min)",
                commas(paper::EXACT_PER_MIN)
            ),
            level(paper::EXACT_PER_MIN),
            Mark::Cross,
        ),
        Series::dashed(
            format!(
                "paper: mean over the event, 50% ({}/min)",
                commas(paper::HALF_PER_MIN)
            ),
            level(paper::HALF_PER_MIN),
            Mark::Triangle,
        ),
    ]
}

/// Fig 6 of one workload: messages a minute per RAP over the event, and the
/// group's size; the paper's event means as reference levels.
pub fn fig6(dir: &Path, k: Kind) -> Res<PathBuf> {
    let t = Timeline::read(dir, k)?;
    let mut series = vec![Series::line("group size (members)", t.size.clone())];
    for (i, v) in &t.per_inaccuracy {
        let name = if *i == 0 {
            "exact counts (0%)".to_string()
        } else {
            format!("{i}% inaccuracy")
        };
        series.push(Series::line(
            name,
            v.iter()
                .zip(&t.size)
                .map(|(y, (m, _))| (*m, y / RAPS))
                .collect(),
        ));
    }
    if t.is_papers() {
        series.extend(paper_levels(t.size.len() as f64));
    }
    let out = dir.join(svg_of(&fig6_csv(k)));
    let title = format!(
        "Fig 6 ({} workload): JAP→RAP messages, {} proxies, group ≤ {}",
        k.name(),
        commas(t.proxies as f64),
        commas(t.max_group as f64)
    );
    plot::line_chart(
        &out,
        &Chart {
            title: &title,
            x_label: "minute of the event (min)",
            y_label: "messages/min per RAP; group size (members)",
            log_y: true,
        },
        &series,
    )?;
    Ok(out)
}

/// Fig 6's means beside the paper's: the mean messages a minute per RAP over
/// the event against inaccuracy, for each workload, with the paper's two.
pub fn fig6_means(dir: &Path) -> Res<PathBuf> {
    let mut series = Vec::new();
    let mut papers = true;
    for k in Kind::ALL {
        let t = Timeline::read(dir, k)?;
        papers &= t.is_papers();
        series.push(Series::line(
            format!("{} workload (ours)", k.name()),
            t.means()
                .iter()
                .map(|&(i, m)| (f64::from(i), m / RAPS))
                .collect(),
        ));
    }
    if papers {
        series.push(Series::marks(
            "paper §4.2: exact and 50% (2,300 and 117/min)",
            vec![(0.0, paper::EXACT_PER_MIN), (50.0, paper::HALF_PER_MIN)],
            Mark::Cross,
        ));
    }
    let out = dir.join(FIG6_MEANS_SVG);
    plot::line_chart(
        &out,
        &Chart {
            title: "Fig 6 means: JAP→RAP messages over the event vs the paper",
            x_label: "inaccuracy (%)",
            y_label: "mean messages/min per RAP",
            log_y: true,
        },
        &series,
    )?;
    Ok(out)
}

/// Fig 7 of one workload: mean messages a second per RAP against
/// inaccuracy, a line per (proxies, group bound); the paper's points where
/// we ran the same deployment.
pub fn fig7(dir: &Path, k: Kind) -> Res<PathBuf> {
    let csv = Csv::read(&dir.join(fig7_csv(k)))?;
    // A line per (proxies, group bound).
    type Line = ((usize, usize), Vec<(f64, f64)>);
    let mut lines: Vec<Line> = Vec::new();
    for r in csv.rows() {
        let key = (r.num("proxies")? as usize, r.num("max_group")? as usize);
        let pt = (r.num("inaccuracy_pct")?, r.num("mean_per_rap_msgs_per_s")?);
        match lines.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pts)) => pts.push(pt),
            None => lines.push((key, vec![pt])),
        }
    }
    let has = |p: usize| lines.iter().any(|((q, _), _)| *q == p);
    let mut series: Vec<Series> = lines
        .iter()
        .map(|((p, g), pts)| {
            Series::line(
                format!(
                    "{} proxies, group ≤ {}",
                    commas(*p as f64),
                    commas(*g as f64)
                ),
                pts.clone(),
            )
        })
        .collect();
    if has(paper::FIG6_PROXIES) {
        series.push(Series::marks(
            "paper §4.2: 1,000 proxies, group ≤ 90,000",
            vec![
                (0.0, paper::EXACT_PER_MIN / 60.0),
                (50.0, paper::HALF_PER_MIN / 60.0),
            ],
            Mark::Cross,
        ));
    }
    for (&(p, v), mark) in paper::FIG7_FULL_INACCURACY
        .iter()
        .zip([Mark::Triangle, Mark::Square])
    {
        if has(p) {
            series.push(Series::marks(
                format!("paper Fig 7 (read off): {} proxies", commas(p as f64)),
                vec![(100.0, v)],
                mark,
            ));
        }
    }
    let out = dir.join(svg_of(&fig7_csv(k)));
    let title = format!(
        "Fig 7 ({} workload): JAP→RAP messages vs inaccuracy",
        k.name()
    );
    plot::line_chart(
        &out,
        &Chart {
            title: &title,
            x_label: "inaccuracy (%)",
            y_label: "mean messages/s per RAP",
            log_y: true,
        },
        &series,
    )?;
    Ok(out)
}

/// Fig 8: stretch percentiles against proxies, with the paper's at 100.
pub fn stretch(dir: &Path) -> Res<PathBuf> {
    let csv = Csv::read(&dir.join(STRETCH_CSV))?;
    let mut series = Vec::new();
    let mut at_paper = false;
    for (col, name) in [
        ("p50", "median"),
        ("p75", "75th percentile"),
        ("p90", "90th percentile"),
        ("p95", "95th percentile"),
    ] {
        let mut pts = Vec::new();
        for r in csv.rows() {
            let p = r.num("proxies")?;
            at_paper |= p as usize == paper::STRETCH.0;
            pts.push((p, r.num(col)?));
        }
        series.push(Series::line(name, pts));
    }
    let (p, median, p90) = paper::STRETCH;
    if at_paper {
        series.push(Series::marks(
            format!("paper §4.3: median at {p} proxies ({median})"),
            vec![(p as f64, median)],
            Mark::Cross,
        ));
        series.push(Series::marks(
            format!("paper §4.3: 90th percentile at {p} proxies ({p90})"),
            vec![(p as f64, p90)],
            Mark::Triangle,
        ));
    }
    let out = dir.join(svg_of(STRETCH_CSV));
    plot::line_chart(
        &out,
        &Chart {
            title: "Fig 8: stretch (PIAS path / direct path)",
            x_label: "proxies deployed",
            y_label: "stretch (ratio of path lengths)",
            log_y: false,
        },
        &series,
    )?;
    Ok(out)
}

/// Membership, proximity and soft-state overhead per proxy against the deployment.
pub fn overhead(dir: &Path) -> Res<PathBuf> {
    let csv = Csv::read(&dir.join(OVERHEAD_CSV))?;
    let col = |c: &str, scale: f64| -> Res<Vec<(f64, f64)>> {
        csv.rows()
            .map(|r| Ok((r.num("proxies")?, r.num(c)? * scale)))
            .collect()
    };
    let groups = csv
        .rows()
        .next()
        .map(|r| r.num("jap_groups"))
        .transpose()?
        .unwrap_or(0.0);
    let series = vec![
        Series::line(
            "heartbeats sent (msgs/s)",
            col("heartbeat_msgs_per_s", 1.0)?,
        ),
        Series::line("RTT probes+replies (msgs/s)", col("rtt_msgs_per_s", 1.0)?),
        Series::line(
            format!("count reports+acks, {groups} groups as JAP (msgs/s)"),
            col("refresh_msgs_per_s", 1.0)?,
        ),
        Series::line(
            "count reports received, busiest RAP (msgs/s)",
            col("rap_reports_max_per_s", 1.0)?,
        ),
        Series::line(
            "news messages per failure (msgs)",
            col("news_msgs_per_failure", 1.0)?,
        ),
        Series::line(
            "heap reserved (KiB)",
            col("reserved_bytes_per_proxy", 1.0 / 1024.0)?,
        ),
    ];
    let out = dir.join(svg_of(OVERHEAD_CSV));
    plot::line_chart(
        &out,
        &Chart {
            title: "Membership, proximity and soft-state overhead per proxy",
            x_label: "proxies deployed",
            y_label: "per proxy: msgs/s, msgs per failure, KiB",
            log_y: true,
        },
        &series,
    )?;
    Ok(out)
}

/// The failover measures of failover.csv: (name in the CSV, label).
pub const FAILOVER_MEASURES: [(&str, &str); 3] = [
    (
        "jap_death_outage",
        "outage of the clients of the busiest JAP when it dies",
    ),
    (
        "rap_death_first_reply",
        "first reply of a new client (fresh IAP) just after a RAP dies",
    ),
    (
        "no_death_first_reply",
        "first reply of a new client, no death",
    ),
];

/// Failover seen by clients: a CDF per measure.
pub fn failover(dir: &Path) -> Res<PathBuf> {
    let csv = Csv::read(&dir.join(FAILOVER_CSV))?;
    let mut series = Vec::new();
    for (measure, label) in FAILOVER_MEASURES {
        let mut v = Vec::new();
        for r in csv.rows() {
            if r.text("measure")? == measure {
                v.push(r.num("seconds")?);
            }
        }
        series.push(plot::cdf(label, &v));
    }
    let out = dir.join(svg_of(FAILOVER_CSV));
    plot::line_chart(
        &out,
        &Chart {
            title: "Failover seen by clients (CDF)",
            x_label: "time (s)",
            y_label: "fraction of clients",
            log_y: false,
        },
        &series,
    )?;
    Ok(out)
}

/// The benchmark against Linux + nftables: each shared metric's ratio and goal.
pub fn vs_linux(dir: &Path) -> Res<PathBuf> {
    let csv = Csv::read(&dir.join(VS_LINUX_CSV))?;
    let mut rows = Vec::new();
    for r in csv.rows() {
        let ratio = r.text("ratio")?;
        if ratio.is_empty() {
            continue; // a PIAS-only row
        }
        let goal = r.text("goal")?;
        let goal = match goal.split_once(' ') {
            Some(("<=", v)) => Some((
                v.parse::<f64>().map_err(|e| format!("goal {v:?}: {e}"))?,
                false,
            )),
            Some((">=", v)) => Some((
                v.parse::<f64>().map_err(|e| format!("goal {v:?}: {e}"))?,
                true,
            )),
            _ => None,
        };
        rows.push(plot::Ratio {
            name: r.text("metric")?.to_string(),
            ratio: ratio.parse().map_err(|e| format!("ratio {ratio:?}: {e}"))?,
            goal,
        });
    }
    let out = dir.join(svg_of(VS_LINUX_CSV));
    plot::ratio_chart(
        &out,
        "PIAS against a Linux + nftables guest, same QEMU flags (TCG, microvm)",
        &rows,
    )?;
    Ok(out)
}

/// Every figure whose CSV files are in `dir`, redrawn there. Fails if there
/// are none.
pub fn render_all(dir: &Path) -> Res<Vec<PathBuf>> {
    let mut out = Vec::new();
    let exists = |f: &str| dir.join(f).exists();
    if exists(STRETCH_CSV) {
        out.push(stretch(dir)?);
    }
    for k in Kind::ALL {
        if exists(&fig6_csv(k)) {
            out.push(fig6(dir, k)?);
        }
        if exists(&fig7_csv(k)) {
            out.push(fig7(dir, k)?);
        }
    }
    if Kind::ALL.iter().all(|&k| exists(&fig6_csv(k))) {
        out.push(fig6_means(dir)?);
    }
    if exists(OVERHEAD_CSV) {
        out.push(overhead(dir)?);
    }
    if exists(FAILOVER_CSV) {
        out.push(failover(dir)?);
    }
    if exists(VS_LINUX_CSV) {
        out.push(vs_linux(dir)?);
    }
    if out.is_empty() {
        return Err(format!("{}: no experiment's CSV file to draw", dir.display()).into());
    }
    Ok(out)
}
