//! `pias-image`: the operator's config tool.
//!
//! encode TOML -> blob, decode blob -> TOML (keys redacted), check a TOML,
//! print the example, write every proxy's blob from one deployment file,
//! print a group's key for its service owner, and build bootable disk images
//! (ISO, raw, qcow2) whose config can be replaced in place.

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
    /// Print the TOML form of a boot blob, keys shown as <redacted> (so the
    /// output needs its keys put back before it encodes again).
    Decode { blob: PathBuf },
    /// Check a TOML config; exit status 1 with the field and reason if it is refused.
    Check { toml: PathBuf },
    /// Print the example config (the appliance's embedded default).
    Example,
    /// Check a deployment file and write one blob per proxy, DIR/<name>.blob.
    Deploy {
        deployment: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the key of one group (hex), derived from the group secret: what
    /// the operator gives the group's service owner. Prints a key on purpose.
    GroupKey {
        /// File holding the group secret (64 hex digits or 32 raw bytes).
        #[arg(long)]
        secret_file: PathBuf,
        /// The group, e.g. 203.0.113.10:53/udp.
        #[arg(long)]
        group: String,
    },
    /// Build a bootable image (GRUB, multiboot2) of the kernel and a config.
    Disk {
        /// The appliance kernel (the ELF `cargo kernel` builds).
        #[arg(long)]
        kernel: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
        /// iso (hybrid: CD-ROM or disk), raw (the same bytes as a disk) or qcow2.
        #[arg(long, value_enum)]
        format: pias_image::disk::Format,
        /// Where to write the image.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Replace the config of an image `disk` built (any format), in place.
    SetConfig {
        image: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the TOML form of the config inside an image (keys redacted).
    GetConfig { image: PathBuf },
}

/// A config given as TOML (checked and encoded) or as a blob (checked).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ConfigArg {
    /// A TOML config (as for `encode`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A config blob (as `encode` or `deploy` wrote it).
    #[arg(long)]
    blob: Option<PathBuf>,
}

impl ConfigArg {
    fn blob(&self) -> Result<Vec<u8>> {
        match (&self.config, &self.blob) {
            (Some(toml), _) => Ok(pias_image::encode(&read_toml(toml)?)?),
            (None, Some(blob)) => {
                let bytes =
                    std::fs::read(blob).with_context(|| format!("reading {}", blob.display()))?;
                pias_image::decode(&bytes)
                    .with_context(|| format!("{} refused", blob.display()))?;
                Ok(bytes)
            }
            (None, None) => anyhow::bail!("give --config or --blob"),
        }
    }
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
        Cmd::Deploy { deployment, out } => {
            let text = std::fs::read_to_string(&deployment)
                .with_context(|| format!("reading {}", deployment.display()))?;
            let base = deployment
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            let written = pias_image::deploy::write_blobs(&text, &base, &out)
                .with_context(|| format!("{} refused", deployment.display()))?;
            for (path, len) in &written {
                eprintln!("wrote {} ({len} bytes)", path.display());
            }
            eprintln!("{} proxies", written.len());
        }
        Cmd::GroupKey { secret_file, group } => {
            let secret = pias_image::deploy::read_key_file("--secret-file", &secret_file)?;
            println!("{}", pias_image::deploy::group_key_hex(&secret, &group)?);
        }
        Cmd::Disk {
            kernel,
            config,
            format,
            out,
        } => {
            pias_image::disk::build(&kernel, &config.blob()?, format, &out)?;
            eprintln!("wrote {}", out.display());
        }
        Cmd::SetConfig { image, config } => {
            pias_image::disk::set_config(&image, &config.blob()?)?;
            eprintln!("{}: config replaced", image.display());
        }
        Cmd::GetConfig { image } => {
            let bytes = pias_image::disk::get_config(&image)?;
            let cfg = pias_image::decode(&bytes)
                .with_context(|| format!("the config in {} refused", image.display()))?;
            print!("{}", pias_image::to_toml(&cfg)?);
        }
    }
    Ok(())
}
