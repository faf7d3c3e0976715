//! Reading physical memory through the boot crate's identity map.

/// The boot page tables identity-map the first 4 GiB.
pub const MAPPED_LIMIT: u64 = 4 << 30;

/// A byte slice over physical memory, or `None` if any of it lies outside
/// the identity map (or the range wraps).
pub fn slice(addr: u64, len: usize) -> Option<&'static [u8]> {
    let end = addr.checked_add(len as u64)?;
    if addr == 0 || end > MAPPED_LIMIT {
        return None;
    }
    // SAFETY: `addr` is non-null and `[addr, end)` lies below MAPPED_LIMIT, so
    // every byte is mapped (the boot page tables identity-map the first 4 GiB)
    // and `len` is far below isize::MAX. Callers pass ranges the loader gave
    // (boot information, memory map, boot modules), which nothing writes while
    // the slices live: the kernel never writes them and the arena avoids every
    // boot module. The boot information itself may lie where the arena goes
    // later, so the `'static` is wider than what holds; it is sound because
    // `bootinfo::read` runs before `arena::init` and keeps no slice, and
    // `config::load` (after it) reads only a boot module, which the arena
    // never covers, and keeps no slice either.
    Some(unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) })
}

/// Little-endian reads from a byte slice, `None` when out of range.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
