//! Quantized binary operators (ADD, SUB, MUL of int8/uint8) as lookups in the table of their
//! 256 x 256 results, 16 elements at a time: the two operands' bytes are zipped into the 16-bit
//! table indices with ZIP1/ZIP2 (`b` the low byte, `a` the high byte), then each index is one
//! lane move and one byte load. Bit-identical to `scalar::elementwise::lut2_u8` (the same table).

use std::arch::aarch64::*;

/// `out[i] = lut[(a[i] as usize) << 8 | b[i] as usize]` for `i < out.len()`.
///
/// # Panics
/// When `a` or `b` is shorter than `out`.
pub fn lut2_u8(lut: &[u8; 1 << 16], a: &[u8], b: &[u8], out: &mut [u8]) {
    let n = out.len();
    assert!(
        a.len() >= n && b.len() >= n,
        "lut2_u8: operands shorter than the output"
    );
    let body = n / 16 * 16;
    // SAFETY: NEON is part of the aarch64 baseline; `lut2_body` reads a[..body], b[..body]
    // and writes out[..body], all in bounds.
    unsafe { lut2_body(lut, &a[..body], &b[..body], &mut out[..body]) };
    super::super::scalar::elementwise::lut2_u8(lut, &a[body..n], &b[body..n], &mut out[body..]);
}

/// # Safety
/// `a`, `b` and `out` have the same length, a multiple of 16.
#[target_feature(enable = "neon")]
unsafe fn lut2_body(lut: &[u8; 1 << 16], a: &[u8], b: &[u8], out: &mut [u8]) {
    let t = lut.as_ptr();
    let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    for i in (0..out.len()).step_by(16) {
        // SAFETY: i + 16 <= len of all three (caller contract); every 16-bit index is inside
        // the 65536-entry table.
        unsafe {
            let (x, y) = (vld1q_u8(pa.add(i)), vld1q_u8(pb.add(i)));
            let lo = vreinterpretq_u16_u8(vzip1q_u8(y, x));
            let hi = vreinterpretq_u16_u8(vzip2q_u8(y, x));
            macro_rules! look {
                ($v:expr, $at:expr, $($l:literal)*) => {
                    $( po.add(i + $at + $l).write(*t.add(vgetq_lane_u16::<$l>($v) as usize)); )*
                };
            }
            look!(lo, 0, 0 1 2 3 4 5 6 7);
            look!(hi, 8, 0 1 2 3 4 5 6 7);
        }
    }
}
