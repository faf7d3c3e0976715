//! `pias-eval`: regenerates the paper's section 4 figures and ours beyond it,
//! driving unchanged `pias::Proxy` state machines over `pias-sim`.
//!
//! `pias-eval all` runs every experiment (CSV + SVG into `--out`); each one
//! can also be run alone. `--smoke` shrinks every experiment for the tests.

use clap::{Args, Parser, Subcommand};
use pias_eval::experiments::{self, GroupPlan, OverheadPlan, Res, Settings};
use pias_eval::workload::Kind;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated (for the
/// memory-per-proxy figure).
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping, so `System`'s guarantees carry over.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

#[derive(Parser)]
#[command(
    name = "pias-eval",
    about = "The PIAS evaluation: the paper's section 4 figures over the real proxy state machines"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every experiment below, in one go. It checks the memory of the largest
    /// runs first: the default sizes need about 5 GB (the 20,000-proxy
    /// overhead run).
    All(Common),
    /// Fig 8: stretch on the multi-ISP POP graph.
    Stretch {
        #[command(flatten)]
        common: Common,
        /// Proxy counts.
        #[arg(long, value_delimiter = ',', default_value = "10,20,30,50,100,200")]
        proxies: Vec<usize>,
        /// Client–target pairs per proxy count.
        #[arg(long, default_value_t = 10_000)]
        pairs: usize,
    },
    /// Figs 6 and 7: JAP→RAP messages of one large churning group.
    Groups {
        #[command(flatten)]
        common: Common,
        /// Deployment sizes (Fig 7's lines; Fig 6 is drawn at 1,000).
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        proxies: Vec<usize>,
        /// Workloads: `calibrated` (churn calibrated to the paper's 2,300
        /// changes a minute) and/or `heavy` (about twice the paper's churn).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "calibrated,heavy"
        )]
        workload: Vec<Kind>,
    },
    /// Redraws every figure from the CSV files in a directory and rewrites
    /// the tables of docs/evaluation.md from them (no simulation).
    Figures {
        /// Directory of the CSV files; the SVGs are written beside them.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/figures"))]
        dir: PathBuf,
        /// The page whose `<!-- table:NAME -->` blocks are rewritten.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/evaluation.md"))]
        doc: PathBuf,
    },
    /// Membership, proximity and soft-state overhead at 1,000–20,000 proxies.
    Overhead {
        #[command(flatten)]
        common: Common,
        /// Deployment sizes simulated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,2000,5000,10000,20000"
        )]
        proxies: Vec<usize>,
        /// Deployment sizes whose memory per proxy is measured on one proxy
        /// built at that size (no simulation).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,2000,5000,10000,20000"
        )]
        memory_proxies: Vec<usize>,
        /// Groups each proxy is the JAP of (one member each): G in G×k×2/report_refresh.
        #[arg(long, default_value_t = OverheadPlan::GROUPS.jap_groups)]
        jap_groups: usize,
        /// JAPs of each group.
        #[arg(long, default_value_t = OverheadPlan::GROUPS.japs_per_group)]
        japs_per_group: usize,
    },
    /// Failover time seen by clients when a JAP or a RAP dies.
    Failover {
        #[command(flatten)]
        common: Common,
        /// Runs per victim kind.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

#[derive(Args)]
struct Common {
    /// Directory for the CSV and SVG files.
    #[arg(long, default_value = "out/eval")]
    out: PathBuf,
    /// Topology data (the folder holding rocketfuel/ and topologyzoo/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/topologies"))]
    data: PathBuf,
    /// Rocketfuel ISPs (AS numbers) of the stretch graph; empty for none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "7018,3356,2914,1239,3967,6461"
    )]
    isps: Vec<String>,
    /// GraphML maps (Latitude/Longitude per node) to add to the stretch graph.
    #[arg(long)]
    graphml: Vec<PathBuf>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Base seed; runs use seed, seed+1, ...
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Reduced sizes (the test suite's smoke run).
    #[arg(long)]
    smoke: bool,
    /// No progress bars or tables.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn settings(&self) -> Settings {
        let isps = self
            .isps
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        Settings {
            out: self.out.clone(),
            data: self.data.clone(),
            isps,
            graphml: self.graphml.clone(),
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            seed: self.seed,
            smoke: self.smoke,
            quiet: self.quiet,
            heap_bytes,
        }
    }
}

