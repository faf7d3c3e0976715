//! `ListPool` allocates nothing after `with_capacity`: a counting global
//! allocator watches a million mixed operations over a thousand lists.

use pias::fixed::Full;
use pias::pool::{List, ListPool};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Forwards to `System`, counting allocations made by a thread that asked to be watched.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted (the test harness's own
    /// threads keep allocating for their bookkeeping; only ours is watched).
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; counting touches only an
// atomic and a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// xorshift64*: a deterministic, allocation-free stream of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A 64-byte entry, the size of a proxy's per-group record.
type Entry = [u64; 8];

const CAP: usize = 100_000;
const LISTS: usize = 1_000;
const OPS: usize = 1_000_000;

#[test]
fn a_million_operations_allocate_nothing() {
    let mut pool: ListPool<Entry> = ListPool::with_capacity(CAP);
    let mut lists = vec![List::default(); LISTS];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut pushed, mut refused, mut retains, mut clears, mut walked) = (0usize, 0usize, 0, 0, 0);

    WATCHED.with(|w| w.set(true));
    // The counter works: one watched allocation is seen.
    let probe_start = ALLOCS.load(Ordering::Relaxed);
    drop(std::hint::black_box(Box::new(1u64)));
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - probe_start, 1);

    let before = ALLOCS.load(Ordering::Relaxed);
    for op in 0..OPS {
        let r = rng.next();
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
    let after = ALLOCS.load(Ordering::Relaxed);
    WATCHED.with(|w| w.set(false));

    assert_eq!(after - before, 0, "allocations during the operations");
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
