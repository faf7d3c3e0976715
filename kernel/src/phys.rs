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
    // SAFETY: the range is inside the identity map; boot info, modules and
    // fw_cfg-free RAM are not written while these slices are alive (the arena
    // is placed after every module and the image).
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
