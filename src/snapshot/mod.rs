//! Event snapshots (`[snapshots]`): which frame of a tracked object becomes a JPEG on
//! `<base>/<label>/snapshot`, and when.
//!
//! [`Snapshots`] runs on the publish thread beside the tracker. Per live track it keeps the
//! score of its best frame, the JPEG of the best frame published so far and, when a better
//! frame came too soon after the previous snapshot (`snapshots.min_interval_s`), that frame
//! (an `Arc` of the processed frame, not a copy) until the interval has passed:
//! - a new track: a snapshot of its first frame at once;
//! - a better-scoring frame: a snapshot once `min_interval_s` has passed since the previous
//!   one (of the best frame meanwhile, which is encoded only then);
//! - the track's end: its best frame's snapshot, again (retained, it is what stays).
//!
//! Everything kept belongs to a live track of the tracker and goes at its `end`: at most one
//! JPEG and one frame per live track. [`render`] makes the images.

pub mod render;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::config::SnapshotConfig;
use crate::postprocess::tracker::{Event, EventKind, Object};
use crate::postprocess::PixelBox;
use render::Look;

/// One snapshot to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Shot {
    pub track: u64,
    pub label: String,
    pub jpeg: Vec<u8>,
}

/// Snapshots made so far, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Snapshots handed to the publisher.
    pub published: u64,
    /// Snapshots made smaller than configured to fit one MQTT message.
    pub shrunk: u64,
    /// Snapshots that could not be made (too large even when smaller, or not encodable).
    pub failed: u64,
}

struct Kept {
    label: String,
    /// The score of the best frame so far (published or pending).
    best_score: f32,
    /// The JPEG of the best frame published so far.
    jpeg: Option<Vec<u8>>,
    /// When (capture time) the latest snapshot was made; `None` before the first.
    made_at: Option<Instant>,
    /// A better frame not published yet, with the object's box in it.
    pending: Option<(Arc<RgbImage>, PixelBox)>,
}

/// The snapshot policy and its per-track state.
pub struct Snapshots {
    look: Look,
    min_interval: Duration,
    max_bytes: usize,
    tracks: BTreeMap<u64, Kept>,
    counters: Counters,
}

