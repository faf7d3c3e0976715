//! The arena: one range of RAM after the image and the boot modules, managed
//! by a linked-list allocator (linked_list_allocator: small, no_std, proven in
//! hobby and research kernels). Boot-time tables and DMA rings are taken from
//! it once and never returned; the PIAS tables reserve their capacity once and
//! never grow; only short-lived temporaries are ever freed.

use crate::bootinfo::BootInfo;
use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;

/// The arena's heap.
pub static HEAP: LockedHeap = LockedHeap::empty();

/// Allocations through the global allocator since boot (the status shows
/// it, so that a steady per-packet path can be seen not to allocate).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The global allocator: the arena's heap, counting every allocation.
struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

// SAFETY: every method forwards to `HEAP` (a `GlobalAlloc`) with the caller's
// arguments unchanged, so `Counting` keeps exactly the contract `HEAP` does;
// the counting is one relaxed atomic add, which neither allocates nor can fail.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's `layout`, as `GlobalAlloc::alloc` requires.
        unsafe { HEAP.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (that is, from `HEAP`) with `layout`.
        unsafe { HEAP.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr`/`layout` came from this allocator, `new_size` is the
        // caller's, as `GlobalAlloc::realloc` requires.
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}

/// Allocations since boot.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The arena never takes more than this, so tests with large `-m` stay cheap.
const ARENA_MAX: u64 = 64 << 20;

#[derive(Debug)]
pub struct OutOfMemory {
    pub wanted: usize,
    pub left: usize,
}

impl core::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "arena exhausted: wanted {} bytes, {} left",
            self.wanted, self.left
        )
    }
}

/// Places the arena in the RAM region holding the image, in the largest gap
/// after the image that no boot module occupies. Returns its size in bytes.
pub fn init(info: &BootInfo) -> usize {
    let image_end = pias_boot::image_end() as u64;
    let region_end = info
        .ram
        .iter()
        .find(|r| r.start <= image_end && image_end < r.end)
        .map_or(image_end, |r| r.end.min(crate::phys::MAPPED_LIMIT));
    // The free gaps between the image's end, the boot modules and the region's
    // end; the arena is the largest (QEMU puts an initrd at the top of RAM,
    // GRUB puts modules right after the image).
    let mut modules: heapless::Vec<(u64, u64), { crate::bootinfo::MAX_MODULES }> = info
        .modules
        .iter()
        .map(|m| (m.start, m.start.saturating_add(m.len)))
        .collect();
    modules.sort_unstable();
    let mut best = (0u64, 0u64);
    let mut lo = image_end;
    for &(m_start, m_end) in modules
        .iter()
        .chain(core::iter::once(&(region_end, region_end)))
    {
        let gap_start = (lo + 4095) & !4095;
        let gap_end = m_start.min(region_end) & !4095;
        if gap_end > gap_start && gap_end - gap_start > best.1 - best.0 {
            best = (gap_start, gap_end);
        }
        lo = lo.max(m_end);
    }
    let (start, end) = (best.0, best.1.min(best.0 + ARENA_MAX));
    if end > start {
        // SAFETY: `[start, end)` is page-aligned and at least a page (so `init`
        // cannot panic on size), usable RAM from the memory map below
        // MAPPED_LIMIT (identity-mapped), after the image's end (clear of its
        // code, data, .bss, boot stack and page tables) and between boot
        // modules, which stay readable. Nothing else uses it for the rest of the
        // run (the `'static` validity `Heap::init` asks), and `kernel_main`
        // calls this once, on the empty heap. Boot information the loader put
        // there has been read and copied out by now.
        unsafe {
            HEAP.lock()
                .init(start as usize as *mut u8, (end - start) as usize)
        };
    }
    (end - start) as usize
}

fn take(layout: Layout) -> Result<NonNull<u8>, OutOfMemory> {
    let mut heap = HEAP.lock();
    let left = heap.free();
    heap.allocate_first_fit(layout).map_err(|_| OutOfMemory {
        wanted: layout.size(),
        left,
    })
}

/// Reserves zeroed, page-aligned pages (for DMA), for good.
pub fn alloc_pages(pages: usize) -> Result<usize, OutOfMemory> {
    let bytes = pages.checked_mul(4096).ok_or(OutOfMemory {
        wanted: usize::MAX,
        left: 0,
    })?;
    let layout = Layout::from_size_align(bytes, 4096).map_err(|_| OutOfMemory {
        wanted: bytes,
        left: 0,
    })?;
    let at = take(layout)?;
    // SAFETY: `at` is a fresh heap block for a layout of exactly `bytes` bytes,
    // so all of them are writable, and no other pointer to it exists yet.
    unsafe { core::ptr::write_bytes(at.as_ptr(), 0, bytes) };
    Ok(at.as_ptr() as usize)
}

/// Reserves a slice of `n` values, each initialised by `init`, for good.
pub fn alloc_slice<T>(n: usize, init: impl Fn() -> T) -> Result<&'static mut [T], OutOfMemory> {
    let layout = Layout::array::<T>(n).map_err(|_| OutOfMemory {
        wanted: usize::MAX,
        left: 0,
    })?;
    let at = take(layout.align_to(8).unwrap_or(layout))?;
    // SAFETY: `at` is a fresh heap block of `Layout::array::<T>(n)`'s size and
    // at least its alignment, so it holds n `MaybeUninit<T>`. Every slot is
    // written before the block is viewed as `[T]`, and the block is never freed
    // or handed out again, so the `&'static mut` is the only reference to it.
    unsafe {
        let s = core::slice::from_raw_parts_mut(at.as_ptr() as *mut MaybeUninit<T>, n);
        for slot in s.iter_mut() {
            slot.write(init());
        }
        Ok(core::slice::from_raw_parts_mut(at.as_ptr() as *mut T, n))
    }
}

/// (bytes in use, arena size)
pub fn fill() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.size())
}

/// `fill`, unless the heap is locked (by the code that failed, when called
/// from the panic handler): never waits.
pub fn try_fill() -> Option<(usize, usize)> {
    let h = HEAP.try_lock()?;
    Some((h.used(), h.size()))
}
