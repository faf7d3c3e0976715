//! The `pias-image` binary as an operator uses it.

use std::process::Command;

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pias-image"))
}

#[test]
fn encode_decode_check_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("c.toml");
    let blob = dir.path().join("c.blob");
    let out = tool().arg("example").output().unwrap();
    assert!(out.status.success());
    std::fs::write(&toml, &out.stdout).unwrap();
    assert!(tool().arg("check").arg(&toml).status().unwrap().success());
    assert!(tool()
        .arg("encode")
        .arg(&toml)
        .arg(&blob)
        .status()
        .unwrap()
        .success());
    let decoded = tool().arg("decode").arg(&blob).output().unwrap();
    assert!(decoded.status.success());
    let text = String::from_utf8(decoded.stdout).unwrap();
    // Keys are shown redacted, so the output does not encode as it is...
    assert!(text.contains("key = \"<redacted>\""), "{text}");
    assert!(text.contains("group_secret = \"<redacted>\""), "{text}");
    assert!(!text.contains("00112233445566778899aabbccddeeff"), "{text}");
    assert!(!text.contains("fedcba98765432100f1e2d3c"), "{text}");
    assert_eq!(text.matches("<redacted>").count(), 3, "{text}");
    let e = format!("{:#}", pias_image::parse_toml(&text).unwrap_err());
    assert!(e.contains("64 hexadecimal digits"), "{e}");
    // ...but everything else is the config.
    // (Tables in name order: the deployment's key first, then the management key.)
    let restored = text
        .replacen(
            "key = \"<redacted>\"",
            "key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"",
            1,
        )
        .replace(
            "key = \"<redacted>\"",
            "key = \"fedcba98765432100f1e2d3c4b5a697813579bdf02468ace8796a5b4c3d2e1f0\"",
        )
        .replace(
            "group_secret = \"<redacted>\"",
            "group_secret = \"0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210\"",
        );
    assert_eq!(
        pias_image::parse_toml(&restored).unwrap(),
        pias::Config::example()
    );
}

#[test]
fn a_refused_config_names_the_field_and_writes_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("bad.toml");
    let blob = dir.path().join("bad.blob");
    let text = pias_image::EXAMPLE_TOML.replace("mtu = 1500", "mtu = 20");
    std::fs::write(&toml, text).unwrap();
    let out = tool().arg("encode").arg(&toml).arg(&blob).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interfaces[0].mtu: must be 576..=1500"),
        "{err}"
    );
    assert!(!blob.exists(), "a refused config must not leave a blob");

    let corrupt = dir.path().join("corrupt.blob");
    std::fs::write(&corrupt, b"PIASCF\x05\x00\xff\xff\xff\x00\x00\x00\x00\x00").unwrap();
    let out = tool().arg("decode").arg(&corrupt).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("length mismatch"));
    // A blob of an older format (version 4: no metrics port) is named as such.
    let old = dir.path().join("old.blob");
    std::fs::write(&old, b"PIASCF\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00").unwrap();
    let out = tool().arg("decode").arg(&old).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("format version 4 is not supported (this build reads 5)"),
        "{err}"
    );
}

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const SECRET_HEX: &str = "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210";

