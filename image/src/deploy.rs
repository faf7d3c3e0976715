//! `pias-image deploy`: one TOML file describing a whole deployment (the
//! shared settings, the keys and every proxy) becomes one config per proxy,
//! each carrying the same `deployment` section. Errors name the proxy and
//! the field, e.g. `proxies[3] (pias-4).interfaces[0].gateway: ...`; keys are
//! never printed.

use anyhow::{anyhow, bail, Context, Result};
use pias::config::{
    Anycast, Bgp, Capacity, Config, Deployment, GroupOverride, IdleMode, Interface, LogLevel,
    Management, Node, Ports, ProxyEntry, Timers, MAX_GROUP_OVERRIDES, MAX_INTERFACES,
    NODE_NAME_LEN,
};
use pias::proxy::Policy;
use pias::wire::Key;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The deployment file. `capacity` and `timers` may be left out (their
/// defaults are the example config's); everything else is required.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeployFile {
    /// Serial console verbosity of every proxy (default "info").
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    /// Idle mode of every proxy (default "halt").
    #[serde(default = "default_idle")]
    pub idle: IdleMode,
    /// File holding the deployment key (64 hex digits, or 32 raw bytes);
    /// relative to the deployment file.
    pub key_file: Option<PathBuf>,
    /// The deployment key as 64 hex digits (instead of `key_file`).
    pub key_hex: Option<String>,
    /// File holding the group secret (as `key_file`).
    pub group_secret_file: Option<PathBuf>,
    /// The group secret as 64 hex digits (instead of `group_secret_file`).
    pub group_secret_hex: Option<String>,
    /// File holding the proxies' management key (as `key_file`): what the
    /// operator's tools sign management requests with.
    pub management_key_file: Option<PathBuf>,
    /// The management key as 64 hex digits (instead of `management_key_file`).
    pub management_key_hex: Option<String>,
    /// The groups' default policy.
    pub policy: Policy,
    /// The groups' default count-report band, percent.
    pub band_pct: u8,
    /// Per-group overrides (at most 16).
    #[serde(default)]
    pub groups: Vec<GroupOverride>,
    /// Shared: the anycast prefixes.
    pub anycast: Anycast,
    /// Shared: the UDP ports.
    pub ports: Ports,
    /// Shared: management access (the key is given above).
    pub management: DeployManagement,
    /// Shared: table sizes.
    #[serde(default)]
    pub capacity: Capacity,
    /// Shared: timers.
    #[serde(default)]
    pub timers: Timers,
    /// Every proxy, in any order.
    pub proxies: Vec<DeployProxy>,
}

/// The deployment file's `[management]`: `Management` less its key.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeployManagement {
    /// As `management.allow`.
    pub allow: heapless::Vec<pias::Ipv4Prefix, { pias::config::MAX_MGMT_ALLOW }>,
    /// As `management.allow_shutdown`.
    pub allow_shutdown: bool,
}

/// One proxy of the deployment file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeployProxy {
    /// Its id (unique, non-zero).
    pub id: u32,
    /// Its name; also the name of its blob, `<name>.blob`.
    pub name: heapless::String<NODE_NAME_LEN>,
    /// Its cluster.
    pub cluster: u32,
    /// Its interfaces (the first one's address is where proxy messages go).
    pub interfaces: heapless::Vec<Interface, MAX_INTERFACES>,
    /// Its BGP session(s) to its POP's routers (absent: none).
    #[serde(default)]
    pub bgp: Bgp,
}

fn default_log_level() -> LogLevel {
    LogLevel::Info
}

fn default_idle() -> IdleMode {
    IdleMode::Halt
}

/// Reads a key file: 64 hex digits (whitespace around them ignored) or
/// exactly 32 raw bytes. The error names `field` and the path, never the contents.
pub fn read_key_file(field: &str, path: &Path) -> Result<Key> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{field}: reading {}", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if let Ok(k) = pias::keys::key_from_hex(text) {
            return Ok(k);
        }
    }
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(raw) => Ok(Key(raw)),
        Err(_) => bail!(
            "{field}: {} holds no key: a key file holds 64 hex digits or 32 raw bytes",
            path.display()
        ),
    }
}

