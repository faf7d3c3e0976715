/* PIAS appliance entry (AT&T syntax).
 *
 * Two ways in, both in 32-bit protected mode with paging off:
 *  - PVH (qemu -kernel): %ebx -> hvm_start_info (magic 0x336ec578). qboot may
 *    also leave the multiboot2 magic in %eax, so the protocol is told by the
 *    start_info magic, not by %eax.
 *  - multiboot2 (GRUB): %eax = 0x36d76289, %ebx -> boot information.
 * We build identity page tables for the first 4 GiB (2 MiB pages; above
 * 2 GiB uncached, as that is where MMIO lives), switch to long mode and call
 * kernel_main(eax_at_entry, ebx_at_entry). */

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xe85250d6                         /* magic */
    .long 0                                  /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header        /* header length */
    .long 0x100000000 - (0xe85250d6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 0, 0                              /* end tag */
    .long 8
mb2_header_end:

    .section .note.pvh, "a", @note
    .balign 4
    .long 4                                  /* namesz: "Xen\0" */
    .long 8                                  /* descsz: 64-bit entry address */
    .long 18                                 /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pias_entry32
    .balign 4

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
    .balign 16
    .global __boot_stack_bottom
__boot_stack_bottom:
    .skip 256 * 1024
    .global __boot_stack_top
__boot_stack_top:

    .section .boot.rodata, "a"
    .balign 16
gdt64:
    .quad 0
    .quad 0x00af9a000000ffff                 /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff                 /* 0x10: data */
gdt64_end:
    .balign 8
gdt64_ptr:
    .short gdt64_end - gdt64 - 1
    .quad gdt64

    .section .boot.text, "ax"
    .code32
    .global pias_entry32
pias_entry32:
    cli
    cld
    movl $__boot_stack_top, %esp
    movl %eax, %ebp                          /* keep the loader's %eax and %ebx */

    cmpl $0x336ec578, (%ebx)                 /* PVH: memory is zeroed by the loader */
    je 1f
    movl $__bss_start, %edi                  /* otherwise (GRUB) zero .bss ourselves */
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
1:
    movl $boot_pdpt, %eax                    /* PML4[0] -> PDPT */
    orl $3, %eax
    movl %eax, boot_pml4
    movl $0, boot_pml4 + 4

    xorl %ecx, %ecx                          /* PDPT[0..4] -> PD[0..4] */
2:  movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt(, %ecx, 8)
    movl $0, boot_pdpt + 4(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jb 2b

    xorl %ecx, %ecx                          /* PD entries: 2 MiB pages, identity */
3:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                          /* present, writable, 2 MiB */
    cmpl $1024, %ecx
    jb 4f
    orl $0x18, %eax                          /* >= 2 GiB: PWT|PCD (MMIO) */
4:  movl %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd + 4(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 3b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                          /* PAE */
    movl %eax, %cr4
    movl $0xc0000080, %ecx                   /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax                    /* PG | PE */
    movl %eax, %cr0
    lgdt gdt64_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $__boot_stack_top, %rsp
    movl %ebp, %edi                          /* arg 0: %eax at entry */
    movl %ebx, %esi                          /* arg 1: %ebx at entry */
    xorl %ebp, %ebp
    call kernel_main
5:  cli
    hlt
    jmp 5b
