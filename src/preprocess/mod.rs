//! Stage: preprocessing (resize, normalisation/quantisation) of an RGB8 frame
//! into a model input tensor.
//!
//! # The exact formula (reproducible elsewhere, e.g. in numpy)
//!
//! Source image `S` of `sw x sh` RGB8 pixels, model input `dw x dh`.
//!
//! **Placement.** `Stretch`: the content rectangle is the whole input,
//! `rw = dw, rh = dh, px = py = 0`. `Letterbox`: `k = min(dw / sw, dh / sh)`
//! (f64), `rw = max(1, round(sw * k))`, `rh = max(1, round(sh * k))`,
//! `px = (dw - rw) / 2`, `py = (dh - rh) / 2` (integer division); pixels outside
//! the content rectangle get the pad value (RGB `pad`, normalised like any pixel).
//!
//! **Resize** (bilinear, half-pixel centres, edge clamp — like OpenCV
//! `INTER_LINEAR` / TF `resize_bilinear(half_pixel_centers=True)`, *not* PIL,
//! which antialiases when downscaling). For content pixel `(ox, oy)`, in f32:
//! `fx = (ox + 0.5) * (sw / rw) - 0.5` clamped to `[0, sw - 1]`,
//! `x0 = floor(fx)`, `x1 = min(x0 + 1, sw - 1)`, `ax = fx - x0`; same for y
//! with `sh / rh`. Per channel:
//! `top = S[y0][x0] + (S[y0][x1] - S[y0][x0]) * ax`,
//! `bot = S[y1][x0] + (S[y1][x1] - S[y1][x0]) * ax`,
//! `v = top + (bot - top) * ay` (all f32, no rounding to u8).
//!
//! **Normalise**: `r = (v - mean[c]) / std[c]` (f32). Float models take `r`.
//! Quantized models take `q = clamp(zp + round_half_away_from_zero(r / scale),
//! qmin, qmax)` with the input tensor's scale and zero point (f32 division).
//!
//! The per-column and per-row interpolation tables are computed once per
//! source size and kept in [`Preprocessor`]; nothing is allocated per frame
//! while the source size stays the same.

use anyhow::{bail, Result};
use image::RgbImage;

/// How the frame is fitted to the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Scale each axis independently to fill the input.
    Stretch,
    /// Keep the aspect ratio, centre, and pad with this RGB colour.
    Letterbox { pad: [u8; 3] },
}

/// Element type and quantisation of the destination tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputKind {
    F32,
    I8 {
        scale: f32,
        zero_point: i32,
    },
    U8 {
        scale: f32,
        zero_point: i32,
    },
    /// int16 (16x8 quantized models): the normalised value quantized to int16.
    I16 {
        scale: f32,
        zero_point: i32,
    },
}

/// The geometric transform from source pixels to model input pixels:
/// `model_x = src_x * scale_x + pad_x`, `model_y = src_y * scale_y + pad_y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameTransform {
    pub src_w: u32,
    pub src_h: u32,
    pub dst_w: u32,
    pub dst_h: u32,
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl FrameTransform {
    /// Map a normalised model-input point `(x, y)` in [0,1] to source pixels,
    /// clamped to the source frame.
    pub fn to_source(&self, xn: f32, yn: f32) -> (f32, f32) {
        let x = (xn * self.dst_w as f32 - self.pad_x) / self.scale_x;
        let y = (yn * self.dst_h as f32 - self.pad_y) / self.scale_y;
        (
            x.clamp(0.0, self.src_w as f32),
            y.clamp(0.0, self.src_h as f32),
        )
    }
}

/// Round half away from zero.
#[inline]
pub fn round_half_away(v: f32) -> f32 {
    v.round()
}

/// Interpolation tap along one axis.
#[derive(Clone, Copy, Debug, Default)]
struct Tap {
    i0: u32,
    i1: u32,
    a: f32,
}

fn taps(out: &mut Vec<Tap>, src: u32, dst: u32) {
    out.clear();
    let ratio = src as f32 / dst as f32;
    let max = (src - 1) as f32;
    for o in 0..dst {
        let f = ((o as f32 + 0.5) * ratio - 0.5).clamp(0.0, max);
        let i0 = f.floor();
        let i0u = i0 as u32;
        out.push(Tap {
            i0: i0u,
            i1: (i0u + 1).min(src - 1),
            a: f - i0,
        });
    }
}

/// Preprocessing state: model geometry, normalisation and cached tables.
pub struct Preprocessor {
    width: u32,
    height: u32,
    mean: [f32; 3],
    std: [f32; 3],
    /// Swap R and B (model wants BGR).
    bgr: bool,
    mode: ResizeMode,
    cached_src: (u32, u32),
    xt: Vec<Tap>,
    yt: Vec<Tap>,
    transform: FrameTransform,
    /// One normalised output row (content part), reused.
    row: Vec<f32>,
}