/// One key given as `<what>_file` or `<what>_hex`, resolved and checked.
fn key_of(
    what: &str,
    file: &Option<PathBuf>,
    hex: &Option<String>,
    base: &Path,
) -> Result<(Key, String)> {
    let (key, field) = match (file, hex) {
        (Some(_), Some(_)) => bail!("{what}_file, {what}_hex: give one of them, not both"),
        (None, None) => bail!("{what}_file: missing: give {what}_file or {what}_hex"),
        (Some(f), None) => {
            let field = format!("{what}_file");
            (read_key_file(&field, &base.join(f))?, field)
        }
        (None, Some(h)) => {
            let field = format!("{what}_hex");
            let k = pias::keys::key_from_hex(h).map_err(|e| anyhow!("{field}: {e}"))?;
            (k, field)
        }
    };
    if let Some(why) = pias::keys::weakness(&key) {
        bail!("{field}: {why}");
    }
    Ok((key, field))
}

/// Parses a deployment file (key files relative to `base`) and returns each
/// proxy's name and validated config, in the file's order. Nothing is
/// returned unless every proxy's config is valid.
pub fn configs(text: &str, base: &Path) -> Result<Vec<(String, Config)>> {
    let file: DeployFile =
        toml::from_str(text).map_err(|e| anyhow!("{}", crate::toml_error(&e)))?;
    let (key, key_field) = key_of("key", &file.key_file, &file.key_hex, base)?;
    let (secret, secret_field) = key_of(
        "group_secret",
        &file.group_secret_file,
        &file.group_secret_hex,
        base,
    )?;
    if key == secret {
        bail!("{secret_field}: weak key: equal to the deployment key ({key_field}); use two independent keys");
    }
    let (mgmt_key, mgmt_field) = key_of(
        "management_key",
        &file.management_key_file,
        &file.management_key_hex,
        base,
    )?;
    if mgmt_key == key || mgmt_key == secret {
        bail!("{mgmt_field}: weak key: equal to {key_field} or {secret_field}; use an independent key");
    }
    let management = Management {
        allow: file.management.allow.clone(),
        allow_shutdown: file.management.allow_shutdown,
        key: mgmt_key,
    };
    if file.groups.len() > MAX_GROUP_OVERRIDES {
        bail!("groups: at most {MAX_GROUP_OVERRIDES} overrides");
    }
    if file.proxies.is_empty() {
        bail!("proxies: list every proxy of the deployment");
    }
    let label = |i: usize| format!("proxies[{i}] ({})", file.proxies[i].name);

    // Deployment-wide rules first, so the error names the file's own entries.
    let mut by_id: HashMap<u32, usize> = HashMap::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_addr: HashMap<pias::Ipv4, usize> = HashMap::new();
    for (i, p) in file.proxies.iter().enumerate() {
        if let Some(j) = by_id.insert(p.id, i) {
            bail!(
                "{}.id: two proxies have id {} (also {})",
                label(i),
                p.id,
                label(j)
            );
        }
        if let Some(j) = by_name.insert(p.name.as_str(), i) {
            bail!(
                "{}.name: two proxies have this name (also {})",
                label(i),
                label(j)
            );
        }
        if let Some(ifc) = p.interfaces.first() {
            if let Some(j) = by_addr.insert(ifc.address.addr, i) {
                bail!(
                    "{}.interfaces[0].address: two proxies have address {} (also {})",
                    label(i),
                    ifc.address.addr,
                    label(j)
                );
            }
        }
    }

    let mut proxies: Vec<ProxyEntry> = file
        .proxies
        .iter()
        .map(|p| ProxyEntry {
            id: p.id,
            cluster: p.cluster,
            address: p
                .interfaces
                .first()
                .map_or(pias::Ipv4::UNSPECIFIED, |i| i.address.addr),
        })
        .collect();
    proxies.sort_by_key(|p| p.id);
    let mut groups = heapless::Vec::new();
    for g in &file.groups {
        // Cannot fail: the count was checked above.
        let _ = groups.push(*g);
    }
    let deployment = Deployment {
        key,
        group_secret: secret,
        policy: file.policy,
        band_pct: file.band_pct,
        groups,
        proxies,
    };

    let mut out = Vec::with_capacity(file.proxies.len());
    for (i, p) in file.proxies.iter().enumerate() {
        let cfg = Config {
            log_level: file.log_level,
            idle: file.idle,
            node: Node {
                id: p.id,
                name: p.name.clone(),
                cluster: p.cluster,
            },
            interfaces: p.interfaces.clone(),
            anycast: file.anycast.clone(),
            ports: file.ports.clone(),
            management: management.clone(),
            capacity: file.capacity.clone(),
            timers: file.timers.clone(),
            deployment: deployment.clone(),
            bgp: p.bgp.clone(),
        };
        if let Err(e) = cfg.validate() {
            let field = deploy_field(
                e.field.as_str(),
                &label(i),
                &cfg,
                &file,
                &key_field,
                &secret_field,
            );
            bail!("{field}: {}", e.reason);
        }
        out.push((p.name.to_string(), cfg));
    }
    Ok(out)
}

