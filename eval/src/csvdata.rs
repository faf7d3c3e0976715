//! The experiments' CSV files read back (the `csv` crate), by column name:
//! the figures and the documentation's tables are drawn from these files
//! alone, so a committed CSV, its plot and its table cannot disagree.

use std::error::Error;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn Error>>;

/// A CSV file with a header line.
pub struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// One row of a `Csv`.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    csv: &'a Csv,
    index: usize,
}

impl Csv {
    pub fn read(path: &Path) -> Res<Csv> {
        let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = r
            .headers()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .iter()
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
            rows.push(rec.iter().map(String::from).collect());
        }
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.rows.len()).map(move |index| Row { csv: self, index })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The columns whose names start with `prefix`, with the rest of the name.
    pub fn columns_with(&self, prefix: &str) -> Vec<(String, String)> {
        self.header
            .iter()
            .filter_map(|h| h.strip_prefix(prefix).map(|rest| (h.clone(), rest.into())))
            .collect()
    }

    fn column(&self, name: &str) -> Res<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: no column {name}", self.path.display()).into())
    }
}

impl Row<'_> {
    pub fn text(&self, name: &str) -> Res<&str> {
        let c = self.csv.column(name)?;
        self.csv.rows[self.index]
            .get(c)
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "{}: row {} has no {name}",
                    self.csv.path.display(),
                    self.index + 2
                )
                .into()
            })
    }

    pub fn num(&self, name: &str) -> Res<f64> {
        let t = self.text(name)?;
        t.parse().map_err(|e| {
            format!(
                "{}: row {}, {name} = {t:?}: {e}",
                self.csv.path.display(),
                self.index + 2
            )
            .into()
        })
    }
}