impl Snapshots {
    /// A policy for `cfg`, making JPEGs of at most `max_bytes`.
    pub fn new(cfg: &SnapshotConfig, max_bytes: usize) -> Self {
        Snapshots {
            look: Look {
                crop: cfg.crop,
                draw_box: cfg.draw_box,
                max_width: cfg.max_width,
                max_height: cfg.max_height,
                quality: cfg.quality.clamp(1, 100) as u8,
            },
            min_interval: Duration::from_secs_f64(cfg.min_interval_s.max(0.0)),
            max_bytes,
            tracks: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Tracks with state kept (at most the tracker's live tracks).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Encode `k`'s pending frame, if any: it becomes the kept JPEG.
    fn make(&mut self, id: u64, at: Option<Instant>) -> Option<Shot> {
        let k = self.tracks.get_mut(&id)?;
        let (frame, bbox) = k.pending.take()?;
        match render::jpeg(&frame, bbox, &self.look, self.max_bytes) {
            Ok(j) => {
                if j.shrunk {
                    self.counters.shrunk += 1;
                }
                k.made_at = at.or(k.made_at);
                k.jpeg = Some(j.bytes.clone());
                self.counters.published += 1;
                Some(Shot {
                    track: id,
                    label: k.label.clone(),
                    jpeg: j.bytes,
                })
            }
            Err(e) => {
                self.counters.failed += 1;
                if crate::telemetry::worth_logging(self.counters.failed) {
                    tracing::warn!(track = id, label = %k.label, failed = self.counters.failed, "no snapshot: {e:#}");
                }
                None
            }
        }
    }

    /// One processed frame captured at `ts`: `assigned` pairs each object with its track
    /// ([`crate::postprocess::tracker::Tracker::assigned`]), `events` are the tracker's
    /// events of the frame. Returns the snapshots to publish, in order.
    pub fn frame(
        &mut self,
        ts: Instant,
        frame: &Arc<RgbImage>,
        objects: &[Object],
        assigned: &[(u64, usize)],
        events: &[Event],
    ) -> Vec<Shot> {
        let mut shots = Vec::new();
        // Ended tracks: their best frame, and nothing kept any more.
        for e in events.iter().filter(|e| e.kind == EventKind::End) {
            shots.extend(self.end(e.track));
        }
        for &(id, oi) in assigned {
            let Some(o) = objects.get(oi) else { continue };
            let k = self.tracks.entry(id).or_insert_with(|| Kept {
                label: o.label.clone(),
                best_score: f32::NEG_INFINITY,
                jpeg: None,
                made_at: None,
                pending: None,
            });
            if o.score > k.best_score {
                k.best_score = o.score;
                k.pending = Some((frame.clone(), o.bbox));
            }
        }
        // Snapshots due: the first of a track, or a better frame once the interval passed.
        let due: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, k)| {
                k.pending.is_some()
                    && k.made_at
                        .is_none_or(|t| ts.saturating_duration_since(t) >= self.min_interval)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            shots.extend(self.make(id, Some(ts)));
        }
        shots
    }

    /// Track `id` has ended: the snapshot of its best frame (encoded now if it was still
    /// pending), and its state is dropped.
    pub fn end(&mut self, id: u64) -> Option<Shot> {
        let shot = self.make(id, None);
        let k = self.tracks.remove(&id)?;
        match (shot, k.jpeg) {
            (Some(s), _) => Some(s),
            (None, Some(jpeg)) => {
                self.counters.published += 1;
                Some(Shot {
                    track: id,
                    label: k.label,
                    jpeg,
                })
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::tracker::Tracker;

    fn cfg(min_interval_s: f64) -> SnapshotConfig {
        SnapshotConfig {
            enabled: true,
            min_interval_s,
            max_width: 64,
            max_height: 64,
            ..Default::default()
        }
    }

    /// A frame whose colour tells which one it is.
    fn frame(shade: u8) -> Arc<RgbImage> {
        Arc::new(RgbImage::from_pixel(
            128,
            96,
            image::Rgb([shade, shade, shade]),
        ))
    }

    fn person(score: f32, x: f32) -> Object {
        Object {
            label: "Person".into(),
            class_id: 1,
            score,
            bbox: PixelBox([x, 10.0, x + 40.0, 90.0]),
        }
    }

    /// The shade of the frame a snapshot was made of (below every drawn box).
    fn shade(s: &Shot) -> u8 {
        let img = image::load_from_memory(&s.jpeg).unwrap().to_rgb8();
        img.get_pixel(img.width() / 2, img.height() - 1)[1]
    }

    /// Feeds frames through a tracker and the policy, as the publish stage does.
    struct Run {
        tracker: Tracker,
        snaps: Snapshots,
        t0: Instant,
    }

    impl Run {
        fn new(min_interval_s: f64) -> Self {
            Run {
                tracker: Tracker::new(crate::postprocess::tracker::Settings {
                    max_missed: 1,
                    update_every: 1,
                    min_frames: 1,
                    ..Default::default()
                }),
                snaps: Snapshots::new(&cfg(min_interval_s), 1 << 20),
                t0: Instant::now(),
            }
        }
        fn frame(&mut self, seq: u64, at_s: f64, shade: u8, objects: &[Object]) -> Vec<Shot> {
            let events = self.tracker.update(seq, seq as f64, objects);
            self.snaps.frame(
                self.t0 + Duration::from_secs_f64(at_s),
                &frame(shade),
                objects,
                self.tracker.assigned(),
                &events,
            )
        }
    }

    fn near(a: u8, b: u8) -> bool {
        a.abs_diff(b) <= 6
    }

    #[test]
    fn new_worse_better_and_end() {
        let mut r = Run::new(2.0);
        // new → a snapshot at once.
        let s = r.frame(1, 0.0, 40, &[person(0.6, 0.0)]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].label, "Person");
        assert!(near(shade(&s[0]), 40), "{}", shade(&s[0]));
        let id = s[0].track;
        // A worse frame → none, even after the interval.
        assert!(r.frame(2, 3.0, 80, &[person(0.5, 1.0)]).is_empty());
        // A better frame within the interval of the last snapshot? The last one was at 0 s:
        // at 3.5 s the interval has passed → one, of that frame.
        let s = r.frame(3, 3.5, 120, &[person(0.7, 2.0)]);
        assert_eq!(s.len(), 1);
        assert!(near(shade(&s[0]), 120));
        // Better again, but too soon → none yet; better still, still too soon → none.
        assert!(r.frame(4, 4.0, 160, &[person(0.8, 3.0)]).is_empty());
        assert!(r.frame(5, 4.5, 200, &[person(0.9, 4.0)]).is_empty());
        // A worse frame once the interval has passed → the best frame meanwhile, once.
        let s = r.frame(6, 5.6, 20, &[person(0.55, 5.0)]);
        assert_eq!(s.len(), 1);
        assert!(near(shade(&s[0]), 200), "{}", shade(&s[0]));
        assert!(r.frame(7, 9.0, 20, &[person(0.55, 6.0)]).is_empty());
        // The end → the best snapshot.
        assert!(r.frame(8, 9.5, 20, &[]).is_empty(), "one frame missed");
        let s = r.frame(9, 10.0, 20, &[]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].track, id);
        assert!(near(shade(&s[0]), 200));
        assert!(r.snaps.is_empty(), "nothing kept after the end");
        let c = r.snaps.counters();
        assert_eq!((c.published, c.shrunk, c.failed), (4, 0, 0));
    }

    #[test]
    fn a_better_frame_too_soon_is_sent_at_the_end() {
        let mut r = Run::new(60.0);
        assert_eq!(r.frame(1, 0.0, 40, &[person(0.6, 0.0)]).len(), 1);
        assert!(r.frame(2, 1.0, 220, &[person(0.9, 1.0)]).is_empty());
        r.frame(3, 2.0, 20, &[]);
        let s = r.frame(4, 3.0, 20, &[]);
        assert_eq!(s.len(), 1);
        assert!(near(shade(&s[0]), 220), "the pending best frame");
        // Shutdown ends every live track: its best snapshot.
        assert_eq!(r.frame(5, 4.0, 90, &[person(0.6, 300.0)]).len(), 1);
        let ends: Vec<Shot> = r
            .tracker
            .finish()
            .iter()
            .filter_map(|e| r.snaps.end(e.track))
            .collect();
        assert_eq!(ends.len(), 1);
        assert!(near(shade(&ends[0]), 90));
        assert!(r.snaps.is_empty());
    }

    #[test]
    fn with_no_interval_every_better_frame_is_sent() {
        let mut r = Run::new(0.0);
        let mut sent = 0;
        for (i, score) in [0.5, 0.6, 0.55, 0.7, 0.8, 0.8].into_iter().enumerate() {
            sent += r
                .frame(i as u64 + 1, i as f64 * 0.1, 50, &[person(score, i as f32)])
                .len();
        }
        assert_eq!(sent, 4, "0.5, 0.6, 0.7, 0.8 (not 0.55, not 0.8 again)");
    }

    #[test]
    fn objects_are_kept_apart() {
        let mut r = Run::new(1.0);
        let s = r.frame(1, 0.0, 40, &[person(0.6, 0.0), person(0.7, 300.0)]);
        assert_eq!(s.len(), 2);
        assert_ne!(s[0].track, s[1].track);
        assert_eq!(r.snaps.len(), 2);
        // Only the second one is seen from now on: the first ends alone.
        r.frame(2, 0.5, 40, &[person(0.7, 300.0)]);
        let s = r.frame(3, 1.0, 40, &[person(0.7, 300.0)]);
        assert_eq!(s.len(), 1);
        assert_eq!(r.snaps.len(), 1);
    }

    #[test]
    fn a_snapshot_that_cannot_fit_is_counted_not_published() {
        let mut s = Snapshots::new(&cfg(0.0), 10);
        let mut t = Tracker::new(crate::postprocess::tracker::Settings {
            max_missed: 0,
            update_every: 1,
            min_frames: 1,
            ..Default::default()
        });
        let objects = [person(0.6, 0.0)];
        let ev = t.update(1, 1.0, &objects);
        let shots = s.frame(Instant::now(), &frame(9), &objects, t.assigned(), &ev);
        assert!(shots.is_empty());
        assert_eq!(s.counters().failed, 1);
        let ev = t.update(2, 2.0, &[]);
        assert!(s
            .frame(Instant::now(), &frame(9), &[], t.assigned(), &ev)
            .is_empty());
        assert!(s.is_empty());
    }
}
