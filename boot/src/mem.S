/* The appliance's memcpy, memmove and memset (AT&T syntax, System V ABI,
 * general registers only: the kernel's target has no SSE).
 *
 * compiler_builtins' versions are `rep movsq`/`rep stosq`. Under QEMU's TCG
 * (7.2) each iteration of a `rep` string instruction is a trip round the
 * translated-block loop: copying one 8-byte word took ~27 ns, a 1,500-byte
 * frame ~5 us. These are plain loops of loads and stores, eight words a
 * round, which TCG runs as ordinary translated code (and hardware runs at
 * its load/store rate). Defined as pias_mem*; the kernel's build also names
 * them memcpy, memmove and memset (strong symbols over compiler_builtins'
 * weak ones); host tests call the pias_mem* names. */

    .text

/* void *pias_memcpy(void *dst %rdi, const void *src %rsi, size_t n %rdx) */
    .globl pias_memcpy
    .type pias_memcpy, @function
    .balign 16
pias_memcpy:
    mov %rdi, %rax
    cmp $8, %rdx
    jb 5f
    cmp $64, %rdx
    jb 3f
2:  /* 64 bytes a round */
    mov (%rsi), %r8
    mov 8(%rsi), %r9
    mov 16(%rsi), %r10
    mov 24(%rsi), %r11
    mov %r8, (%rdi)
    mov %r9, 8(%rdi)
    mov %r10, 16(%rdi)
    mov %r11, 24(%rdi)
    mov 32(%rsi), %r8
    mov 40(%rsi), %r9
    mov 48(%rsi), %r10
    mov 56(%rsi), %r11
    mov %r8, 32(%rdi)
    mov %r9, 40(%rdi)
    mov %r10, 48(%rdi)
    mov %r11, 56(%rdi)
    add $64, %rsi
    add $64, %rdi
    sub $64, %rdx
    cmp $64, %rdx
    jae 2b
3:  /* whole words left (fewer than 8 of them) */
    cmp $8, %rdx
    jb 4f
    mov (%rsi), %r8
    mov %r8, (%rdi)
    add $8, %rsi
    add $8, %rdi
    sub $8, %rdx
    jmp 3b
4:  /* 0..7 bytes left, with at least 8 copied before them: copy the last
     * word again, overlapping (source and destination never overlap). */
    test %rdx, %rdx
    jz 9f
    mov -8(%rsi,%rdx), %r8
    mov %r8, -8(%rdi,%rdx)
9:  ret
5:  /* fewer than 8 bytes in all */
    cmp $4, %rdx
    jb 6f
    mov (%rsi), %r8d
    mov -4(%rsi,%rdx), %r9d
    mov %r8d, (%rdi)
    mov %r9d, -4(%rdi,%rdx)
    ret
6:  test %rdx, %rdx
    jz 9b
    movzbl (%rsi), %r8d
    movzbl -1(%rsi,%rdx), %r9d
    cmp $2, %rdx
    jb 7f
    movzbl 1(%rsi), %r10d
    mov %r10b, 1(%rdi)
7:  mov %r8b, (%rdi)
    mov %r9b, -1(%rdi,%rdx)
    ret
    .size pias_memcpy, . - pias_memcpy

/* void *pias_memmove(void *dst %rdi, const void *src %rsi, size_t n %rdx):
 * forwards when the destination starts below the source or past its end,
 * else backwards; each word is loaded before it is stored, and no byte is
 * read after a store may have changed it. */
    .globl pias_memmove
    .type pias_memmove, @function
    .balign 16
pias_memmove:
    mov %rdi, %rax
    mov %rdi, %rcx
    sub %rsi, %rcx
    cmp %rdx, %rcx          /* dst - src >= n (unsigned): forwards is safe */
    jb 5f
2:  cmp $8, %rdx
    jb 3f
    mov (%rsi), %r8
    mov %r8, (%rdi)
    add $8, %rsi
    add $8, %rdi
    sub $8, %rdx
    jmp 2b
3:  test %rdx, %rdx
    jz 9f
    movzbl (%rsi), %r8d
    mov %r8b, (%rdi)
    inc %rsi
    inc %rdi
    dec %rdx
    jmp 3b
5:  /* backwards, from the end */
    add %rdx, %rsi
    add %rdx, %rdi
6:  cmp $8, %rdx
    jb 7f
    sub $8, %rsi
    sub $8, %rdi
    mov (%rsi), %r8
    mov %r8, (%rdi)
    sub $8, %rdx
    jmp 6b
7:  test %rdx, %rdx
    jz 9f
    dec %rsi
    dec %rdi
    movzbl (%rsi), %r8d
    mov %r8b, (%rdi)
    dec %rdx
    jmp 7b
9:  ret
    .size pias_memmove, . - pias_memmove

/* void *pias_memset(void *dst %rdi, int c %esi, size_t n %rdx) */
    .globl pias_memset
    .type pias_memset, @function
    .balign 16
pias_memset:
    mov %rdi, %r9
    movzbl %sil, %eax
    movabs $0x0101010101010101, %r8
    imul %r8, %rax
    cmp $8, %rdx
    jb 5f
    cmp $64, %rdx
    jb 3f
2:  mov %rax, (%rdi)
    mov %rax, 8(%rdi)
    mov %rax, 16(%rdi)
    mov %rax, 24(%rdi)
    mov %rax, 32(%rdi)
    mov %rax, 40(%rdi)
    mov %rax, 48(%rdi)
    mov %rax, 56(%rdi)
    add $64, %rdi
    sub $64, %rdx
    cmp $64, %rdx
    jae 2b
3:  cmp $8, %rdx
    jb 4f
    mov %rax, (%rdi)
    add $8, %rdi
    sub $8, %rdx
    jmp 3b
4:  /* 0..7 bytes left, after at least 8 set: the last word again */
    mov %rax, -8(%rdi,%rdx)
    mov %r9, %rax
    ret
5:  test %rdx, %rdx
    jz 9f
    mov %al, -1(%rdi,%rdx)
    dec %rdx
    jmp 5b
9:  mov %r9, %rax
    ret
    .size pias_memset, . - pias_memset
