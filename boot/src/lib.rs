//! The appliance's entry: PVH note and multiboot2 header, the 32->64-bit
//! switch, identity page tables, GDT and stack (`entry.S`, `linker.ld`).
//!
//! It calls `kernel_main(eax: u32, ebx: u32)`, which the kernel defines. The
//! constants here let the kernel tell the two boot protocols apart.
#![no_std]

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

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