fn stretch_args(s: &Settings) -> (Vec<usize>, usize) {
    if s.smoke {
        (vec![10, 30, 100], 400)
    } else {
        (vec![10, 20, 30, 50, 100, 200], 10_000)
    }
}

fn group_plan(s: &Settings) -> GroupPlan {
    if s.smoke {
        GroupPlan::smoke()
    } else {
        GroupPlan::full()
    }
}

fn overhead(s: &Settings, plan: &OverheadPlan) -> Res<()> {
    experiments::overhead(s, plan).map(|_| ())
}

fn overhead_plan(s: &Settings) -> OverheadPlan {
    if s.smoke {
        OverheadPlan::smoke()
    } else {
        OverheadPlan::full()
    }
}

fn failover(s: &Settings, runs: usize) -> Res<()> {
    experiments::failover(s, if s.smoke { runs.min(2) } else { runs }).map(|_| ())
}

fn run(cmd: Cmd) -> Res<()> {
    let started = std::time::Instant::now();
    let quiet = match &cmd {
        Cmd::All(c) => c.quiet,
        Cmd::Stretch { common, .. }
        | Cmd::Groups { common, .. }
        | Cmd::Failover { common, .. }
        | Cmd::Overhead { common, .. } => common.quiet,
        Cmd::Figures { .. } => false,
    };
    let out = match cmd {
        Cmd::All(c) => {
            let s = c.settings();
            let (groups, over) = (group_plan(&s), overhead_plan(&s));
            // Refuse before any work if the host cannot hold the largest runs.
            experiments::check_group_memory(&s, &groups)?;
            experiments::check_overhead_memory(&s, &over)?;
            let (proxies, pairs) = stretch_args(&s);
            experiments::stretch(&s, &proxies, pairs)?;
            experiments::group_dynamics(&s, &groups)?;
            failover(&s, 10)?;
            // Last: the most memory-hungry.
            overhead(&s, &over)?;
            s.out
        }
        Cmd::Stretch {
            common,
            proxies,
            pairs,
        } => {
            let s = common.settings();
            let (p, n) = if s.smoke {
                stretch_args(&s)
            } else {
                (proxies, pairs)
            };
            experiments::stretch(&s, &p, n)?;
            s.out
        }
        Cmd::Groups {
            common,
            proxies,
            workload,
        } => {
            let s = common.settings();
            let mut plan = group_plan(&s);
            if !s.smoke {
                plan.proxies = proxies;
            }
            plan.workloads = workload;
            experiments::group_dynamics(&s, &plan)?;
            s.out
        }
        Cmd::Overhead {
            common,
            proxies,
            memory_proxies,
            jap_groups,
            japs_per_group,
        } => {
            let s = common.settings();
            let mut plan = overhead_plan(&s);
            if !s.smoke {
                plan.proxies = proxies;
                plan.memory_proxies = memory_proxies;
            }
            plan.groups = pias_eval::overhead::Groups {
                jap_groups,
                japs_per_group,
            };
            overhead(&s, &plan)?;
            s.out
        }
        Cmd::Failover { common, runs } => {
            let s = common.settings();
            failover(&s, runs)?;
            s.out
        }
        Cmd::Figures { dir, doc } => {
            let svgs = pias_eval::doctables::regenerate(&dir, &doc)?;
            let (dir, doc) = (dir.canonicalize()?, doc.canonicalize()?);
            println!(
                "{} figures redrawn in {}; tables of {} rewritten from the CSV files",
                svgs.len(),
                dir.display(),
                doc.display()
            );
            return Ok(());
        }
    };
    if !quiet {
        println!(
            "done in {:.0} s; CSV and SVG in {}",
            started.elapsed().as_secs_f64(),
            out.display()
        );
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.cmd) {
        eprintln!("pias-eval: {e}");
        std::process::exit(1);
    }
}
