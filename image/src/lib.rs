//! The config tool's logic: TOML text <-> `Config` <-> blob, with errors that
//! name the field and the reason. The binary (`main.rs`) is a thin CLI over it.

pub mod deploy;
pub mod disk;

use anyhow::{anyhow, bail, Context, Result};
use pias::blob::{self, MAX_BLOB};
use pias::Config;

/// Parses TOML into a config and validates it; errors name the field. The
/// deployment's proxies may be listed in any order: they are sorted by id
/// (the blob keeps them sorted, for lookups by id).
pub fn parse_toml(text: &str) -> Result<Config> {
    let mut cfg: Config = toml::from_str(text).map_err(|e| anyhow!("{}", toml_error(&e)))?;
    cfg.deployment.proxies.sort_by_key(|p| p.id);
    cfg.validate().map_err(|e| anyhow!("config field {e}"))?;
    Ok(cfg)
}

/// Formats a TOML error as "line L: message" without the multi-line snippet.
pub(crate) fn toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(span) => format!("at byte {}: {msg}", span.start),
        None => msg.to_string(),
    }
}

/// What `to_toml` writes in place of a key.
pub const REDACTED: &str = "<redacted>";

/// Renders a config as TOML, with the keys (`deployment.key`,
/// `deployment.group_secret`, `management.key`) shown as `<redacted>`: the
/// output is for reading, and must have its keys put back before it encodes
/// again.
pub fn to_toml(cfg: &Config) -> Result<String> {
    let mut value = toml::Value::try_from(cfg).context("rendering TOML")?;
    for (section, keys) in [
        ("deployment", &["key", "group_secret"][..]),
        ("management", &["key"][..]),
    ] {
        if let Some(d) = value.get_mut(section).and_then(|d| d.as_table_mut()) {
            for k in keys {
                d.insert((*k).into(), toml::Value::String(REDACTED.into()));
            }
        }
    }
    toml::to_string(&value).context("rendering TOML")
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
        // The rendered keys are redacted: put them back and it round-trips.
        let shown = to_toml(&back).unwrap();
        assert!(parse_toml(&shown).is_err());
        let hex =
            |k: &pias::wire::Key| String::from_utf8(pias::keys::key_to_hex(k).to_vec()).unwrap();
        // Tables render in name order: `deployment` before `management`.
        let restored = shown
            .replacen(
                &format!("key = \"{REDACTED}\""),
                &format!("key = \"{}\"", hex(&cfg.deployment.key)),
                1,
            )
            .replace(
                &format!("key = \"{REDACTED}\""),
                &format!("key = \"{}\"", hex(&cfg.management.key)),
            )
            .replace(
                &format!("group_secret = \"{REDACTED}\""),
                &format!("group_secret = \"{}\"", hex(&cfg.deployment.group_secret)),
            );
        assert_eq!(parse_toml(&restored).unwrap(), cfg);
    }

    #[test]
    fn decoded_toml_never_shows_a_key() {
        let shown = to_toml(&Config::example()).unwrap();
        assert_eq!(shown.matches(REDACTED).count(), 3, "{shown}");
        for k in [
            &Config::example().deployment.key,
            &Config::example().deployment.group_secret,
            &Config::example().management.key,
        ] {
            let hex = String::from_utf8(pias::keys::key_to_hex(k).to_vec()).unwrap();
            assert!(!shown.contains(&hex));
        }
    }

    #[test]
    fn proxies_may_be_listed_in_any_order() {
        let text = EXAMPLE_TOML.replace(
            "  { id = 1, cluster = 1, address = \"198.18.0.2\" },\n",
            "  { id = 5, cluster = 2, address = \"198.18.0.6\" },\n  { id = 1, cluster = 1, address = \"198.18.0.2\" },\n",
        );
        let cfg = parse_toml(&text).unwrap();
        let ids: Vec<u32> = cfg.deployment.proxies.iter().map(|p| p.id).collect();
        assert_eq!(ids, [1, 5]);
        let dup = text.replace("id = 5", "id = 1");
        let e = err_of(&dup);
        assert!(
            e.contains("deployment.proxies[1].id: two proxies have this id"),
            "{e}"
        );
    }

    #[test]
    fn bad_keys_in_toml_are_refused_without_echo() {
        let zero = "0".repeat(64);
        let text = EXAMPLE_TOML.replace(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            &zero,
        );
        let e = err_of(&text);
        assert!(e.contains("deployment.key: weak key: all zero"), "{e}");
        let short = EXAMPLE_TOML.replace(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "00112233445566778899aabbccddeeff",
        );
        let e = err_of(&short);
        assert!(e.contains("64 hexadecimal digits"), "{e}");
        assert!(!e.contains("00112233445566778899aabbccddeeff"), "{e}");
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

        let invalid = EXAMPLE_TOML.replace("peer_dead_ms = 600", "peer_dead_ms = 300");
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
