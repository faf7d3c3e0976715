//! `pias-image`: the operator's config tool.
//!
//! encode TOML -> blob, decode blob -> TOML, check a TOML, print the example.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pias-image", about = "PIAS appliance config tool", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a TOML config and write its boot blob.
    Encode { toml: PathBuf, blob: PathBuf },
    /// Print the TOML form of a boot blob.
    Decode { blob: PathBuf },
    /// Check a TOML config; exit status 1 with the field and reason if it is refused.
    Check { toml: PathBuf },
    /// Print the example config (the appliance's embedded default).
    Example,
}

fn read_toml(path: &PathBuf) -> Result<pias::Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    pias_image::parse_toml(&text).with_context(|| format!("{} refused", path.display()))
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Encode { toml, blob } => {
            let cfg = read_toml(&toml)?;
            let bytes = pias_image::encode(&cfg)?;
            std::fs::write(&blob, &bytes).with_context(|| format!("writing {}", blob.display()))?;
            eprintln!("wrote {} ({} bytes)", blob.display(), bytes.len());
        }
        Cmd::Decode { blob } => {
            let bytes =
                std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
            let cfg = pias_image::decode(&bytes)
                .with_context(|| format!("{} refused", blob.display()))?;
            print!("{}", pias_image::to_toml(&cfg)?);
        }
        Cmd::Check { toml } => {
            read_toml(&toml)?;
            eprintln!("{}: ok", toml.display());
        }
        Cmd::Example => print!("{}", pias_image::EXAMPLE_TOML),
    }
    Ok(())
}
