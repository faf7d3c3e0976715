//! The boot-time arena: one range of RAM after the image and the boot modules,
//! handed out by a bump allocator. Tables and DMA rings are reserved from it
//! once at boot and never freed or grown.

use crate::bootinfo::BootInfo;
use core::mem::{align_of, size_of, MaybeUninit};

pub struct Arena {
    next: usize,
    end: usize,
    start: usize,
}

pub static ARENA: spin::Mutex<Arena> = spin::Mutex::new(Arena {
    next: 0,
    end: 0,
    start: 0,
});

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

/// Places the arena in the RAM region holding the image: from the image's end
/// up to the next boot module (QEMU puts an initrd at the top of low memory,
/// GRUB right after the image, in which case the arena starts after it).
/// Returns its size in bytes.
pub fn init(info: &BootInfo) -> usize {
    let mut start = pias_boot::image_end() as u64;
    // Skip modules that cover the start (repeat: they may be back to back).
    loop {
        let covering = info
            .modules
            .iter()
            .find(|m| m.start <= start && start < m.start.saturating_add(m.len));
        match covering {
            Some(m) => start = m.start.saturating_add(m.len),
            None => break,
        }
    }
    let start = (start + 4095) & !4095;
    let mut end = info
        .ram
        .iter()
        .find(|r| r.start <= start && start < r.end)
        .map_or(start, |r| r.end.min(crate::phys::MAPPED_LIMIT))
        .min(start + ARENA_MAX);
    for m in info.modules.iter() {
        if m.start >= start {
            end = end.min(m.start);
        }
    }
    let end = (end & !4095).max(start);
    let mut a = ARENA.lock();
    a.start = start as usize;
    a.next = start as usize;
    a.end = end as usize;
    (end - start) as usize
}

impl Arena {
    fn take(&mut self, size: usize, align: usize) -> Result<usize, OutOfMemory> {
        let left = self.end - self.next;
        let at = (self.next + align - 1) & !(align - 1);
        match at.checked_add(size) {
            Some(end) if end <= self.end => {
                self.next = end;
                Ok(at)
            }
            _ => Err(OutOfMemory { wanted: size, left }),
        }
    }

    pub fn used(&self) -> usize {
        self.next - self.start
    }

    pub fn capacity(&self) -> usize {
        self.end - self.start
    }
}

/// Reserves zeroed, page-aligned pages (for DMA).
pub fn alloc_pages(pages: usize) -> Result<usize, OutOfMemory> {
    let bytes = pages * 4096;
    let at = ARENA.lock().take(bytes, 4096)?;
    // SAFETY: [at, at+bytes) was just reserved from RAM that nothing else uses.
    unsafe { core::ptr::write_bytes(at as *mut u8, 0, bytes) };
    Ok(at)
}

/// Reserves a slice of `n` values, each initialised by `init`.
pub fn alloc_slice<T>(n: usize, init: impl Fn() -> T) -> Result<&'static mut [T], OutOfMemory> {
    let bytes = size_of::<T>().checked_mul(n).ok_or(OutOfMemory {
        wanted: usize::MAX,
        left: 0,
    })?;
    let at = ARENA.lock().take(bytes, align_of::<T>().max(8))?;
    // SAFETY: the reserved range is RAM owned by nobody else, aligned for T and
    // large enough for n values; every element is written before the slice is
    // handed out, and the arena never reuses it.
    unsafe {
        let s = core::slice::from_raw_parts_mut(at as *mut MaybeUninit<T>, n);
        for slot in s.iter_mut() {
            slot.write(init());
        }
        Ok(core::slice::from_raw_parts_mut(at as *mut T, n))
    }
}

pub fn fill() -> (usize, usize) {
    let a = ARENA.lock();
    (a.used(), a.capacity())
}

/// The global allocator: the same arena. The PIAS tables reserve their
/// capacity once at boot (`pias::fixed`) and never give it back, so freeing is
/// a no-op and the arena never has to manage holes.
pub struct ArenaAllocator;

// SAFETY: `alloc` hands out disjoint, suitably aligned ranges of arena RAM
// that is used by nothing else, or null when the arena is exhausted.
unsafe impl core::alloc::GlobalAlloc for ArenaAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        match ARENA.lock().take(layout.size(), layout.align()) {
            Ok(at) => at as *mut u8,
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}