impl Preprocessor {
    pub fn new(
        width: usize,
        height: usize,
        mean: [f32; 3],
        std: [f32; 3],
        bgr: bool,
        mode: ResizeMode,
    ) -> Result<Self> {
        if width == 0 || height == 0 || width > u32::MAX as usize || height > u32::MAX as usize {
            bail!("bad model input size {width}x{height}");
        }
        if std.contains(&0.0) {
            bail!("std must be non-zero");
        }
        Ok(Preprocessor {
            width: width as u32,
            height: height as u32,
            mean,
            std,
            bgr,
            mode,
            cached_src: (0, 0),
            xt: Vec::with_capacity(width),
            yt: Vec::with_capacity(height),
            transform: FrameTransform {
                src_w: 0,
                src_h: 0,
                dst_w: width as u32,
                dst_h: height as u32,
                scale_x: 1.0,
                scale_y: 1.0,
                pad_x: 0.0,
                pad_y: 0.0,
            },
            row: Vec::with_capacity(width * 3),
        })
    }

    pub fn mode(&self) -> ResizeMode {
        self.mode
    }

    /// Number of elements of the input tensor (`h * w * 3`).
    pub fn len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The transform of the last processed frame.
    pub fn transform(&self) -> FrameTransform {
        self.transform
    }

    fn prepare(&mut self, sw: u32, sh: u32) -> Result<()> {
        if sw == 0 || sh == 0 {
            bail!("empty image {sw}x{sh}");
        }
        if self.cached_src == (sw, sh) {
            return Ok(());
        }
        let (dw, dh) = (self.width, self.height);
        let (rw, rh, px, py) = match self.mode {
            ResizeMode::Stretch => (dw, dh, 0, 0),
            ResizeMode::Letterbox { .. } => {
                let k = (dw as f64 / sw as f64).min(dh as f64 / sh as f64);
                let rw = ((sw as f64 * k).round() as u32).clamp(1, dw);
                let rh = ((sh as f64 * k).round() as u32).clamp(1, dh);
                (rw, rh, (dw - rw) / 2, (dh - rh) / 2)
            }
        };
        taps(&mut self.xt, sw, rw);
        taps(&mut self.yt, sh, rh);
        self.transform = FrameTransform {
            src_w: sw,
            src_h: sh,
            dst_w: dw,
            dst_h: dh,
            scale_x: rw as f32 / sw as f32,
            scale_y: rh as f32 / sh as f32,
            pad_x: px as f32,
            pad_y: py as f32,
        };
        self.cached_src = (sw, sh);
        Ok(())
    }

    /// Write normalised pixels through `put(index, value)` for every element.
    fn run(&mut self, img: &RgbImage, mut put: impl FnMut(usize, f32)) -> Result<()> {
        let (sw, sh) = img.dimensions();
        self.prepare(sw, sh)?;
        let t = self.transform;
        let (dw, dh) = (self.width as usize, self.height as usize);
        let (px, py) = (t.pad_x as usize, t.pad_y as usize);
        let (rw, rh) = (self.xt.len(), self.yt.len());
        let src = img.as_raw();
        let stride = sw as usize * 3;
        let (c0, c2) = if self.bgr { (2, 0) } else { (0, 2) };
        let order = [c0, 1, c2];
        let pad = match self.mode {
            ResizeMode::Letterbox { pad } => pad,
            ResizeMode::Stretch => [0; 3],
        };
        let mut padn = [0f32; 3];
        for (c, &sc) in order.iter().enumerate() {
            padn[c] = (pad[sc] as f32 - self.mean[c]) / self.std[c];
        }
        self.row.clear();
        self.row.resize(rw * 3, 0.0);
        for oy in 0..dh {
            let base = oy * dw * 3;
            if oy < py || oy >= py + rh {
                for i in 0..dw * 3 {
                    put(base + i, padn[i % 3]);
                }
                continue;
            }
            let ty = self.yt[oy - py];
            let r0 = &src[ty.i0 as usize * stride..][..stride];
            let r1 = &src[ty.i1 as usize * stride..][..stride];
            for (ox, tx) in self.xt.iter().enumerate() {
                let (a0, a1) = (tx.i0 as usize * 3, tx.i1 as usize * 3);
                for (c, &sc) in order.iter().enumerate() {
                    let p00 = r0[a0 + sc] as f32;
                    let p01 = r0[a1 + sc] as f32;
                    let p10 = r1[a0 + sc] as f32;
                    let p11 = r1[a1 + sc] as f32;
                    let top = p00 + (p01 - p00) * tx.a;
                    let bot = p10 + (p11 - p10) * tx.a;
                    let v = top + (bot - top) * ty.a;
                    self.row[ox * 3 + c] = (v - self.mean[c]) / self.std[c];
                }
            }
            for i in 0..px * 3 {
                put(base + i, padn[i % 3]);
            }
            for (i, &v) in self.row.iter().enumerate() {
                put(base + px * 3 + i, v);
            }
            for i in (px + rw) * 3..dw * 3 {
                put(base + i, padn[i % 3]);
            }
        }
        Ok(())
    }

