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
    let e = format!("{:#}", pias_image::parse_toml(&text).unwrap_err());
    assert!(e.contains("64 hexadecimal digits"), "{e}");
    // ...but everything else is the config.
    let restored = text
        .replace(
            "key = \"<redacted>\"",
            "key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"",
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
    std::fs::write(&corrupt, b"PIASCF\x02\x00\xff\xff\xff\x00\x00\x00\x00\x00").unwrap();
    let out = tool().arg("decode").arg(&corrupt).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("length mismatch"));
}