/// Where in the deployment file the config field `field` of proxy `me` came from.
fn deploy_field(
    field: &str,
    me: &str,
    cfg: &Config,
    file: &DeployFile,
    key_field: &str,
    secret_field: &str,
) -> String {
    if let Some(rest) = field.strip_prefix("node.") {
        return format!("{me}.{rest}");
    }
    if field.starts_with("interfaces") || field.starts_with("bgp") {
        return format!("{me}.{field}");
    }
    if field == "deployment.key" {
        return key_field.to_string();
    }
    if field == "deployment.group_secret" {
        return secret_field.to_string();
    }
    if field == "management.key" {
        return "management_key_file/management_key_hex".to_string();
    }
    if let Some(rest) = field.strip_prefix("deployment.proxies[") {
        // deployment.proxies[k].f: the k-th by id; name the file's entry.
        let (k, f) = rest.split_once("].").unwrap_or((rest, ""));
        let entry = k
            .parse::<usize>()
            .ok()
            .and_then(|k| cfg.deployment.proxies.get(k))
            .and_then(|e| file.proxies.iter().position(|p| p.id == e.id));
        if let Some(j) = entry {
            let f = if f == "address" {
                "interfaces[0].address"
            } else {
                f
            };
            return format!("proxies[{j}] ({}).{f}", file.proxies[j].name);
        }
        return "proxies".into();
    }
    if field == "deployment.proxies" {
        return "proxies".into();
    }
    if let Some(rest) = field.strip_prefix("deployment.") {
        return rest.to_string();
    }
    field.to_string()
}

