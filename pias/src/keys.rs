//! Per-group keys derived from the deployment's group secret, so any
//! `AA:port/proto` inside the anycast prefixes can become a group without a
//! new config on any appliance: the operator issues the derived key to the
//! service owner, and every proxy derives the same key when it needs it.

use crate::addr::Group;
use crate::wire::Key;
use hmac::{KeyInit, Mac};

/// Domain separation for group keys (a different purpose, a different label).
const GROUP_KEY_LABEL: &[u8] = b"pias group key v1";

/// The key of `group` under the deployment's group secret:
/// HMAC-SHA256(secret, "pias group key v1" ‖ AA ‖ port (big-endian) ‖ transport).
/// Knowing one group's key tells nothing of another's or of the secret.
pub fn group_key(secret: &Key, group: &Group) -> Key {
    // HMAC pads a key shorter than SHA-256's 64-byte block with zeros; doing
    // it here gives the fixed-size constructor, which cannot fail.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&secret.0);
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&block.into());
    mac.update(GROUP_KEY_LABEL);
    mac.update(&group.key_bytes());
    let out = mac.finalize().into_bytes();
    let mut k = [0u8; 32];
    k.copy_from_slice(&out[..32]);
    Key(k)
}

/// Why a key given as text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTextError {
    /// Not exactly 64 hexadecimal digits (surrounding whitespace is ignored).
    NotHex,
}

impl core::fmt::Display for KeyTextError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a key is 64 hexadecimal digits (32 bytes)")
    }
}

/// Parses a key written as 64 hex digits (either case; surrounding
/// whitespace ignored). The error never echoes the text.
pub fn key_from_hex(text: &str) -> Result<Key, KeyTextError> {
    let t = text.trim().as_bytes();
    if t.len() != 64 {
        return Err(KeyTextError::NotHex);
    }
    let mut k = [0u8; 32];
    for (i, pair) in t.chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or(KeyTextError::NotHex)?;
        let lo = hex_digit(pair[1]).ok_or(KeyTextError::NotHex)?;
        k[i] = (hi << 4) | lo;
    }
    Ok(Key(k))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The key as 64 lowercase hex digits (for the config's TOML form and the
/// operator's `pias-image group-key`; never for logs).
pub fn key_to_hex(key: &Key) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in key.0.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// Fewest distinct byte values a configured key must have (a random 32-byte
/// key has about 30; a typed pattern or a repeated byte has few).
pub const MIN_DISTINCT_KEY_BYTES: usize = 16;

/// Why `key` is too weak to configure, if it is: all zero, or fewer than
/// `MIN_DISTINCT_KEY_BYTES` distinct byte values.
pub fn weakness(key: &Key) -> Option<&'static str> {
    if key.0 == [0; 32] {
        return Some("weak key: all zero (generate one, e.g. `openssl rand -hex 32`)");
    }
    let mut seen = [false; 256];
    for &b in &key.0 {
        seen[usize::from(b)] = true;
    }
    if seen.iter().filter(|&&s| s).count() < MIN_DISTINCT_KEY_BYTES {
        return Some("weak key: fewer than 16 distinct byte values (generate one, e.g. `openssl rand -hex 32`)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4, Transport};

    fn g(ip: [u8; 4], port: u16, transport: Transport) -> Group {
        Group {
            ip: Ipv4(ip),
            port,
            transport,
        }
    }

    #[test]
    fn known_answer() {
        // Pinned: proxies and agents of different versions must agree on it.
        let k = group_key(&Key([7; 32]), &g([203, 0, 113, 10], 53, Transport::Udp));
        let hex: alloc::string::String = k.0.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(hex, KAT);
    }

    #[test]
    fn every_part_of_the_group_and_the_secret_matters() {
        let s = Key([7; 32]);
        let base = group_key(&s, &g([203, 0, 113, 10], 53, Transport::Udp));
        for other in [
            g([203, 0, 113, 11], 53, Transport::Udp),
            g([203, 0, 113, 10], 54, Transport::Udp),
            g([203, 0, 113, 10], 53, Transport::Tcp),
        ] {
            assert_ne!(group_key(&s, &other), base);
        }
        assert_ne!(
            group_key(&Key([8; 32]), &g([203, 0, 113, 10], 53, Transport::Udp)),
            base
        );
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let k = Key(core::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let hex = key_to_hex(&k);
        let text = core::str::from_utf8(&hex).unwrap();
        assert_eq!(key_from_hex(text), Ok(k.clone()));
        assert_eq!(
            key_from_hex(&alloc::format!("  {}\n", text.to_uppercase())),
            Ok(k)
        );
        assert_eq!(key_from_hex(&text[..62]), Err(KeyTextError::NotHex));
        assert_eq!(
            key_from_hex(&alloc::format!("{}zz", &text[..62])),
            Err(KeyTextError::NotHex)
        );
        // The refusal says what a key is, and never echoes the text.
        let said = alloc::format!("{}", KeyTextError::NotHex);
        assert!(said.contains("64 hexadecimal digits"), "{said}");
    }

    #[test]
    fn weak_keys_are_named() {
        assert!(weakness(&Key([0; 32])).unwrap().contains("all zero"));
        assert!(weakness(&Key([7; 32])).unwrap().contains("distinct"));
        // 15 distinct values: refused; 16: accepted.
        let k15 = Key(core::array::from_fn(|i| (i % 15) as u8 + 1));
        assert!(weakness(&k15).is_some());
        let k16 = Key(core::array::from_fn(|i| (i % 16) as u8));
        assert_eq!(weakness(&k16), None);
    }

    // Computed independently: python3 -c "import hmac,hashlib;
    // print(hmac.new(bytes([7]*32), b'pias group key v1'+bytes([203,0,113,10,0,53,0]),
    // hashlib.sha256).hexdigest())"
    const KAT: &str = "68767148b1bff9654c386a5ce284ffb80fc3b5134d856dbd5098a7c6d735ec7b";
}