    /// Preprocess into a float tensor buffer of exactly [`Self::len`] elements.
    pub fn to_f32(&mut self, img: &RgbImage, out: &mut [f32]) -> Result<FrameTransform> {
        if out.len() != self.len() {
            bail!(
                "output buffer has {} elements, need {}",
                out.len(),
                self.len()
            );
        }
        self.run(img, |i, v| out[i] = v)?;
        Ok(self.transform)
    }

    /// Preprocess into a quantized tensor buffer: each value `round(v / scale) + zero_point`
    /// (half away from zero), clamped to `lo..=hi` and stored with `store`.
    fn quantize_into<T>(
        &mut self,
        img: &RgbImage,
        (scale, zero_point): (f32, i32),
        (lo, hi): (i32, i32),
        out: &mut [T],
        store: impl Fn(i32) -> T,
    ) -> Result<FrameTransform> {
        if out.len() != self.len() {
            bail!(
                "output buffer has {} elements, need {}",
                out.len(),
                self.len()
            );
        }
        check_quant(scale)?;
        self.run(img, |i, v| {
            out[i] = store(quantize(v, scale, zero_point, lo, hi))
        })?;
        Ok(self.transform)
    }

    /// Preprocess into an int8 tensor buffer with the given quantisation.
    pub fn to_i8(
        &mut self,
        img: &RgbImage,
        scale: f32,
        zero_point: i32,
        out: &mut [i8],
    ) -> Result<FrameTransform> {
        self.quantize_into(img, (scale, zero_point), (-128, 127), out, |q| q as i8)
    }

    /// Preprocess into an int16 tensor buffer with the given quantisation.
    pub fn to_i16(
        &mut self,
        img: &RgbImage,
        scale: f32,
        zero_point: i32,
        out: &mut [i16],
    ) -> Result<FrameTransform> {
        let range = (i16::MIN as i32, i16::MAX as i32);
        self.quantize_into(img, (scale, zero_point), range, out, |q| q as i16)
    }

    /// Preprocess into a uint8 tensor buffer with the given quantisation.
    pub fn to_u8(
        &mut self,
        img: &RgbImage,
        scale: f32,
        zero_point: i32,
        out: &mut [u8],
    ) -> Result<FrameTransform> {
        self.quantize_into(img, (scale, zero_point), (0, 255), out, |q| q as u8)
    }

    /// Preprocess into raw tensor bytes of the given kind (e.g. an interpreter input).
    pub fn to_bytes(
        &mut self,
        img: &RgbImage,
        kind: InputKind,
        out: &mut [u8],
    ) -> Result<FrameTransform> {
        match kind {
            InputKind::F32 => {
                let Ok(o) = bytemuck::try_cast_slice_mut::<u8, f32>(out) else {
                    bail!("float input buffer is misaligned or of odd length");
                };
                self.to_f32(img, o)
            }
            InputKind::I8 { scale, zero_point } => {
                self.to_i8(img, scale, zero_point, bytemuck::cast_slice_mut(out))
            }
            InputKind::U8 { scale, zero_point } => self.to_u8(img, scale, zero_point, out),
            InputKind::I16 { scale, zero_point } => {
                let Ok(o) = bytemuck::try_cast_slice_mut::<u8, i16>(out) else {
                    bail!("int16 input buffer is misaligned or of odd length");
                };
                self.to_i16(img, scale, zero_point, o)
            }
        }
    }
}

fn check_quant(scale: f32) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("input quantisation scale must be positive, got {scale}");
    }
    Ok(())
}

