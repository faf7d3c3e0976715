//! The kernel ELF carries a well-formed multiboot2 header (for GRUB) and a PVH
//! entry note (for qemu -kernel), in one contiguous load segment, and its
//! memcpy, memmove and memset are the boot crate's; the image has no symbol
//! table (the release profile strips it).

use pias_tests::kernel;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn multiboot2_header_is_well_formed() {
    let elf = std::fs::read(kernel()).unwrap();
    // Spec: within the first 32768 bytes, 64-bit aligned.
    let at = (0..32768usize.min(elf.len() - 16))
        .step_by(8)
        .find(|&o| u32_at(&elf, o) == 0xe852_50d6)
        .expect("no multiboot2 header in the first 32 KiB");
    let arch = u32_at(&elf, at + 4);
    let len = u32_at(&elf, at + 8);
    let sum = u32_at(&elf, at + 12);
    assert_eq!(arch, 0, "architecture must be i386 protected mode");
    assert_eq!(
        0xe852_50d6u32
            .wrapping_add(arch)
            .wrapping_add(len)
            .wrapping_add(sum),
        0,
        "checksum"
    );
    // Tags follow, 8-aligned, ending with type 0 size 8.
    let mut off = at + 16;
    let end = at + len as usize;
    let mut saw_end = false;
    while off + 8 <= end {
        let ty = u16_at(&elf, off);
        let size = u32_at(&elf, off + 4) as usize;
        assert!(size >= 8, "tag size");
        if ty == 0 {
            assert_eq!(size, 8);
            saw_end = off + 8 == end;
            break;
        }
        off += (size + 7) & !7;
    }
    assert!(saw_end, "header must end with the end tag");
}

#[test]
fn the_image_carries_no_symbol_table() {
    let elf = std::fs::read(kernel()).unwrap();
    assert!(
        symbols(&elf).is_empty(),
        "the release kernel is not stripped"
    );
}

#[test]
fn pvh_note_points_at_the_entry_and_one_load_segment() {
    let elf = std::fs::read(kernel()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELF64");
    let entry = u64_at(&elf, 24);
    let phoff = u64_at(&elf, 32) as usize;
    let phentsize = u16_at(&elf, 54) as usize;
    let phnum = u16_at(&elf, 56) as usize;
    let mut loads = 0;
    let mut pvh_entry = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let ty = u32_at(&elf, ph);
        let off = u64_at(&elf, ph + 8) as usize;
        let filesz = u64_at(&elf, ph + 32) as usize;
        match ty {
            1 => loads += 1,
            4 => {
                let mut n = off;
                while n + 12 <= off + filesz {
                    let namesz = u32_at(&elf, n) as usize;
                    let descsz = u32_at(&elf, n + 4) as usize;
                    let nty = u32_at(&elf, n + 8);
                    let name = &elf[n + 12..n + 12 + namesz];
                    let desc = n + 12 + ((namesz + 3) & !3);
                    if nty == 18 && name == b"Xen\0" {
                        assert_eq!(descsz, 8);
                        pvh_entry = Some(u64_at(&elf, desc));
                    }
                    n = desc + ((descsz + 3) & !3);
                }
            }
            _ => {}
        }
    }
    assert_eq!(loads, 1, "one contiguous load segment");
    assert_eq!(pvh_entry, Some(entry), "PVH note must name the ELF entry");
    assert!(entry < 1 << 32, "entry must be reachable in 32-bit mode");
}

/// The ELF's symbol table: name → value (section headers' SHT_SYMTAB, names
/// from the string table it links to).
fn symbols(elf: &[u8]) -> std::collections::HashMap<String, u64> {
    let shoff = u64_at(elf, 40) as usize;
    let shentsize = u16_at(elf, 58) as usize;
    let shnum = u16_at(elf, 60) as usize;
    let section = |i: usize| shoff + i * shentsize;
    let mut out = std::collections::HashMap::new();
    for i in 0..shnum {
        let sh = section(i);
        if u32_at(elf, sh + 4) != 2 {
            continue; // not SHT_SYMTAB
        }
        let (off, size, entsize) = (
            u64_at(elf, sh + 24) as usize,
            u64_at(elf, sh + 32) as usize,
            u64_at(elf, sh + 56) as usize,
        );
        let strtab = u64_at(elf, section(u32_at(elf, sh + 40) as usize) + 24) as usize;
        for sym in (off..off + size).step_by(entsize) {
            let name = strtab + u32_at(elf, sym) as usize;
            let len = elf[name..].iter().position(|&b| b == 0).unwrap();
            let name = String::from_utf8_lossy(&elf[name..name + len]).into_owned();
            out.insert(name, u64_at(elf, sym + 8));
        }
    }
    out
}

/// The kernel's memcpy, memmove and memset are boot/src/mem.S's loops (the
/// ones its host tests check), not compiler_builtins' `rep movsq` and `rep
/// stosq`, which QEMU's TCG runs an iteration per trip round its block loop
/// (docs/benchmarks.md, `6dead5d`).
#[test]
fn kernel_copies_are_the_boot_crates_loops() {
    // The image is stripped: the same kernel built with its symbols.
    let elf = std::fs::read(pias_qemu::build::kernel_with_symbols().unwrap()).unwrap();
    let syms = symbols(&elf);
    assert!(syms.len() > 100, "no symbol table: {} symbols", syms.len());
    for f in ["memcpy", "memmove", "memset"] {
        let ours = syms.get(&format!("pias_{f}")).copied();
        assert!(ours.is_some(), "no pias_{f} in the kernel");
        assert_eq!(syms.get(f).copied(), ours, "{f} is not pias_{f}");
    }
}
