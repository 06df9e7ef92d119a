//! The 16x8 convolution and depthwise rows (`kernels::conv16`) with AVX2: the portable
//! bodies compiled with AVX2 enabled (`vpmaddwd` int16 multiply-adds into int32 on
//! 256-bit vectors), bit-exact with the other paths.

use std::ops::Range;

use crate::engine::kernels::conv16::{conv_rows_body, depthwise_rows_body, Conv16Operands};

/// `conv_16x8_rows` of the AVX2 path; the dispatcher checked the operands.
pub fn conv_rows(op: &Conv16Operands<'_>, rows: Range<usize>, out: &mut [i16], col: &mut Vec<i16>) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { conv_rows_avx2(op, rows, out, col) }
}

/// `depthwise_16x8_rows` of the AVX2 path; the dispatcher checked the operands.
pub fn depthwise_rows(
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { depthwise_rows_avx2(op, rows, out, acc) }
}

#[target_feature(enable = "avx2")]
fn conv_rows_avx2(
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
    conv_rows_body(op, rows, out, col)
}

#[target_feature(enable = "avx2")]
fn depthwise_rows_avx2(
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    depthwise_rows_body(op, rows, out, acc)
}
