//! One snapshot image: the whole frame or the object's box with a margin, scaled down to fit
//! the configured size (keeping the aspect ratio, never up), the box drawn, JPEG-encoded.
//! Every coordinate is clamped to the image: a box partly or wholly outside the frame, or
//! not a number at all, never panics.

use std::borrow::Cow;

use anyhow::{bail, Result};
use image::codecs::jpeg::JpegEncoder;
use image::imageops;
use image::{ExtendedColorType, Rgb, RgbImage};

use crate::postprocess::PixelBox;

/// How a snapshot is made (from `[snapshots]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    pub crop: bool,
    pub draw_box: bool,
    pub max_width: u32,
    pub max_height: u32,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

/// The margin around the box when cropping, as a fraction of its larger side.
pub const CROP_MARGIN: f32 = 0.15;

/// The colour of the drawn box.
pub const BOX_COLOUR: Rgb<u8> = Rgb([255, 32, 32]);

/// A box `[x1, y1, x2, y2]` ordered and clamped to a `w` × `h` image, in pixels (a value that
/// is not a number counts as 0).
fn clamp_box(b: PixelBox, w: u32, h: u32) -> [f32; 4] {
    let f = |v: f32, hi: u32| {
        if v.is_finite() {
            v.clamp(0.0, hi as f32)
        } else {
            0.0
        }
    };
    let (x1, x2) = (f(b[0], w), f(b[2], w));
    let (y1, y2) = (f(b[1], h), f(b[3], h));
    [x1.min(x2), y1.min(y2), x1.max(x2), y1.max(y2)]
}

/// The region `(x, y, width, height)` of a `w` × `h` frame that a cropped snapshot of `bbox`
/// shows: the box with [`CROP_MARGIN`] around it, within the frame, at least 1 × 1.
pub fn crop_region(w: u32, h: u32, bbox: PixelBox) -> (u32, u32, u32, u32) {
    if w == 0 || h == 0 {
        return (0, 0, w, h);
    }
    let [x1, y1, x2, y2] = clamp_box(bbox, w, h);
    let m = CROP_MARGIN * (x2 - x1).max(y2 - y1);
    // `as u32` saturates (and maps NaN to 0); the clamps keep the region inside the frame.
    let left = ((x1 - m).floor().max(0.0) as u32).min(w.saturating_sub(1));
    let top = ((y1 - m).floor().max(0.0) as u32).min(h.saturating_sub(1));
    let right = ((x2 + m).ceil() as u32).clamp(left + 1, w);
    let bottom = ((y2 + m).ceil() as u32).clamp(top + 1, h);
    (left, top, right - left, bottom - top)
}

/// The size of a `w` × `h` image scaled down to fit `max_w` × `max_h`, keeping the aspect
/// ratio; never larger than `w` × `h`, at least 1 × 1.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let s = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    let nw = ((w as f64 * s).round() as u32).clamp(1, max_w.max(1));
    let nh = ((h as f64 * s).round() as u32).clamp(1, max_h.max(1));
    (nw, nh)
}

