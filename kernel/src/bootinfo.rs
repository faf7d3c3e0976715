//! What the boot loader told us: protocol, memory map and modules, from a PVH
//! `hvm_start_info` or a multiboot2 information block. Every read is bounded.

use crate::phys::{slice, u32_at, u64_at};
use heapless::Vec;
use pias_boot::{MULTIBOOT2_BOOTLOADER_MAGIC, PVH_START_INFO_MAGIC};

pub const MAX_REGIONS: usize = 64;
pub const MAX_MODULES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Multiboot2,
}

/// A range of usable RAM.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub start: u64,
    pub len: u64,
}

pub struct BootInfo {
    pub protocol: Protocol,
    /// Usable RAM; empty when the loader gave no map (then fw_cfg's e820 is read).
    pub ram: Vec<Region, MAX_REGIONS>,
    pub modules: Vec<Module, MAX_MODULES>,
}

#[derive(Debug)]
pub enum BootInfoError {
    UnknownProtocol { eax: u32 },
    Unreadable(&'static str),
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::UnknownProtocol { eax } => {
                write!(
                    f,
                    "entered by an unknown loader (eax={eax:#x}); boot with PVH or multiboot2"
                )
            }
            BootInfoError::Unreadable(what) => write!(f, "boot information unreadable: {what}"),
        }
    }
}

const E820_RAM: u32 = 1;

pub fn read(eax: u32, ebx: u32) -> Result<BootInfo, BootInfoError> {
    let head = slice(u64::from(ebx), 8);
    if head.and_then(|h| u32_at(h, 0)) == Some(PVH_START_INFO_MAGIC) {
        return read_pvh(u64::from(ebx));
    }
    if eax == MULTIBOOT2_BOOTLOADER_MAGIC {
        return read_multiboot2(u64::from(ebx));
    }
    Err(BootInfoError::UnknownProtocol { eax })
}

fn push_ram(ram: &mut Vec<Region, MAX_REGIONS>, start: u64, len: u64) {
    if len == 0 {
        return;
    }
    // Beyond MAX_REGIONS we keep the first ones; the arena only needs one.
    let _ = ram.push(Region {
        start,
        end: start.saturating_add(len),
    });
}

fn read_pvh(addr: u64) -> Result<BootInfo, BootInfoError> {
    let si = slice(addr, 56).ok_or(BootInfoError::Unreadable("start_info"))?;
    let version = u32_at(si, 4).unwrap_or(0);
    let nr_modules = u32_at(si, 12).unwrap_or(0) as usize;
    let modlist = u64_at(si, 16).unwrap_or(0);
    let mut info = BootInfo {
        protocol: Protocol::Pvh,
        ram: Vec::new(),
        modules: Vec::new(),
    };
    if nr_modules > 0 {
        let n = nr_modules.min(MAX_MODULES);
        let list = slice(modlist, n * 32).ok_or(BootInfoError::Unreadable("PVH module list"))?;
        for i in 0..n {
            let start = u64_at(list, i * 32).unwrap_or(0);
            let len = u64_at(list, i * 32 + 8).unwrap_or(0);
            let _ = info.modules.push(Module { start, len });
        }
    }
    if version >= 1 {
        let map = u64_at(si, 40).unwrap_or(0);
        let entries = (u32_at(si, 48).unwrap_or(0) as usize).min(256);
        if map != 0 && entries > 0 {
            let m = slice(map, entries * 24).ok_or(BootInfoError::Unreadable("PVH memory map"))?;
            for i in 0..entries {
                let (a, l, t) = (
                    u64_at(m, i * 24),
                    u64_at(m, i * 24 + 8),
                    u32_at(m, i * 24 + 16),
                );
                if let (Some(a), Some(l), Some(E820_RAM)) = (a, l, t) {
                    push_ram(&mut info.ram, a, l);
                }
            }
        }
    }
    Ok(info)
}

const MB2_TAG_END: u32 = 0;
const MB2_TAG_MODULE: u32 = 3;
const MB2_TAG_MMAP: u32 = 6;
const MB2_MAX_INFO: usize = 64 * 1024;

fn read_multiboot2(addr: u64) -> Result<BootInfo, BootInfoError> {
    let head = slice(addr, 8).ok_or(BootInfoError::Unreadable("multiboot2 info"))?;
    let total = u32_at(head, 0).unwrap_or(0) as usize;
    if !(8..=MB2_MAX_INFO).contains(&total) {
        return Err(BootInfoError::Unreadable("multiboot2 info size"));
    }
    let mbi = slice(addr, total).ok_or(BootInfoError::Unreadable("multiboot2 info"))?;
    let mut info = BootInfo {
        protocol: Protocol::Multiboot2,
        ram: Vec::new(),
        modules: Vec::new(),
    };
    let mut off = 8;
    while off + 8 <= total {
        let ty = u32_at(mbi, off).unwrap_or(MB2_TAG_END);
        let size = u32_at(mbi, off + 4).unwrap_or(0) as usize;
        if ty == MB2_TAG_END || size < 8 || off + size > total {
            break;
        }
        let tag = &mbi[off..off + size];
        match ty {
            MB2_TAG_MODULE => {
                if let (Some(s), Some(e)) = (u32_at(tag, 8), u32_at(tag, 12)) {
                    if e > s {
                        let _ = info.modules.push(Module {
                            start: u64::from(s),
                            len: u64::from(e - s),
                        });
                    }
                }
            }
            MB2_TAG_MMAP => {
                let esize = u32_at(tag, 8).unwrap_or(0) as usize;
                if esize >= 24 {
                    let mut e = 16;
                    while e + esize <= size {
                        if let (Some(a), Some(l), Some(E820_RAM)) =
                            (u64_at(tag, e), u64_at(tag, e + 8), u32_at(tag, e + 16))
                        {
                            push_ram(&mut info.ram, a, l);
                        }
                        e += esize;
                    }
                }
            }
            _ => {}
        }
        off += (size + 7) & !7;
    }
    Ok(info)
}

/// Adds RAM regions from fw_cfg's "etc/e820" (20-byte entries) when the loader gave none.
pub fn ram_from_e820(info: &mut BootInfo, e820: &[u8]) {
    for entry in e820.chunks_exact(20) {
        if let (Some(a), Some(l), Some(E820_RAM)) =
            (u64_at(entry, 0), u64_at(entry, 8), u32_at(entry, 16))
        {
            push_ram(&mut info.ram, a, l);
        }
    }
}