#[inline]
fn quantize(v: f32, scale: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let q = round_half_away(v / scale);
    // Saturate in f32 before converting (NaN -> 0 via `as`).
    let q = q.clamp(-1.0e9, 1.0e9) as i32;
    (q.saturating_add(zp)).clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(mode: ResizeMode, w: usize, h: usize) -> Preprocessor {
        Preprocessor::new(w, h, [127.5; 3], [127.5; 3], false, mode).unwrap()
    }

    #[test]
    fn identity_size_is_exact() {
        let img = RgbImage::from_fn(4, 3, |x, y| {
            image::Rgb([(x * 60) as u8, (y * 100) as u8, 255])
        });
        let mut p = pre(ResizeMode::Stretch, 4, 3);
        let mut out = vec![0f32; p.len()];
        p.to_f32(&img, &mut out).unwrap();
        for y in 0..3u32 {
            for x in 0..4u32 {
                let px = img.get_pixel(x, y).0;
                for c in 0..3 {
                    let want = (px[c] as f32 - 127.5) / 127.5;
                    assert_eq!(out[((y * 4 + x) * 3) as usize + c], want);
                }
            }
        }
    }

    #[test]
    fn bilinear_half_pixel_upscale() {
        // 2x1 -> 4x1: fx = (ox + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamp 0, 0.25, 0.75, 1
        let img = RgbImage::from_raw(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let mut p =
            Preprocessor::new(4, 1, [0.0; 3], [1.0; 3], false, ResizeMode::Stretch).unwrap();
        let mut out = vec![0f32; 12];
        p.to_f32(&img, &mut out).unwrap();
        let r: Vec<f32> = out.iter().step_by(3).copied().collect();
        assert_eq!(r, vec![0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn downscale_by_two_averages_pairs() {
        // 4 -> 2: fx = (ox+0.5)*2-0.5 = 0.5, 2.5 -> mean of neighbours
        let img =
            RgbImage::from_raw(4, 1, vec![0, 0, 0, 10, 10, 10, 20, 20, 20, 40, 40, 40]).unwrap();
        let mut p =
            Preprocessor::new(2, 1, [0.0; 3], [1.0; 3], false, ResizeMode::Stretch).unwrap();
        let mut out = vec![0f32; 6];
        p.to_f32(&img, &mut out).unwrap();
        assert_eq!(out[0], 5.0);
        assert_eq!(out[3], 30.0);
    }

    #[test]
    fn bgr_swaps_channels() {
        let img = RgbImage::from_raw(1, 1, vec![10, 20, 30]).unwrap();
        let mut p = Preprocessor::new(1, 1, [0.0; 3], [1.0; 3], true, ResizeMode::Stretch).unwrap();
        let mut out = vec![0f32; 3];
        p.to_f32(&img, &mut out).unwrap();
        assert_eq!(out, vec![30.0, 20.0, 10.0]);
    }

    #[test]
    fn quantisation_rounds_half_away_and_clamps() {
        assert_eq!(quantize(0.5, 1.0, 0, -128, 127), 1);
        assert_eq!(quantize(-0.5, 1.0, 0, -128, 127), -1);
        assert_eq!(quantize(2.5, 1.0, 3, -128, 127), 6);
        assert_eq!(quantize(1000.0, 1.0, 0, -128, 127), 127);
        assert_eq!(quantize(-1000.0, 1.0, 0, 0, 255), 0);
        assert_eq!(quantize(f32::NAN, 1.0, 5, -128, 127), 5);
        // A full image: white -> 1.0 -> 1/scale
        let img = RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 128]));
        let mut p = pre(ResizeMode::Stretch, 3, 3);
        let mut out = vec![0i8; p.len()];
        p.to_i8(&img, 0.0078125, 0, &mut out).unwrap();
        // 128 -> 0.5/127.5/0.0078125 = 0.502 -> 1
        assert_eq!(&out[..3], &[127, -128, 1]);
        let mut outu = vec![0u8; p.len()];
        p.to_u8(&img, 0.0078125, 128, &mut outu).unwrap();
        assert_eq!(&outu[..3], &[255, 0, 129]);
    }

    #[test]
    fn letterbox_pads_and_records_transform() {
        // 8x4 image into 4x4: k = 0.5, content 4x2 at pad_y = 1
        let img = RgbImage::from_pixel(8, 4, image::Rgb([255, 255, 255]));
        let mut p = pre(ResizeMode::Letterbox { pad: [0, 0, 0] }, 4, 4);
        let mut out = vec![0f32; p.len()];
        let t = p.to_f32(&img, &mut out).unwrap();
        assert_eq!(
            (t.pad_x, t.pad_y, t.scale_x, t.scale_y),
            (0.0, 1.0, 0.5, 0.5)
        );
        let row = |y: usize| out[y * 12..y * 12 + 12].to_vec();
        assert!(row(0).iter().all(|&v| v == -1.0));
        assert!(row(1).iter().all(|&v| v == 1.0));
        assert!(row(2).iter().all(|&v| v == 1.0));
        assert!(row(3).iter().all(|&v| v == -1.0));
        // model point (0.5, 0.5) is the image centre
        assert_eq!(t.to_source(0.5, 0.5), (4.0, 2.0));
        // points in the padding clamp to the frame
        assert_eq!(t.to_source(0.0, 0.0), (0.0, 0.0));
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        let img = RgbImage::new(2, 2);
        let mut p = pre(ResizeMode::Stretch, 3, 3);
        let mut out = vec![0f32; 5];
        assert!(p.to_f32(&img, &mut out).is_err());
        assert!(p.to_f32(&RgbImage::new(0, 0), &mut [0f32; 27]).is_err());
    }
}
