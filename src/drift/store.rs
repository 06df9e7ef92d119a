//! The disagreement-frame store: sampled frames on which the two models
//! disagree most (disagreement = 1 - F1 at or above a threshold) are kept on
//! disk as `<time>_<seq>.jpg` with both models' detections in
//! `<time>_<seq>.json` beside them, for later calibration. The store is
//! bounded in frames and bytes; the oldest frames are removed first.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use image::RgbImage;

use super::compare::FrameComparison;
use crate::postprocess::Detection;
use crate::preprocess::FrameTransform;

pub struct Store {
    dir: PathBuf,
    max_frames: usize,
    max_bytes: u64,
    min_disagreement: f64,
}

fn dets_json(d: &[Detection], t: &FrameTransform) -> serde_json::Value {
    d.iter()
        .map(|x| {
            serde_json::json!({
                "label": &*x.label, "class_id": x.class_id, "score": x.score,
                "box": x.to_pixels(t), "box_normalized": x.bbox,
            })
        })
        .collect()
}

impl Store {
    pub fn new(
        dir: &Path,
        max_frames: usize,
        max_bytes: u64,
        min_disagreement: f64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("shadow.store_dir: creating {}", dir.display()))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            max_frames: max_frames.max(1),
            max_bytes,
            min_disagreement,
        })
    }

    /// Keep `image` if the comparison disagrees enough; returns the JPEG path when kept.
    pub fn offer(
        &self,
        image: &RgbImage,
        c: &FrameComparison,
        t: &FrameTransform,
        wall: SystemTime,
    ) -> Result<Option<PathBuf>> {
        let dis = c.disagreement();
        if dis < self.min_disagreement {
            return Ok(None);
        }
        let ms = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let stem = format!("{ms:015}_{:010}", c.seq);
        let jpg = self.dir.join(format!("{stem}.jpg"));
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
            .encode_image(image)
            .context("encoding the disagreement frame")?;
        if buf.len() as u64 > self.max_bytes {
            return Ok(None);
        }
        std::fs::write(&jpg, &buf).with_context(|| format!("writing {}", jpg.display()))?;
        let meta = serde_json::json!({
            "seq": c.seq,
            "image": format!("{stem}.jpg"),
            "width": image.width(),
            "height": image.height(),
            "disagreement": dis,
            "metrics": c.to_json(),
            "int8": dets_json(&c.int8, t),
            "float": dets_json(&c.float, t),
        });
        let js = self.dir.join(format!("{stem}.json"));
        std::fs::write(&js, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", js.display()))?;
        self.prune()?;
        Ok(Some(jpg))
    }

    /// Remove the oldest frames (and their JSON) beyond the bounds.
    pub fn prune(&self) -> Result<()> {
        let mut frames: Vec<(String, u64)> = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("jpg") {
                continue;
            }
            let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let size = |q: &Path| std::fs::metadata(q).map(|m| m.len()).unwrap_or(0);
            let bytes = size(&p) + size(&p.with_extension("json"));
            frames.push((stem.to_string(), bytes));
        }
        frames.sort();
        let mut total: u64 = frames.iter().map(|f| f.1).sum();
        let mut n = frames.len();
        for (stem, bytes) in frames {
            if n <= self.max_frames && total <= self.max_bytes {
                break;
            }
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.jpg")));
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.json")));
            n -= 1;
            total -= bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_disagreeing_frames_within_bounds() {
        let dir = std::env::temp_dir().join(format!("edgecam-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::new(&dir, 3, 10_000_000, 0.5).unwrap();
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
        let t = FrameTransform {
            src_w: 64,
            src_h: 48,
            dst_w: 300,
            dst_h: 300,
            scale_x: 300.0 / 64.0,
            scale_y: 300.0 / 48.0,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        let d = Detection {
            class_id: 1,
            label: "Person".into(),
            score: 0.8,
            bbox: crate::postprocess::NormBox([0.1, 0.1, 0.5, 0.5]),
        };
        let agree = FrameComparison::new(1, vec![d.clone()], vec![d.clone()], 0.5, vec![]);
        assert!(s
            .offer(&img, &agree, &t, SystemTime::now())
            .unwrap()
            .is_none());
        for seq in 2..=6u64 {
            let c = FrameComparison::new(seq, vec![], vec![d.clone()], 0.5, vec![]);
            let wall = UNIX_EPOCH + std::time::Duration::from_secs(seq);
            assert!(s.offer(&img, &c, &t, wall).unwrap().is_some());
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 6, "{names:?}");
        // The three newest (seq 4, 5, 6) remain, each with its JSON.
        assert!(names[0].ends_with("_0000000004.jpg"), "{names:?}");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(&names[5])).unwrap()).unwrap();
        assert_eq!(meta["seq"], 6);
        assert_eq!(meta["float"][0]["label"], "Person");
        assert_eq!(meta["int8"].as_array().unwrap().len(), 0);
        assert_eq!(meta["disagreement"], 1.0);
        // A byte bound below two frames keeps one.
        let one = std::fs::metadata(dir.join(&names[0])).unwrap().len()
            + std::fs::metadata(dir.join(&names[1])).unwrap().len();
        let s2 = Store::new(&dir, 10, one + one / 2, 0.5).unwrap();
        s2.prune().unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