#[test]
fn deploy_writes_a_blob_per_proxy_agreeing_on_the_shared_parts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deployment.toml");
    let out_dir = dir.path().join("blobs");
    let text = include_str!("../../docs/example-deployment.toml");
    // Keys from files, as a real deployment has them.
    std::fs::write(dir.path().join("deployment.key"), format!("{KEY_HEX}\n")).unwrap();
    std::fs::write(dir.path().join("group.secret"), format!("{SECRET_HEX}\n")).unwrap();
    let text = text
        .replace(
            &format!("key_hex = \"{KEY_HEX}\""),
            "key_file = \"deployment.key\"",
        )
        .replace(
            &format!("group_secret_hex = \"{SECRET_HEX}\""),
            "group_secret_file = \"group.secret\"",
        );
    std::fs::write(&file, text).unwrap();
    let out = tool()
        .arg("deploy")
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains(KEY_HEX) && !log.contains(SECRET_HEX), "{log}");
    let mut configs = Vec::new();
    for name in ["pias-1", "pias-2", "pias-3"] {
        let blob = out_dir.join(format!("{name}.blob"));
        assert!(log.contains(&blob.display().to_string()), "{log}");
        let cfg = pias_image::decode(&std::fs::read(&blob).unwrap()).unwrap();
        assert_eq!(cfg.node.name.as_str(), name);
        // What an operator sees: no key.
        let shown = tool().arg("decode").arg(&blob).output().unwrap();
        let shown = String::from_utf8(shown.stdout).unwrap();
        assert!(
            shown.contains("<redacted>") && !shown.contains(KEY_HEX) && !shown.contains(SECRET_HEX)
        );
        configs.push(cfg);
    }
    for c in &configs[1..] {
        assert_eq!(c.deployment, configs[0].deployment);
        assert_eq!(c.anycast, configs[0].anycast);
        assert_eq!(c.ports, configs[0].ports);
        assert_eq!(c.management, configs[0].management);
        assert_eq!(c.capacity, configs[0].capacity);
        assert_eq!(c.timers, configs[0].timers);
        assert_ne!(c.node, configs[0].node);
    }
    assert_eq!(configs[0].deployment.key, pias::config::EXAMPLE_KEY);
    assert_eq!(configs[0].deployment.proxies.len(), 3);

    // A bad file: refused naming proxy and field, nothing written.
    let bad_dir = dir.path().join("bad");
    let bad = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"198.18.1.1\"", "\"10.0.0.1\"");
    std::fs::write(&file, bad).unwrap();
    let out = tool()
        .arg("deploy")
        .arg(&file)
        .arg("--out")
        .arg(&bad_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxies[2] (pias-3).interfaces[0].gateway: must lie inside"),
        "{err}"
    );
    assert!(!bad_dir.exists());
}

#[test]
fn group_key_prints_the_derived_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("group.secret");
    std::fs::write(&secret, SECRET_HEX).unwrap();
    let out = tool()
        .args(["group-key", "--secret-file"])
        .arg(&secret)
        .args(["--group", "203.0.113.10:53/udp"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let g: pias::Group = "203.0.113.10:53/udp".parse().unwrap();
    let want = pias::keys::group_key(&pias::config::EXAMPLE_GROUP_SECRET, &g);
    assert_eq!(pias::keys::key_from_hex(&printed), Ok(want));
    let out = tool()
        .args(["group-key", "--secret-file"])
        .arg(&secret)
        .args(["--group", "203.0.113.10/udp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--group: not a group"));
}

#[test]
fn a_bgp_section_is_read_from_toml_and_checked_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let bgp = |hold: u16| {
        format!(
            "{}\n[bgp]\nlocal_as = 65100\ndrain_delay_ms = 3000\nneighbours = [\n  {{ address = \"198.18.0.1\", remote_as = 65001, hold_time_s = {hold}, bfd = true }},\n]\n",
            pias_image::EXAMPLE_TOML
        )
    };
    let toml = dir.path().join("bgp.toml");
    let blob = dir.path().join("bgp.blob");
    std::fs::write(&toml, bgp(2)).unwrap();
    let out = tool().arg("encode").arg(&toml).arg(&blob).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bgp.neighbours[0].hold_time_s: must be 0 or 3..=65535"),
        "{err}"
    );
    assert!(!blob.exists());
    std::fs::write(&toml, bgp(9)).unwrap();
    let out = tool().arg("encode").arg(&toml).arg(&blob).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = pias::blob::decode(&std::fs::read(&blob).unwrap()).unwrap();
    assert_eq!(cfg.bgp.local_as, 65100);
    assert_eq!(cfg.bgp.neighbours[0].hold_time_s, 9);
    assert!(cfg.bgp.neighbours[0].bfd && !cfg.bgp.neighbours[0].passive);
    // Defaults for what the file leaves out.
    assert_eq!(
        (cfg.bgp.rise, cfg.bgp.fall, cfg.bgp.connect_retry_s),
        (2, 2, 5)
    );
}
