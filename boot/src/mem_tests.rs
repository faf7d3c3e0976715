//! mem.S's routines on the host, under their `pias_mem*` names, against the
//! slice operations' results: every length to 300 at every alignment, and
//! memmove's overlaps both ways.

extern "C" {
    fn pias_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn pias_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn pias_memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
}

const ROOM: usize = 340;
const MAX_LEN: usize = 300;

/// Bytes no two positions share, so a byte from the wrong place shows.
fn pattern(seed: u8) -> [u8; ROOM] {
    let mut b = [0u8; ROOM];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    b
}

#[test]
fn memcpy_copies_exactly_the_bytes_asked_at_every_length_and_alignment() {
    let src = pattern(7);
    for n in 0..=MAX_LEN {
        for s_off in 0..8 {
            for d_off in 0..8 {
                let mut dst = pattern(200);
                let mut want = dst;
                want[d_off..d_off + n].copy_from_slice(&src[s_off..s_off + n]);
                // SAFETY: both ranges lie inside their own arrays (offsets < 8,
                // n <= 300 < 340 - 8) and the arrays are distinct.
                let r =
                    unsafe { pias_memcpy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), n) };
                assert_eq!(r, dst.as_mut_ptr().wrapping_add(d_off), "n {n}");
                assert_eq!(dst, want, "n {n} src +{s_off} dst +{d_off}");
            }
        }
    }
}

#[test]
fn memmove_is_right_for_every_overlap_in_both_directions() {
    for n in 0..=MAX_LEN {
        for src_at in [0usize, 1, 5, 8, 13, 39] {
            for dst_at in [0usize, 1, 3, 8, 9, 16, 17, 39] {
                let mut buf = pattern(3);
                let mut want = buf;
                want.copy_within(src_at..src_at + n, dst_at);
                let p = buf.as_mut_ptr();
                // SAFETY: both ranges lie inside `buf` (offsets < 40,
                // n <= 300 = 340 - 40); memmove allows them to overlap.
                let r = unsafe { pias_memmove(p.add(dst_at), p.add(src_at), n) };
                assert_eq!(r, p.wrapping_add(dst_at), "n {n}");
                assert_eq!(buf, want, "n {n} from {src_at} to {dst_at}");
            }
        }
    }
}

#[test]
fn memset_sets_exactly_the_bytes_asked_to_the_low_byte_of_c() {
    for n in 0..=MAX_LEN {
        for off in 0..8 {
            for c in [0i32, 0xa5, 0x1ff, -1] {
                let mut buf = pattern(9);
                let mut want = buf;
                want[off..off + n].fill(c as u8);
                // SAFETY: the range lies inside `buf` (off < 8, n <= 300).
                let r = unsafe { pias_memset(buf.as_mut_ptr().add(off), c, n) };
                assert_eq!(r, buf.as_mut_ptr().wrapping_add(off), "n {n}");
                assert_eq!(buf, want, "n {n} at +{off} c {c:#x}");
            }
        }
    }
}
