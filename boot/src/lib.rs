//! The appliance's entry: PVH note and multiboot2 header, the 32->64-bit
//! switch, identity page tables, GDT and stack (`entry.S`, `linker.ld`); and
//! its memcpy, memmove and memset (`mem.S`: loops, where compiler_builtins'
//! `rep` string instructions cost ~27 ns a word under QEMU's TCG).
//!
//! It calls `kernel_main(eax: u32, ebx: u32)`, which the kernel defines. The
//! constants here let the kernel tell the two boot protocols apart. On the
//! host only `mem.S` is built, under its `pias_mem*` names, for its tests.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

// x86-64 ELF only (the appliance's target, and the Linux hosts its tests run on).
#[cfg(all(target_arch = "x86_64", any(target_os = "none", target_os = "linux")))]
core::arch::global_asm!(include_str!("mem.S"), options(att_syntax));

// The appliance's memcpy, memmove and memset are mem.S's: strong symbols,
// which the linker takes over compiler_builtins' weak ones.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".globl memcpy",
    ".set memcpy, pias_memcpy",
    ".globl memmove",
    ".set memmove, pias_memmove",
    ".globl memset",
    ".set memset, pias_memset",
    options(att_syntax)
);

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod mem_tests;

/// `hvm_start_info.magic` of a PVH boot.
pub const PVH_START_INFO_MAGIC: u32 = 0x336e_c578;
/// `%eax` after a multiboot2 loader.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// First word of the multiboot2 header in the image.
pub const MULTIBOOT2_HEADER_MAGIC: u32 = 0xe852_50d6;

/// Where the loaded image ends (end of .bss), from the linker script.
pub fn image_end() -> usize {
    extern "C" {
        static __image_end: u8;
    }
    // Taking the address of a linker symbol reads nothing.
    core::ptr::addr_of!(__image_end) as usize
}

/// Where the loaded image starts (1 MiB).
pub fn image_start() -> usize {
    extern "C" {
        static __image_start: u8;
    }
    core::ptr::addr_of!(__image_start) as usize
}
