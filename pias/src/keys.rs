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

    // Computed independently: python3 -c "import hmac,hashlib;
    // print(hmac.new(bytes([7]*32), b'pias group key v1'+bytes([203,0,113,10,0,53,0]),
    // hashlib.sha256).hexdigest())"
    const KAT: &str = "68767148b1bff9654c386a5ce284ffb80fc3b5134d856dbd5098a7c6d735ec7b";
}
