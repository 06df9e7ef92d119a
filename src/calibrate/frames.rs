//! Calibration frames: spread over the whole source, duplicates dropped,
//! memory bounded.
//!
//! The length of a source is not known in advance (a camera, a stream). So
//! frames are kept at a stride that doubles whenever twice the wanted number
//! is held; the survivors are those at multiples of the final stride, i.e.
//! evenly spread over everything read. A frame that looks like the last one
//! kept (a static scene) is dropped as a duplicate. Frames are stored at the
//! model's input size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use image::imageops::FilterType;
use image::RgbImage;

use crate::capture::{FrameSource, Read};

/// Side of the grey thumbnail two frames are compared on.
const THUMB: u32 = 32;
/// Mean absolute difference (0–255) under which a frame is a duplicate.
const DUPLICATE_MAD: f64 = 0.5;
/// How long a source may stay silent.
const SILENCE: Duration = Duration::from_secs(30);

/// Which part of the source to read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// Source frames to skip first.
    pub skip: u64,
    /// Source frames to read after those (0: to the end).
    pub limit: u64,
}

/// The frames picked, and how they were picked.
pub struct Selection {
    /// Source frame number (1-based) and the frame at the model's input size.
    pub frames: Vec<(u64, RgbImage)>,
    pub read: u64,
    pub duplicates: u64,
}

/// A 32×32 grey thumbnail, for duplicate checks.
pub fn thumb(img: &RgbImage) -> Vec<u8> {
    let g = image::imageops::grayscale(img);
    image::imageops::resize(&g, THUMB, THUMB, FilterType::Triangle).into_raw()
}

/// Mean absolute difference of two thumbnails (0..255).
pub fn mad(a: &[u8], b: &[u8]) -> f64 {
    let s: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
        .sum();
    s as f64 / a.len().max(1) as f64
}

/// Read `src` (already open) and keep `want` frames spread over `span`,
/// resized to `w × h`. `progress` sees the count of frames read.
pub fn select(
    src: &mut dyn FrameSource,
    want: usize,
    span: Span,
    (w, h): (u32, u32),
    stop: &AtomicBool,
    mut progress: impl FnMut(u64),
) -> Result<Selection> {
    let want = want.max(1);
    let cap = 2 * want;
    let mut kept: Vec<(u64, RgbImage)> = Vec::new();
    let mut last_thumb: Option<Vec<u8>> = None;
    let mut stride = 1u64;
    let (mut seq, mut read, mut dups) = (0u64, 0u64, 0u64);
    let mut silent = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let img = match src.read(crate::capture::READ_WAIT)? {
            Read::Frame(i) => i,
            Read::Pending if silent.elapsed() < SILENCE => continue,
            Read::Pending => bail!("no frame from {} for {SILENCE:?}", src.describe()),
            Read::Skipped(e) => {
                tracing::warn!("skipping an unusable frame: {e:#}");
                continue;
            }
            Read::Eof => break,
            Read::Truncated(why) => {
                tracing::warn!("{} ended early: {why}", src.describe());
                break;
            }
        };
        silent = Instant::now();
        seq += 1;
        if seq <= span.skip {
            continue;
        }
        read += 1;
        progress(read);
        if span.limit > 0 && read > span.limit {
            read -= 1;
            break;
        }
        if !(read - 1).is_multiple_of(stride) {
            continue;
        }
        let t = thumb(&img);
        if let Some(prev) = &last_thumb {
            if mad(prev, &t) < DUPLICATE_MAD {
                dups += 1;
                continue;
            }
        }
        last_thumb = Some(t);
        let small = if img.dimensions() == (w, h) {
            img
        } else {
            image::imageops::resize(&img, w, h, FilterType::Triangle)
        };
        kept.push((read, small));
        if kept.len() >= cap {
            stride *= 2;
            kept.retain(|(n, _)| (n - 1).is_multiple_of(stride));
        }
    }
    // Evenly spaced `want` of what is kept.
    let n = kept.len();
    let frames = if n <= want {
        kept
    } else {
        let pick: Vec<usize> = (0..want).map(|k| k * n / want).collect();
        kept.into_iter()
            .enumerate()
            .filter(|(i, _)| pick.binary_search(i).is_ok())
            .map(|(_, f)| f)
            .collect()
    };
    Ok(Selection {
        frames: frames
            .into_iter()
            .map(|(n, f)| (n + span.skip, f))
            .collect(),
        read,
        duplicates: dups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames whose pixel value is their number; frames 50–69 repeat frame 49.
    struct Counter(u64);
    impl FrameSource for Counter {
        fn open(&mut self, _: &AtomicBool) -> Result<()> {
            Ok(())
        }
        fn read(&mut self, _: Duration) -> Result<Read> {
            self.0 += 1;
            if self.0 > 200 {
                return Ok(Read::Eof);
            }
            let v = if (50..70).contains(&self.0) {
                49
            } else {
                self.0
            };
            Ok(Read::Frame(RgbImage::from_pixel(
                8,
                8,
                image::Rgb([v as u8; 3]),
            )))
        }
        fn describe(&self) -> String {
            "counter".into()
        }
    }

    #[test]
    fn frames_are_spread_over_the_whole_source_without_duplicates() {
        let stop = AtomicBool::new(false);
        let s = select(&mut Counter(0), 10, Span::default(), (8, 8), &stop, |_| {}).unwrap();
        assert_eq!(s.read, 200);
        assert_eq!(s.frames.len(), 10);
        let nums: Vec<u64> = s.frames.iter().map(|f| f.0).collect();
        // Spread: the first near the start, the last in the final tenth.
        assert!(nums[0] <= 20 && *nums.last().unwrap() > 170, "{nums:?}");
        // No two picked frames look alike.
        let vals: Vec<u8> = s.frames.iter().map(|f| f.1.get_pixel(0, 0).0[0]).collect();
        let mut d = vals.clone();
        d.dedup();
        assert_eq!(d, vals);
    }

    #[test]
    fn span_limits_the_frames_read() {
        let stop = AtomicBool::new(false);
        let span = Span {
            skip: 100,
            limit: 50,
        };
        let s = select(&mut Counter(0), 5, span, (8, 8), &stop, |_| {}).unwrap();
        assert_eq!(s.read, 50);
        assert!(s.frames.iter().all(|f| f.0 > 100 && f.0 <= 150));
    }
}
