//! FixedMap and the replay caches under churn.

use super::{allocated_during, allocations_during, next};
use pias::fixed::{FixedMap, Full};
use pias::replay::{nonce_capacity, NonceCache, NonceError, SeqWindow};
use pias::ring::Ring;

#[test]
fn fixed_map_churn_at_full_occupancy_never_allocates() {
    const CAP: usize = 16_384;
    const CHURN: usize = 200_000;
    let mut map: FixedMap<u64, u64> = FixedMap::with_capacity(CAP);
    // Keys currently in the map, in insertion order, so the oldest can be removed.
    let mut live: std::collections::VecDeque<u64> = std::collections::VecDeque::with_capacity(CAP);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut removed_by_retain = 0usize;

    let allocations = allocations_during(|| {
        for _ in 0..CAP {
            let k = next(&mut rng);
            assert_eq!(map.insert(k, k ^ 1), Ok(None));
            live.push_back(k);
        }
        assert_eq!(map.len(), CAP);
        assert_eq!(map.insert(next(&mut rng), 0), Err(Full));
        for i in 0..CHURN {
            // Full occupancy: drop the oldest key, add a never-seen one.
            let Some(old) = live.pop_front() else {
                panic!("live keys ran out at step {i}");
            };
            assert_eq!(map.remove(&old), Some(old ^ 1));
            let k = next(&mut rng);
            assert_eq!(map.insert(k, k ^ 1), Ok(None));
            live.push_back(k);
            if i % 20_000 == 19_999 {
                // Drop about one key in 16, then refill to full with fresh keys.
                map.retain(|k, _| k % 16 != 0);
                let before = live.len();
                live.retain(|k| k % 16 != 0);
                removed_by_retain += before - live.len();
                assert_eq!(map.len(), live.len());
                while live.len() < CAP {
                    let k = next(&mut rng);
                    assert_eq!(map.insert(k, k ^ 1), Ok(None));
                    live.push_back(k);
                }
            }
        }
        assert_eq!(map.len(), CAP);
        for k in &live {
            assert_eq!(map.get(k), Some(&(k ^ 1)));
        }
    });
    assert!(
        removed_by_retain > 0,
        "retain removed nothing: the test did not exercise it"
    );
    assert_eq!(
        allocations, 0,
        "FixedMap allocated {allocations} times after construction"
    );
}

#[test]
fn nonce_cache_churn_through_expiry_never_allocates() {
    const SEC: u64 = 1_000_000;
    const FRESH: u64 = 30 * SEC;
    const TICK: u64 = SEC / 100; // 100 registrations/s
    let mut cache = NonceCache::with_capacity(nonce_capacity(100, FRESH));
    let mut window = SeqWindow::default();
    let mut rng = 0xdead_beef_cafe_f00du64;
    let mut most = 0;
    let allocations = allocations_during(|| {
        for i in 0..100_000u64 {
            let now = 2 * FRESH + i * TICK;
            // Timestamps anywhere in the freshness window.
            let ts = now - FRESH + next(&mut rng) % (2 * FRESH + 1);
            let nonce = next(&mut rng);
            assert_eq!(cache.insert(nonce, ts + FRESH, now), Ok(()));
            assert_eq!(
                cache.insert(nonce, ts + FRESH, now),
                Err(NonceError::Replayed)
            );
            if i % 1_000 == 0 {
                cache.expire(now);
            }
            most = most.max(cache.len());
            // A peer's reordered sequence numbers, while we are at it.
            let seq = i + 1 + next(&mut rng) % 64;
            if window.check(seq).is_ok() {
                window.record(seq);
            }
        }
    });
    // The cache cycled through its capacity many times over.
    assert!(
        most > cache.capacity() / 3,
        "only {most} remembered at once"
    );
    assert!(cache.len() <= cache.capacity());
    assert_eq!(
        allocations, 0,
        "NonceCache allocated {allocations} times after construction"
    );
}

#[test]
fn a_ring_reports_the_heap_it_reserved_and_adds_a_proxy_once() {
    let mut ring = None;
    let (n, bytes) = allocated_during(|| ring = Some(Ring::with_capacity(50)));
    let mut ring = ring.unwrap();
    assert_eq!(n, 1);
    assert_eq!(ring.heap_bytes(), bytes);
    let grown = allocations_during(|| {
        for p in 1..=50u32 {
            ring.add(p).unwrap();
            // Adding a proxy it holds changes nothing.
            ring.add(p).unwrap();
        }
    });
    assert_eq!(grown, 0);
    assert_eq!(ring.proxies(), 50);
}
