//! The management port authenticates (issue 11): against a booted appliance,
//! shutdown with a wrong key, without a valid MAC, replayed, stale, and from
//! a source outside `management.allow` are each refused, counted under their
//! own counter and unanswered, and the appliance keeps running; a status
//! request from a forged source gets no reply at all (so none larger than
//! itself); the right key still shuts it down cleanly (status 33).

use pias::mgmt::{Body, Op, Request, Response, FRESHNESS_MS, REQUEST_LEN};
use pias::status::MgmtCounters;
use pias::wire::Key;
use pias_qemu::client::{random_nonce, sealed_request, unix_ms, MgmtClient};
use pias_qemu::lab::random_key;
use pias_qemu::{Lab, Machine, Spec};
use pias_tests::{kernel, test_accel};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Inside the allow-list (198.18.0.0/28) but not the operator's host.
const FORGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
/// Outside it.
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How long a refusal that did answer would take to arrive.
const SILENCE: Duration = Duration::from_millis(700);

fn socket(lab: &Lab, bind: Ipv4Addr) -> UdpSocket {
    let s = lab
        .inside(move || Ok(UdpSocket::bind((bind, 0))?))
        .unwrap_or_else(|e| panic!("{e:#}"));
    s.set_read_timeout(Some(SILENCE)).unwrap();
    s
}

/// Sends `bytes` from `sock`; every reply within `SILENCE`.
fn exchange(sock: &UdpSocket, bytes: &[u8]) -> Vec<Vec<u8>> {
    let to = SocketAddr::from((Lab::appliance_ip(0), 7001));
    sock.send_to(bytes, to).unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        replies.push(buf[..n].to_vec());
    }
    replies
}

fn sealed_at(key: &Key, nonce: u64, unix_ms: u64, op: Op) -> Vec<u8> {
    let mut b = [0u8; REQUEST_LEN];
    let n = Request { nonce, unix_ms, op }.seal(key, &mut b).unwrap();
    b[..n].to_vec()
}

#[test]
fn management_requests_must_be_authentic_fresh_unreplayed_and_allowed() {
    let mut lab = Lab::new("auth").unwrap();
    let mut cfg = lab.config_for(0);
    cfg.management.allow.clear();
    cfg.management
        .allow
        .push("198.18.0.0/28".parse().unwrap())
        .unwrap();
    lab.boot(
        &kernel(),
        Spec::new(
            Machine::Microvm,
            test_accel(),
            pias_image::encode(&cfg).unwrap(),
        ),
    )
    .unwrap();
    lab.appliances[0]
        .wait_for("ready:", Duration::from_secs(30))
        .unwrap();
    lab.wait_carrier(0, Duration::from_secs(5)).unwrap();
    for a in [FORGER, STRANGER] {
        lab.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", "br0"])
            .unwrap();
    }
    let key = lab.mgmt_key.clone();
    let mut operator = MgmtClient::new(&lab, Lab::appliance_ip(0), 7001).unwrap();
    let counters = |c: &mut MgmtClient| -> MgmtCounters {
        c.status().unwrap_or_else(|e| panic!("{e:#}")).mgmt
    };
    let host = socket(&lab, lab.host_ip);
    let forger = socket(&lab, FORGER);
    let stranger = socket(&lab, STRANGER);
    let wrong = random_key().unwrap();

    // Each refused shutdown: no reply, its own counter up by one, still running.
    let mut refused =
        |what: &str, sock: &UdpSocket, bytes: Vec<u8>, counter: fn(&MgmtCounters) -> u64| {
            let before = counters(&mut operator);
            let replies = exchange(sock, &bytes);
            assert!(replies.is_empty(), "{what}: answered {replies:?}");
            let after = counters(&mut operator);
            assert_eq!(counter(&after), counter(&before) + 1, "{what}: {after:?}");
            assert!(
                lab.appliances[0].try_exit().unwrap().is_none(),
                "{what}: it stopped"
            );
            eprintln!("{what}: refused, counted, unanswered, still running");
        };
    let nonce = || random_nonce().unwrap();
    refused(
        "shutdown with a wrong key",
        &host,
        sealed_request(&wrong, nonce(), Op::Shutdown),
        |c| c.bad_mac,
    );
    let mut no_mac = sealed_request(&key, nonce(), Op::Shutdown);
    let n = no_mac.len();
    no_mac[n - 16..].fill(0);
    refused("shutdown without a MAC", &host, no_mac, |c| c.bad_mac);
    let mut too_short = sealed_request(&key, nonce(), Op::Shutdown);
    too_short.truncate(REQUEST_LEN - 16);
    refused("shutdown with the MAC cut off", &host, too_short, |c| {
        c.bad_requests
    });
    let old = unix_ms() - FRESHNESS_MS - 5_000;
    refused(
        "shutdown with a stale time",
        &host,
        sealed_at(&key, nonce(), old, Op::Shutdown),
        |c| c.stale,
    );
    let ahead = unix_ms() + FRESHNESS_MS + 5_000;
    refused(
        "shutdown from the future",
        &host,
        sealed_at(&key, nonce(), ahead, Op::Shutdown),
        |c| c.stale,
    );
    refused(
        "shutdown from outside management.allow",
        &stranger,
        sealed_request(&key, nonce(), Op::Shutdown),
        |c| c.refused_source,
    );
    // A replay: the same datagram twice; and a shutdown reusing a seen nonce.
    let status = sealed_request(&key, nonce(), Op::Status);
    let first = exchange(&host, &status);
    assert_eq!(first.len(), 1, "the original is answered");
    let r = Response::open(&key, &first[0]).expect("a sealed answer");
    assert!(matches!(r.body, Body::Status(_)));
    refused("a replayed status request", &host, status.clone(), |c| {
        c.replayed
    });
    let seen = u64::from_le_bytes(status[5..13].try_into().unwrap());
    refused(
        "shutdown reusing a seen nonce",
        &host,
        sealed_request(&key, seen, Op::Shutdown),
        |c| c.replayed,
    );

    // A forged source inside the allow-list, no key: nothing comes back.
    for (what, bytes) in [
        (
            "status with a wrong key",
            sealed_request(&wrong, nonce(), Op::Status),
        ),
        ("a version 2 status request", b"PIAQ\x02\x07\x00".to_vec()),
        ("64 bytes of noise", vec![0x5a; 64]),
    ] {
        let replies = exchange(&forger, &bytes);
        assert!(replies.is_empty(), "{what} from {FORGER}: {replies:?}");
    }

    // The right key: a clean stop, status 33.
    assert_eq!(operator.shutdown().expect("shutdown"), Body::ShuttingDown);
    pias_tests::assert_clean_exit(&mut lab, 0);
}
