//! The two kinds of box, as distinct types so that one cannot be passed where the other is
//! meant (their corner orders differ as well as their units):
//! - [`NormBox`]: `[ymin, xmin, ymax, xmax]` in normalised model-input coordinates, TFLite's
//!   order, what the decoders produce and the drift comparison uses;
//! - [`PixelBox`]: `[x1, y1, x2, y2]` in source-frame pixels, what MQTT payloads, the tracker,
//!   snapshots and the HTTP endpoint use.
//!
//! [`NormBox::to_pixels`] (through a `FrameTransform`) is the only way from one to the other.
//! Both read as their four corners (`b[0]`, `b.iter()`), and serialize as a 4-number array.

use std::ops::Deref;

use serde::Serialize;

use super::nms::iou;

/// `[ymin, xmin, ymax, xmax]` in normalised model-input coordinates (not clamped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NormBox(pub [f32; 4]);

/// `[x1, y1, x2, y2]` in source-frame pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PixelBox(pub [f32; 4]);

impl Deref for NormBox {
    type Target = [f32; 4];
    fn deref(&self) -> &[f32; 4] {
        &self.0
    }
}

impl Deref for PixelBox {
    type Target = [f32; 4];
    fn deref(&self) -> &[f32; 4] {
        &self.0
    }
}

impl NormBox {
    /// Intersection over union with another normalised box.
    pub fn iou(&self, other: &NormBox) -> f32 {
        iou(&self.0, &other.0)
    }
}

impl PixelBox {
    pub fn width(&self) -> f32 {
        self.0[2] - self.0[0]
    }

    pub fn height(&self) -> f32 {
        self.0[3] - self.0[1]
    }

    /// Intersection over union with another pixel box.
    pub fn iou(&self, other: &PixelBox) -> f32 {
        iou(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_read_and_serialize_as_their_corners() {
        let n = NormBox([0.1, 0.2, 0.5, 0.6]);
        let p = PixelBox([10.0, 20.0, 50.0, 80.0]);
        assert_eq!((n[0], n[3]), (0.1, 0.6));
        assert_eq!((p.width(), p.height()), (40.0, 60.0));
        assert_eq!(serde_json::to_string(&p).unwrap(), "[10.0,20.0,50.0,80.0]");
        assert_eq!(serde_json::to_string(&n).unwrap(), "[0.1,0.2,0.5,0.6]");
        assert_eq!(p.iou(&PixelBox([30.0, 20.0, 70.0, 80.0])), 1.0 / 3.0);
        assert_eq!(n.iou(&n), 1.0);
    }
}
