//! Counts heap allocations: once built, the fixed tables, the pool and a
//! whole proxy must never allocate again, whatever input they see.
//! One binary with one counting global allocator for all of them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod pool;
mod proxy;
mod tables;

/// Allocations (alloc, alloc_zeroed, realloc) made by a thread while it is counting.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Bytes asked for by those allocations (a realloc counts its new size).
static BYTES: AtomicUsize = AtomicUsize::new(0);

/// One counting test at a time, so `ALLOCS` belongs to the test that reads it.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set on the test's own thread while it measures; the harness's other
    /// threads (and tests running beside it) are not counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn note(bytes: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        BYTES.fetch_add(bytes, Ordering::SeqCst);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `Counting` upholds exactly the contract `System` does; the
// counting itself touches only an atomic and a const-initialised thread-local
// `Cell<bool>` (no destructor, no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same `layout` the caller vouched for to us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same `layout` the caller vouched for to us.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`,
        // as the caller guarantees; `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with this thread's allocations counted; returns how many there were.
pub fn allocations_during(f: impl FnOnce()) -> usize {
    allocated_during(f).0
}

/// Runs `f` with this thread's allocations counted; returns how many there
/// were and how many bytes they asked for.
pub fn allocated_during(f: impl FnOnce()) -> (usize, usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (before, bytes_before) = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    (
        ALLOCS.load(Ordering::SeqCst) - before,
        BYTES.load(Ordering::SeqCst) - bytes_before,
    )
}

/// xorshift64*: fresh, well-spread keys without allocating.
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn counting_allocator_sees_allocations() {
    // The guard below is only worth something if the counter can move.
    let n = allocations_during(|| {
        let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
        assert_eq!(v.capacity(), 16);
    });
    assert_eq!(n, 1);
}
