//! The config tool's logic: TOML text <-> `Config` <-> blob, with errors that
//! name the field and the reason. The binary (`main.rs`) is a thin CLI over it.

use anyhow::{anyhow, bail, Context, Result};
use pias::blob::{self, MAX_BLOB};
use pias::Config;

/// Parses TOML into a config and validates it; errors name the field.
pub fn parse_toml(text: &str) -> Result<Config> {
    let cfg: Config = toml::from_str(text).map_err(|e| anyhow!("{}", toml_error(&e)))?;
    cfg.validate().map_err(|e| anyhow!("config field {e}"))?;
    Ok(cfg)
}

/// Formats a TOML error as "line L: message" without the multi-line snippet.
fn toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(span) => format!("at byte {}: {msg}", span.start),
        None => msg.to_string(),
    }
}

/// Renders a config as TOML.
pub fn to_toml(cfg: &Config) -> Result<String> {
    toml::to_string(cfg).context("rendering TOML")
}

/// Validates and encodes a blob; the result is checked by decoding it again,
/// so the tool never writes a blob the appliance would refuse.
pub fn encode(cfg: &Config) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; MAX_BLOB];
    let n = blob::encode(cfg, &mut buf).map_err(|e| anyhow!("{e}"))?;
    buf.truncate(n);
    let back =
        blob::decode(&buf).map_err(|e| anyhow!("internal: encoded blob does not decode: {e}"))?;
    if &back != cfg {
        bail!("internal: encoded blob decodes to a different config");
    }
    Ok(buf)
}

pub fn decode(bytes: &[u8]) -> Result<Config> {
    blob::decode(bytes).map_err(|e| anyhow!("{e}"))
}

/// The example config, as TOML with comments, used as the embedded default.
pub const EXAMPLE_TOML: &str = include_str!("../../docs/example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_toml_is_the_example_config() {
        assert_eq!(parse_toml(EXAMPLE_TOML).unwrap(), Config::example());
    }

    #[test]
    fn toml_round_trip_through_blob() {
        let cfg = parse_toml(EXAMPLE_TOML).unwrap();
        let blob = encode(&cfg).unwrap();
        let back = decode(&blob).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(parse_toml(&to_toml(&back).unwrap()).unwrap(), cfg);
    }

    fn err_of(text: &str) -> String {
        format!("{:#}", parse_toml(text).unwrap_err())
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let unknown = EXAMPLE_TOML.replace("[node]", "[node]\ncolour = \"red\"");
        let e = err_of(&unknown);
        assert!(e.contains("unknown field `colour`"), "{e}");

        let missing = EXAMPLE_TOML.replace("cluster = 1\n", "");
        let e = err_of(&missing);
        assert!(e.contains("missing field `cluster`"), "{e}");

        let bad_addr = EXAMPLE_TOML.replace("\"198.18.0.2/24\"", "\"198.18.0.300/24\"");
        let e = err_of(&bad_addr);
        assert!(e.contains("not an IPv4 address"), "{e}");

        let invalid = EXAMPLE_TOML.replace("peer_dead_ms = 3500", "peer_dead_ms = 1000");
        let e = err_of(&invalid);
        assert!(e.contains("timers.peer_dead_ms: must exceed"), "{e}");

        let too_long = EXAMPLE_TOML.replace(
            "name = \"pias-1\"",
            &format!("name = \"{}\"", "x".repeat(40)),
        );
        assert!(parse_toml(&too_long).is_err());
    }

    #[test]
    fn blob_defects_are_reported() {
        let mut blob = encode(&Config::example()).unwrap();
        blob[20] ^= 1;
        assert!(format!("{:#}", decode(&blob).unwrap_err()).contains("CRC"));
    }
}
