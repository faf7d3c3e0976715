//! Benchmarks: printed figures, not timed tests. Filled in below.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_a: Args) -> Result<()> {
    Ok(())
}
