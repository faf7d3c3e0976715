//! docs/evaluation.md and docs/figures/ cannot drift: the committed tables are
//! what the generator makes of the committed CSV files, the committed SVGs are
//! what it draws from them, and a page shows every figure.

use pias_eval::{doctables, figures};
use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn the_pages_tables_are_the_committed_csvs() {
    let page = std::fs::read_to_string(docs().join("evaluation.md")).unwrap();
    let tables = doctables::tables(&docs().join("figures")).unwrap();
    assert!(tables.len() >= 9, "{} tables", tables.len());
    let blocks = doctables::blocks(&page).unwrap();
    for (name, table) in &tables {
        let found = blocks.iter().find(|(n, _)| n == name);
        let Some((_, text)) = found else {
            panic!("docs/evaluation.md has no table:{name} block")
        };
        assert_eq!(
            text, table,
            "table {name} differs from docs/figures' CSV files: run `pias-eval figures`"
        );
    }
    assert_eq!(blocks.len(), tables.len(), "a block without a CSV file");
}

#[test]
fn the_committed_svgs_are_drawn_from_the_committed_csvs() {
    let committed = docs().join("figures");
    let tmp = tempfile::tempdir().unwrap();
    for csv in files(&committed, "csv") {
        std::fs::copy(&csv, tmp.path().join(csv.file_name().unwrap())).unwrap();
    }
    let drawn = figures::render_all(tmp.path()).unwrap();
    let svgs = files(&committed, "svg");
    assert_eq!(drawn.len(), svgs.len(), "{drawn:?} against {svgs:?}");
    for svg in &drawn {
        let name = svg.file_name().unwrap();
        let old = std::fs::read(committed.join(name))
            .unwrap_or_else(|e| panic!("docs/figures/{}: {e}", name.to_string_lossy()));
        assert!(
            old == std::fs::read(svg).unwrap(),
            "docs/figures/{} is not what its CSV gives: run `pias-eval figures`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn a_page_shows_every_figure() {
    // The benchmark's figure is on docs/benchmarks.md, the others on
    // docs/evaluation.md.
    let pages: String = ["evaluation.md", "benchmarks.md"]
        .iter()
        .map(|p| std::fs::read_to_string(docs().join(p)).unwrap())
        .collect();
    let svgs = files(&docs().join("figures"), "svg");
    assert!(!svgs.is_empty());
    for svg in svgs {
        let link = format!("](figures/{})", svg.file_name().unwrap().to_string_lossy());
        assert!(
            pages.contains(&link),
            "neither docs/evaluation.md nor docs/benchmarks.md shows {link}"
        );
    }
}