/// `src` scaled down to `nw` × `nh` (each at most the source's, at least 1) by area
/// averaging: each output pixel is the mean of the source pixels of its footprint. One pass
/// over the source, a few milliseconds for a 1080p frame (the `image` crate's filters take
/// ten times as long).
pub fn downscale(src: &RgbImage, nw: u32, nh: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    let (nw, nh) = (nw.clamp(1, w.max(1)), nh.clamp(1, h.max(1)));
    if w == 0 || h == 0 {
        return RgbImage::new(0, 0);
    }
    // The source columns [xs[i], xs[i + 1]) make output column i; likewise the rows.
    let edges = |n: u32, len: u32| -> Vec<usize> {
        (0..=n)
            .map(|i| (u64::from(i) * u64::from(len) / u64::from(n)) as usize)
            .collect()
    };
    let (xs, ys) = (edges(nw, w), edges(nh, h));
    let raw = src.as_raw();
    let stride = w as usize * 3;
    let mut out = Vec::with_capacity(nw as usize * nh as usize * 3);
    let mut sums = vec![0u32; nw as usize * 3];
    for oy in 0..nh as usize {
        sums.iter_mut().for_each(|s| *s = 0);
        for row in raw[ys[oy] * stride..ys[oy + 1] * stride].chunks_exact(stride) {
            for (ox, sum) in sums.chunks_exact_mut(3).enumerate() {
                for px in row[xs[ox] * 3..xs[ox + 1] * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
        }
        let rows = (ys[oy + 1] - ys[oy]) as u32;
        for (ox, sum) in sums.chunks_exact(3).enumerate() {
            let n = rows * (xs[ox + 1] - xs[ox]) as u32;
            // n >= 1: every footprint holds at least one pixel (n <= len); rounded.
            out.extend(sum.iter().map(|&v| ((v + n / 2) / n) as u8));
        }
    }
    RgbImage::from_raw(nw, nh, out).unwrap_or_else(|| RgbImage::new(nw, nh))
}

/// Fill the rectangle `[x0, x1) × [y0, y1)` of `img`, clipped to the image.
fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let (x0, x1) = (x0.clamp(0, w), x1.clamp(0, w));
    let (y0, y1) = (y0.clamp(0, h), y1.clamp(0, h));
    for y in y0..y1 {
        for x in x0..x1 {
            // In bounds: 0 <= x < w, 0 <= y < h.
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// The outline of `bbox` (pixels of `img`, clamped to it), `thickness` pixels wide, inside
/// the box.
pub fn draw_box(img: &mut RgbImage, bbox: PixelBox, thickness: u32, c: Rgb<u8>) {
    if img.width() == 0 || img.height() == 0 {
        return;
    }
    let [x1, y1, x2, y2] = clamp_box(bbox, img.width(), img.height());
    let (x1, y1) = (x1.floor() as i64, y1.floor() as i64);
    let (x2, y2) = (x2.ceil() as i64, y2.ceil() as i64);
    let t = i64::from(thickness.max(1));
    fill(img, x1, y1, x2, y1 + t, c); // top
    fill(img, x1, y2 - t, x2, y2, c); // bottom
    fill(img, x1, y1, x1 + t, y2, c); // left
    fill(img, x2 - t, y1, x2, y2, c); // right
}

/// The line width of the box on an image whose larger side is `side` pixels: 2 up to 640,
/// then growing, at most 6.
pub fn line_width(side: u32) -> u32 {
    (side / 320).clamp(2, 6)
}

/// The snapshot image of `bbox` in `frame` as `look` says (not encoded).
pub fn render(frame: &RgbImage, bbox: PixelBox, look: &Look) -> Result<RgbImage> {
    let (w, h) = frame.dimensions();
    if w == 0 || h == 0 {
        bail!("empty frame");
    }
    let (rx, ry, rw, rh) = if look.crop {
        crop_region(w, h, bbox)
    } else {
        (0, 0, w, h)
    };
    let region: Cow<'_, RgbImage> = if (rx, ry, rw, rh) == (0, 0, w, h) {
        Cow::Borrowed(frame)
    } else {
        Cow::Owned(imageops::crop_imm(frame, rx, ry, rw, rh).to_image())
    };
    let (nw, nh) = fit(rw, rh, look.max_width.max(1), look.max_height.max(1));
    let mut out = if (nw, nh) == (rw, rh) {
        region.into_owned()
    } else {
        downscale(&region, nw, nh)
    };
    if look.draw_box {
        let (sx, sy) = (nw as f32 / rw as f32, nh as f32 / rh as f32);
        let b = PixelBox([
            (bbox[0] - rx as f32) * sx,
            (bbox[1] - ry as f32) * sy,
            (bbox[2] - rx as f32) * sx,
            (bbox[3] - ry as f32) * sy,
        ]);
        draw_box(&mut out, b, line_width(nw.max(nh)), BOX_COLOUR);
    }
    Ok(out)
}

/// The whole `frame` scaled down to fit `max_w` × `max_h` (keeping the aspect ratio, never
/// up) with every box of `boxes` (pixels of `frame`) drawn: the HTTP endpoint's view.
pub fn frame_with_boxes(
    frame: &RgbImage,
    boxes: &[PixelBox],
    max_w: u32,
    max_h: u32,
) -> Result<RgbImage> {
    let (w, h) = frame.dimensions();
    if w == 0 || h == 0 {
        bail!("empty frame");
    }
    let (nw, nh) = fit(w, h, max_w.max(1), max_h.max(1));
    let mut out = if (nw, nh) == (w, h) {
        frame.clone()
    } else {
        downscale(frame, nw, nh)
    };
    let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
    let t = line_width(nw.max(nh));
    for b in boxes {
        draw_box(
            &mut out,
            PixelBox([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]),
            t,
            BOX_COLOUR,
        );
    }
    Ok(out)
}

/// `img` as a JPEG of `quality` (1..=100).
pub fn encode(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(img.as_raw().len() / 8);
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100)).encode(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// A snapshot JPEG and whether it had to be made smaller than configured to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct Jpeg {
    pub bytes: Vec<u8>,
    pub shrunk: bool,
}

/// The snapshot JPEG of `bbox` in `frame`, at most `max_bytes` long: when it is longer, the
/// size limits are halved (down to 16 pixels) and it is made again, up to three times.
pub fn jpeg(frame: &RgbImage, bbox: PixelBox, look: &Look, max_bytes: usize) -> Result<Jpeg> {
    let mut l = *look;
    for attempt in 0..4 {
        let bytes = encode(&render(frame, bbox, &l)?, l.quality)?;
        if bytes.len() <= max_bytes {
            return Ok(Jpeg {
                bytes,
                shrunk: attempt > 0,
            });
        }
        l.max_width = (l.max_width / 2).max(16);
        l.max_height = (l.max_height / 2).max(16);
    }
    bail!("the snapshot stays above {max_bytes} bytes even at a quarter of its size")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with a smooth gradient and some texture, so that JPEG sizes are realistic.
    fn frame(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w.max(1)) as u8,
                (y * 255 / h.max(1)) as u8,
                ((x ^ y) & 0x3f) as u8 + 64,
            ])
        })
    }

    fn look() -> Look {
        Look {
            crop: false,
            draw_box: true,
            max_width: 640,
            max_height: 480,
            quality: 70,
        }
    }

    fn is_box(p: &Rgb<u8>) -> bool {
        *p == BOX_COLOUR
    }

    #[test]
    fn every_box_is_drawn_on_the_scaled_frame() {
        let f = frame(800, 600);
        let out = frame_with_boxes(
            &f,
            &[
                PixelBox([100.0, 100.0, 300.0, 500.0]),
                PixelBox([500.0, 50.0, 700.0, 250.0]),
            ],
            400,
            400,
        )
        .unwrap();
        assert_eq!(out.dimensions(), (400, 300));
        // Halved: the left edges at x = 50 and x = 250.
        assert!((60..240).all(|y| is_box(out.get_pixel(50, y))));
        assert!((30..120).all(|y| is_box(out.get_pixel(250, y))));
        // Inside a box and outside both: the frame.
        assert!(!is_box(out.get_pixel(100, 150)));
        assert!(!is_box(out.get_pixel(350, 280)));
        // No boxes, no downscale: the frame itself; an empty frame is an error.
        assert_eq!(frame_with_boxes(&f, &[], 800, 600).unwrap(), f);
        assert!(frame_with_boxes(&RgbImage::new(0, 0), &[], 64, 64).is_err());
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_and_never_upscales() {
        assert_eq!(fit(1920, 1080, 640, 480), (640, 360));
        assert_eq!(fit(1080, 1920, 640, 480), (270, 480));
        assert_eq!(fit(320, 240, 640, 480), (320, 240));
        assert_eq!(fit(768, 576, 640, 480), (640, 480));
        assert_eq!(fit(10000, 1, 16, 16), (16, 1));
        assert_eq!(fit(1, 10000, 16, 16), (1, 16));
    }

    #[test]
    fn downscaling_averages_each_footprint() {
        // 4 × 2 → 2 × 1: each output pixel is the mean of a 2 × 2 block.
        let src = RgbImage::from_raw(
            4,
            2,
            vec![
                0, 0, 0, 10, 20, 30, 100, 100, 100, 200, 200, 200, //
                20, 40, 60, 30, 60, 90, 100, 100, 100, 201, 201, 201,
            ],
        )
        .unwrap();
        let d = downscale(&src, 2, 1);
        assert_eq!(d.dimensions(), (2, 1));
        assert_eq!(*d.get_pixel(0, 0), Rgb([15, 30, 45]));
        assert_eq!(*d.get_pixel(1, 0), Rgb([150, 150, 150]));
        // Uneven ratios cover every source pixel once; a flat image stays flat.
        let flat = RgbImage::from_pixel(1920, 1080, Rgb([7, 99, 201]));
        let d = downscale(&flat, 640, 360);
        assert!(d.pixels().all(|p| *p == Rgb([7, 99, 201])));
        let d = downscale(&frame(768, 577), 333, 251);
        assert_eq!(d.dimensions(), (333, 251));
        assert_eq!(downscale(&frame(5, 5), 9, 9).dimensions(), (5, 5));
        assert_eq!(downscale(&frame(5, 5), 0, 0).dimensions(), (1, 1));
        // A gradient keeps its mean.
        let g = RgbImage::from_fn(300, 10, |x, _| Rgb([(x * 255 / 299) as u8, 0, 0]));
        let mean = |i: &RgbImage| {
            i.pixels().map(|p| f64::from(p[0])).sum::<f64>() / f64::from(i.width() * i.height())
        };
        assert!((mean(&g) - mean(&downscale(&g, 70, 3))).abs() < 1.0);
    }

    #[test]
    fn the_box_edge_is_drawn_and_the_inside_and_outside_are_not() {
        let mut img = RgbImage::new(100, 80);
        draw_box(&mut img, PixelBox([10.0, 20.0, 50.0, 60.0]), 2, BOX_COLOUR);
        // The four edges, both pixels of the line.
        for (x, y) in [(10, 20), (11, 21), (30, 20), (30, 21), (30, 59), (30, 58)] {
            assert!(is_box(img.get_pixel(x, y)), "({x}, {y}) is not drawn");
        }
        for (x, y) in [(10, 40), (11, 40), (49, 40), (48, 40)] {
            assert!(is_box(img.get_pixel(x, y)), "({x}, {y}) is not drawn");
        }
        // Inside the line, and outside the box, nothing changes.
        for (x, y) in [
            (30, 40),
            (12, 22),
            (47, 57),
            (9, 40),
            (50, 40),
            (30, 19),
            (30, 60),
        ] {
            assert_eq!(*img.get_pixel(x, y), Rgb([0, 0, 0]), "({x}, {y}) is drawn");
        }
    }

    #[test]
    fn boxes_at_and_beyond_the_frame_edges_never_panic() {
        for b in [
            [-50.0, -50.0, 20.0, 20.0],
            [90.0, 70.0, 500.0, 500.0],
            [0.0, 0.0, 100.0, 80.0],
            [60.0, 40.0, 10.0, 5.0], // reversed
            [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX],
            [-1e30, -1e30, -1e30, -1e30],
            [1e30, 1e30, 1e30, 1e30],
            [99.5, 79.5, 99.9, 79.9],
        ] {
            let b = PixelBox(b);
            let mut img = RgbImage::new(100, 80);
            draw_box(&mut img, b, 3, BOX_COLOUR);
            let f = frame(100, 80);
            for crop in [false, true] {
                let l = Look { crop, ..look() };
                let out = render(&f, b, &l).unwrap();
                assert!(out.width() >= 1 && out.height() >= 1);
                assert!(out.width() <= 100 && out.height() <= 80);
            }
        }
        // A box that reaches past the frame is drawn along the frame's edge.
        let mut img = RgbImage::new(100, 80);
        draw_box(
            &mut img,
            PixelBox([-10.0, -10.0, 50.0, 200.0]),
            2,
            BOX_COLOUR,
        );
        assert!(is_box(img.get_pixel(0, 40)));
        assert!(is_box(img.get_pixel(30, 0)));
        assert!(is_box(img.get_pixel(30, 79)));
        assert!(is_box(img.get_pixel(49, 40)));
        assert!(!is_box(img.get_pixel(30, 40)));
        // A 1 × 1 image takes any box.
        let mut one = RgbImage::new(1, 1);
        draw_box(&mut one, PixelBox([0.0, 0.0, 1.0, 1.0]), 6, BOX_COLOUR);
        assert!(is_box(one.get_pixel(0, 0)));
        assert!(render(&RgbImage::new(0, 0), PixelBox([0.0; 4]), &look()).is_err());
    }

    #[test]
    fn whole_frame_snapshots_fit_the_limits_and_show_the_box_where_it_was() {
        let f = frame(1280, 720);
        let out = render(&f, PixelBox([320.0, 180.0, 640.0, 540.0]), &look()).unwrap();
        assert_eq!(out.dimensions(), (640, 360));
        // Scaled by 1/2: the box's left edge is at x = 160, its top at y = 90.
        assert!(is_box(out.get_pixel(160, 200)));
        assert!(is_box(out.get_pixel(250, 90)));
        assert!(is_box(out.get_pixel(319, 200)));
        assert!(!is_box(out.get_pixel(250, 200)));
        assert!(!is_box(out.get_pixel(100, 200)));
        // Without drawing, no pixel is the box colour.
        let plain = render(
            &f,
            PixelBox([320.0, 180.0, 640.0, 540.0]),
            &Look {
                draw_box: false,
                ..look()
            },
        )
        .unwrap();
        assert!(!plain.pixels().any(is_box));
        // A frame smaller than the limits keeps its size.
        assert_eq!(
            render(&frame(320, 240), PixelBox([0.0; 4]), &look())
                .unwrap()
                .dimensions(),
            (320, 240)
        );
    }

    #[test]
    fn cropped_snapshots_show_the_box_with_a_margin() {
        let f = frame(1280, 720);
        // A 100 × 200 box: margin 30 px each side → 160 × 260, within the limits.
        assert_eq!(
            crop_region(1280, 720, PixelBox([500.0, 300.0, 600.0, 500.0])),
            (470, 270, 160, 260)
        );
        let l = Look {
            crop: true,
            ..look()
        };
        let out = render(&f, PixelBox([500.0, 300.0, 600.0, 500.0]), &l).unwrap();
        assert_eq!(out.dimensions(), (160, 260));
        assert!(is_box(out.get_pixel(30, 100)), "left edge at the margin");
        assert!(is_box(out.get_pixel(129, 100)), "right edge");
        assert!(is_box(out.get_pixel(80, 30)), "top edge");
        // The pixels away from the box are the frame's own.
        assert_eq!(out.get_pixel(5, 5), f.get_pixel(475, 275));
        // At the frame's corner the margin is cut off.
        assert_eq!(
            crop_region(1280, 720, PixelBox([0.0, 0.0, 100.0, 100.0])),
            (0, 0, 115, 115)
        );
        // A big box is scaled down to the limits.
        let out = render(&f, PixelBox([0.0, 0.0, 1280.0, 720.0]), &l).unwrap();
        assert!(
            out.width() <= 640 && out.height() <= 480,
            "{:?}",
            out.dimensions()
        );
    }

    #[test]
    fn jpegs_decode_at_the_rendered_size_and_shrink_to_fit() {
        let f = frame(1280, 720);
        let j = jpeg(&f, PixelBox([100.0, 100.0, 300.0, 400.0]), &look(), 1 << 20).unwrap();
        assert!(!j.shrunk);
        assert_eq!(&j.bytes[..2], &[0xff, 0xd8], "a JPEG starts with SOI");
        let back = image::load_from_memory(&j.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (640, 360));
        // Quality matters.
        let q = |quality| {
            encode(&render(&f, PixelBox([0.0; 4]), &look()).unwrap(), quality)
                .unwrap()
                .len()
        };
        assert!(q(95) > q(30), "{} {}", q(95), q(30));
        // Too many bytes: made smaller until it fits.
        let small = jpeg(
            &f,
            PixelBox([100.0, 100.0, 300.0, 400.0]),
            &look(),
            j.bytes.len() / 2,
        )
        .unwrap();
        assert!(small.shrunk);
        assert!(small.bytes.len() <= j.bytes.len() / 2);
        let back = image::load_from_memory(&small.bytes).unwrap();
        assert!(back.width() <= 320 && back.height() <= 180);
        // Never small enough: an error, not a panic.
        assert!(jpeg(&f, PixelBox([0.0; 4]), &look(), 10).is_err());
    }
}
