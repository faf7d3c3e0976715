//! `pias-eval`: the evaluation experiments. So far: `stretch` (paper §4.3).
//!
//! `pias-eval stretch` builds the multi-ISP POP graph from the Rocketfuel maps,
//! places proxies at random POPs for each proxy count, and prints percentiles
//! of PIAS path length / direct path length over random client–target pairs,
//! writing them to out/stretch.csv.

use pias_eval::internet::Internet;
use pias_eval::topology::{load_cch, load_cities, load_graphml, Unlocated};
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage: pias-eval stretch [--data DIR] [--isps 7018,3356,...] [--graphml FILE]... \\\n         [--proxies 10,30,100] [--pairs N] [--seed S] [--out FILE]"
    );
    std::process::exit(2)
}

fn lcg(x: &mut u64) -> usize {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*x >> 33) as usize
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("stretch") {
        usage();
    }
    let mut data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/topologies");
    let mut isps = vec!["7018", "3356", "2914", "1239", "3967", "6461"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let mut graphml: Vec<PathBuf> = Vec::new();
    let mut proxies = vec![10usize, 30, 100];
    let mut pairs = 10_000usize;
    let mut seed = 1u64;
    let mut out = PathBuf::from("out/stretch.csv");
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--data" => data = PathBuf::from(val()),
            "--isps" => isps = val().split(',').map(String::from).collect(),
            "--graphml" => graphml.push(PathBuf::from(val())),
            "--proxies" => {
                proxies = val()
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--pairs" => pairs = val().parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = val().parse().unwrap_or_else(|_| usage()),
            "--out" => out = PathBuf::from(val()),
            _ => usage(),
        }
    }
    if let Err(e) = run(&data, &isps, &graphml, &proxies, pairs, seed, &out) {
        eprintln!("pias-eval: {e}");
        std::process::exit(1);
    }
}

fn run(
    data: &std::path::Path,
    isps: &[String],
    graphml: &[PathBuf],
    proxies: &[usize],
    pairs: usize,
    seed: u64,
    out: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut topos = Vec::new();
    if !isps.is_empty() && graphml.is_empty() {
        let cities = load_cities(&data.join("rocketfuel/derived/city_locations.txt"))?;
        for asn in isps {
            let file = data.join(format!("rocketfuel/maps/{asn}.r0.cch"));
            let (t, dropped) = load_cch(&file, &cities, asn, Unlocated::Drop)?;
            eprintln!(
                "AS{asn}: {} POPs, {} links; {} cities without coordinates left out",
                t.pops.len(),
                t.links.len(),
                dropped.len()
            );
            topos.push(t);
        }
    }
    for file in graphml {
        let name = file
            .file_stem()
            .map_or("graphml".into(), |s| s.to_string_lossy().into_owned());
        let (t, dropped) = load_graphml(file, &name, Unlocated::Drop)?;
        eprintln!(
            "{name}: {} POPs, {} links; {} nodes without coordinates left out",
            t.pops.len(),
            t.links.len(),
            dropped.len()
        );
        topos.push(t);
    }
    let net = Internet::build(topos)?;
    let n = net.pops.len();
    let mut rng = seed;
    let mut csv = String::from("proxies,pairs,p5,p25,p50,p75,p90,p95\n");
    println!(
        "stretch over {n} POPs of {} ISPs, {pairs} pairs per proxy count (seed {seed})",
        net.isps.len()
    );
    println!(
        "{:>8} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "proxies", "p25", "p50", "p75", "p90", "p95"
    );
    for &k in proxies {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, lcg(&mut rng) % (i + 1));
        }
        let chosen = &order[..k.min(n)];
        let mut s: Vec<f64> = Vec::with_capacity(pairs);
        let mut tries = 0;
        while s.len() < pairs && tries < pairs * 4 {
            tries += 1;
            if let Some(x) = net.stretch(lcg(&mut rng) % n, lcg(&mut rng) % n, chosen) {
                s.push(x);
            }
        }
        s.sort_by(f64::total_cmp);
        let p = |q: f64| s[((s.len() - 1) as f64 * q) as usize];
        println!(
            "{:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            k.min(n),
            p(0.25),
            p(0.5),
            p(0.75),
            p(0.9),
            p(0.95)
        );
        csv.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}\n",
            k.min(n),
            s.len(),
            p(0.05),
            p(0.25),
            p(0.5),
            p(0.75),
            p(0.9),
            p(0.95)
        ));
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, csv)?;
    println!("written to {}", out.display());
    Ok(())
}
