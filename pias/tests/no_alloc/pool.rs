//! `ListPool` allocates nothing after `with_capacity`: a million mixed
//! operations over a thousand lists.

use super::{allocations_during, next};
use pias::fixed::Full;
use pias::pool::{List, ListPool};

/// A 64-byte entry, the size of a proxy's per-group record.
type Entry = [u64; 8];

const CAP: usize = 100_000;
const LISTS: usize = 1_000;
const OPS: usize = 1_000_000;

#[test]
fn a_million_operations_allocate_nothing() {
    let mut pool: ListPool<Entry> = ListPool::with_capacity(CAP);
    let mut lists = vec![List::default(); LISTS];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut pushed, mut refused, mut retains, mut clears, mut walked) = (0usize, 0usize, 0, 0, 0);

    let allocations = allocations_during(|| {
        for op in 0..OPS {
            let r = next(&mut rng);
            let Some(list) = lists.get_mut((r % LISTS as u64) as usize) else {
                continue;
            };
            // Mostly pushes, so the pool fills up and refuses; retains and clears free slots.
            match (r >> 32) % 1000 {
                0..=979 => match pool.push(list, [op as u64; 8]) {
                    Ok(()) => pushed += 1,
                    Err(Full) => refused += 1,
                },
                980..=994 => {
                    let cut = (r >> 16) % 4;
                    pool.retain(list, |e| {
                        e[1] = e[1].wrapping_add(1);
                        e[0] % 4 != cut
                    });
                    retains += 1;
                }
                995..=997 => {
                    pool.clear(list);
                    clears += 1;
                }
                _ => {
                    pool.for_each_mut(list, |e| e[2] ^= 1);
                    if let Some(e) = pool.find_mut(list, |e| e[0] % 2 == 0) {
                        e[3] = 7;
                    }
                    walked += pool.iter(list).count();
                }
            }
        }
    });
    assert_eq!(allocations, 0, "allocations during the operations");
    // The run really exercised every path: a full pool, reuse, retains, clears.
    assert!(pushed > CAP, "pushed {pushed}: freed slots were reused");
    assert!(refused > 0, "the pool never filled up");
    assert!(retains > 10_000 && clears > 1_000 && walked > 0);
    let total: usize = lists.iter().map(List::len).sum();
    assert_eq!(pool.len(), total);
    assert!(pool.len() <= CAP);
    let counted: usize = lists.iter().map(|l| pool.iter(l).count()).sum();
    assert_eq!(counted, total);
}