/// Validates every proxy's config, then writes `DIR/<name>.blob` for each
/// (creating DIR). Nothing is written unless all are valid. Returns the
/// paths and sizes written.
pub fn write_blobs(text: &str, base: &Path, dir: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let configs = configs(text, base)?;
    let mut blobs = Vec::with_capacity(configs.len());
    for (name, cfg) in &configs {
        let blob = crate::encode(cfg).with_context(|| format!("encoding {name}"))?;
        blobs.push((dir.join(format!("{name}.blob")), blob));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::with_capacity(blobs.len());
    for (path, blob) in blobs {
        std::fs::write(&path, &blob).with_context(|| format!("writing {}", path.display()))?;
        written.push((path, blob.len()));
    }
    Ok(written)
}

/// The group key a service owner is given: `keys::group_key(secret, group)` as
/// 64 hex digits. `group` is "a.b.c.d:port/udp" or ".../tcp".
pub fn group_key_hex(secret: &Key, group: &str) -> Result<String> {
    let g: pias::Group = group
        .parse()
        .map_err(|e| anyhow!("--group: {e}: {group:?}"))?;
    if let Some(why) = pias::keys::weakness(secret) {
        bail!("--secret-file: {why}");
    }
    let k = pias::keys::group_key(secret, &g);
    Ok(String::from_utf8_lossy(&pias::keys::key_to_hex(&k)).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../docs/example-deployment.toml");

    fn err_of(text: &str) -> String {
        format!("{:#}", configs(text, Path::new(".")).unwrap_err())
    }

    #[test]
    fn the_example_gives_agreeing_configs() {
        let cfgs = configs(EXAMPLE, Path::new(".")).unwrap();
        let names: Vec<&str> = cfgs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pias-1", "pias-2", "pias-3"]);
        let first = &cfgs[0].1;
        for (_, c) in &cfgs {
            assert_eq!(c.deployment, first.deployment);
            assert_eq!(c.anycast, first.anycast);
            assert_eq!(c.ports, first.ports);
            assert_eq!(c.management, first.management);
            assert_eq!(c.capacity, first.capacity);
            assert_eq!(c.timers, Timers::default());
        }
        assert_eq!(cfgs[2].1.node.cluster, 2);
        assert_eq!(
            first.proxy_address(3),
            Some(pias::Ipv4([198, 18, 1, 2])),
            "the third proxy's address is its interface's"
        );
        assert_eq!(first.deployment.groups[0].policy, Policy::ClientHash);
        assert_eq!(first.deployment.key, pias::config::EXAMPLE_KEY);
    }

    #[test]
    fn errors_name_the_proxy_and_field() {
        let bad_gw = EXAMPLE.replace("\"198.18.1.1\"", "\"10.9.9.9\"");
        let e = err_of(&bad_gw);
        assert!(
            e.contains("proxies[2] (pias-3).interfaces[0].gateway: must lie inside"),
            "{e}"
        );
        let dup_id = EXAMPLE.replace("id = 3\n", "id = 1\n");
        let e = err_of(&dup_id);
        assert!(
            e.contains("proxies[2] (pias-3).id: two proxies have id 1 (also proxies[0] (pias-1))"),
            "{e}"
        );
        let dup_name = EXAMPLE.replace("name = \"pias-3\"", "name = \"pias-2\"");
        assert!(err_of(&dup_name).contains("proxies[2] (pias-2).name: two proxies"));
        let dup_addr = EXAMPLE.replace("198.18.1.2/24", "198.18.0.3/24");
        let e = err_of(&dup_addr);
        assert!(
            e.contains("proxies[2] (pias-3).interfaces[0].address: two proxies have address"),
            "{e}"
        );
        let zero = EXAMPLE.replace("id = 2\n", "id = 0\n");
        assert!(err_of(&zero).contains("proxies[1] (pias-2).id: must not be 0"));
        // Found while checking proxy 1's roster, named by the file's entry.
        let in_anycast = EXAMPLE
            .replace("198.18.1.2/24", "203.0.113.2/24")
            .replace("198.18.1.1", "203.0.113.1");
        let e = err_of(&in_anycast);
        assert!(
            e.contains("proxies[2] (pias-3).interfaces[0].address: lies inside an anycast prefix"),
            "{e}"
        );
        let bad_group = EXAMPLE.replace("203.0.113.10:53/udp", "192.0.2.1:53/udp");
        let e = err_of(&bad_group);
        assert!(
            e.contains("groups[0].group: must lie inside an anycast prefix"),
            "{e}"
        );
        let bad_shared = EXAMPLE.replace("registration = 7000", "registration = 0");
        assert!(err_of(&bad_shared).contains("ports.registration: must not be 0"));
        let unknown = EXAMPLE.replace("cluster = 2\n", "cluster = 2\ncolour = 1\n");
        assert!(err_of(&unknown).contains("unknown field `colour`"));
        let peers = EXAMPLE.replace("peers = 1024", "peers = 1");
        assert!(err_of(&peers).contains("capacity.peers"));
    }

    #[test]
    fn missing_or_weak_keys_are_refused_naming_the_field() {
        let key_line =
            "key_hex = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n";
        let no_key = EXAMPLE.replace(key_line, "");
        let e = err_of(&no_key);
        assert!(
            e.contains("key_file: missing: give key_file or key_hex"),
            "{e}"
        );
        let both = EXAMPLE.replace(key_line, &format!("{key_line}key_file = \"k\"\n"));
        assert!(err_of(&both).contains("key_file, key_hex: give one"));
        let weak = EXAMPLE.replace(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            &"ab".repeat(32),
        );
        let e = err_of(&weak);
        assert!(
            e.contains("key_hex: weak key: fewer than 16 distinct"),
            "{e}"
        );
        let zero_secret = EXAMPLE.replace(
            "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210",
            &"0".repeat(64),
        );
        assert!(err_of(&zero_secret).contains("group_secret_hex: weak key: all zero"));
        let same = EXAMPLE.replace(
            "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        );
        assert!(err_of(&same).contains("group_secret_hex: weak key: equal to the deployment key"));
        let mgmt = "fedcba98765432100f1e2d3c4b5a697813579bdf02468ace8796a5b4c3d2e1f0";
        let no_mgmt = EXAMPLE.replace(&format!("management_key_hex = \"{mgmt}\"\n"), "");
        let e = err_of(&no_mgmt);
        assert!(
            e.contains(
                "management_key_file: missing: give management_key_file or management_key_hex"
            ),
            "{e}"
        );
        let zero_mgmt = EXAMPLE.replace(mgmt, &"0".repeat(64));
        assert!(err_of(&zero_mgmt).contains("management_key_hex: weak key: all zero"));
        let mgmt_is_deploy = EXAMPLE.replace(
            mgmt,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        );
        let e = err_of(&mgmt_is_deploy);
        assert!(
            e.contains("management_key_hex: weak key: equal to key_hex"),
            "{e}"
        );
        let short = EXAMPLE.replace(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "0011",
        );
        let e = err_of(&short);
        assert!(e.contains("key_hex: a key is 64 hexadecimal digits"), "{e}");

        // Key files: hex text or 32 raw bytes, relative to the file; a bad
        // one is named by field and path, its contents never shown.
        let dir = tempfile::tempdir().unwrap();
        let secret: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(97) ^ 0x5a).collect();
        std::fs::write(
            dir.path().join("k.hex"),
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("s.raw"), &secret).unwrap();
        let files = EXAMPLE
            .replace(key_line, "key_file = \"k.hex\"\n")
            .replace(
                "group_secret_hex = \"0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210\"",
                "group_secret_file = \"s.raw\"",
            );
        let cfgs = configs(&files, dir.path()).unwrap();
        assert_eq!(
            cfgs[0].1.deployment.group_secret.0.as_slice(),
            secret.as_slice()
        );
        std::fs::write(dir.path().join("s.raw"), b"not a key at all").unwrap();
        let e = format!("{:#}", configs(&files, dir.path()).unwrap_err());
        assert!(
            e.contains("group_secret_file:") && e.contains("s.raw holds no key"),
            "{e}"
        );
        assert!(!e.contains("not a key at all"), "{e}");
        let missing = files.replace("k.hex", "nope.hex");
        let e = format!("{:#}", configs(&missing, dir.path()).unwrap_err());
        assert!(e.contains("key_file: reading"), "{e}");
    }

    #[test]
    fn group_key_is_the_derived_one() {
        let hex = group_key_hex(&pias::wire::Key([7; 32]), "203.0.113.10:53/udp");
        // [7; 32] is weak: refused even here.
        assert!(format!("{:#}", hex.unwrap_err()).contains("--secret-file: weak key"));
        let secret = pias::config::EXAMPLE_GROUP_SECRET;
        let g: pias::Group = "203.0.113.10:53/udp".parse().unwrap();
        let want = pias::keys::group_key(&secret, &g);
        let got = group_key_hex(&secret, "203.0.113.10:53/udp").unwrap();
        assert_eq!(pias::keys::key_from_hex(&got), Ok(want));
        assert!(group_key_hex(&secret, "203.0.113.10:53").is_err());
    }
}
