//! A simple IoU tracker that turns per-frame detections into object events
//! (`new`, `update`, `end`), like Frigate's events topic.

use serde::Serialize;

use super::nms::iou;

/// One detected object in source-frame pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Object {
    pub label: String,
    pub class_id: usize,
    pub score: f32,
    /// [x1, y1, x2, y2] in source-frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub id: u64,
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Sequence numbers of the first and latest frames the object was seen in.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Frames the object was seen in.
    pub frames: u64,
}

struct Track {
    id: u64,
    obj: Object,
    top_score: f32,
    first_seq: u64,
    last_seq: u64,
    frames: u64,
    missed: u32,
    since_update: u32,
}

pub struct Tracker {
    iou_threshold: f32,
    max_missed: u32,
    update_every: u32,
    next_id: u64,
    tracks: Vec<Track>,
    /// (track id, object index) of every object of the latest [`Tracker::update`].
    assigned: Vec<(u64, usize)>,
}

impl Tracker {
    pub fn new(iou_threshold: f32, max_missed: u32, update_every: u32) -> Self {
        Tracker {
            iou_threshold,
            max_missed,
            update_every: update_every.max(1),
            next_id: 1,
            tracks: Vec::new(),
            assigned: Vec::new(),
        }
    }

    /// Number of live tracks.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The track of each object of the latest [`Tracker::update`]: (track id, index into its
    /// `objects`), for matched objects and new tracks alike.
    pub fn assigned(&self) -> &[(u64, usize)] {
        &self.assigned
    }

    fn event(t: &Track, kind: EventKind) -> Event {
        Event {
            kind,
            id: t.id,
            label: t.obj.label.clone(),
            score: t.obj.score,
            top_score: t.top_score,
            bbox: t.obj.bbox,
            first_seq: t.first_seq,
            last_seq: t.last_seq,
            frames: t.frames,
        }
    }

    /// Feed one processed frame; returns the events it causes.
    pub fn update(&mut self, seq: u64, objects: &[Object]) -> Vec<Event> {
        let mut events = Vec::new();
        self.assigned.clear();
        // Greedy matching by IoU, same label only, best pairs first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (oi, o) in objects.iter().enumerate() {
                if o.label == t.obj.label {
                    // Pixel boxes [x1, y1, x2, y2]: `iou` treats both axes alike.
                    let v = iou(&t.obj.bbox, &o.bbox);
                    if v >= self.iou_threshold {
                        pairs.push((v, ti, oi));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut obj_used = vec![false; objects.len()];
        for (_, ti, oi) in pairs {
            if track_used[ti] || obj_used[oi] {
                continue;
            }
            track_used[ti] = true;
            obj_used[oi] = true;
            let t = &mut self.tracks[ti];
            self.assigned.push((t.id, oi));
            t.obj = objects[oi].clone();
            t.top_score = t.top_score.max(t.obj.score);
            t.last_seq = seq;
            t.frames += 1;
            t.missed = 0;
            t.since_update += 1;
            if t.since_update >= self.update_every {
                t.since_update = 0;
                events.push(Self::event(t, EventKind::Update));
            }
        }
        // Unmatched tracks age and end.
        let mut i = 0;
        while i < self.tracks.len() {
            if i < track_used.len() && !track_used[i] {
                self.tracks[i].missed += 1;
                if self.tracks[i].missed > self.max_missed {
                    let t = self.tracks.remove(i);
                    track_used.remove(i);
                    events.push(Self::event(&t, EventKind::End));
                    continue;
                }
            }
            i += 1;
        }
        // Unmatched objects start tracks.
        for (oi, o) in objects.iter().enumerate() {
            if obj_used[oi] {
                continue;
            }
            let t = Track {
                id: self.next_id,
                obj: o.clone(),
                top_score: o.score,
                first_seq: seq,
                last_seq: seq,
                frames: 1,
                missed: 0,
                since_update: 0,
            };
            self.next_id += 1;
            self.assigned.push((t.id, oi));
            events.push(Self::event(&t, EventKind::New));
            self.tracks.push(t);
        }
        events
    }

    /// End every live track (shutdown).
    pub fn finish(&mut self) -> Vec<Event> {
        self.assigned.clear();
        self.tracks
            .drain(..)
            .map(|t| Self::event(&t, EventKind::End))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(label: &str, x: f32) -> Object {
        Object {
            label: label.into(),
            class_id: 1,
            score: 0.8,
            bbox: [x, 10.0, x + 50.0, 110.0],
        }
    }

    #[test]
    fn an_object_moving_slowly_keeps_its_id_and_ends_after_missing() {
        let mut t = Tracker::new(0.3, 2, 2);
        let e = t.update(1, &[obj("Person", 0.0)]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EventKind::New);
        let id = e[0].id;
        let e = t.update(2, &[obj("Person", 5.0)]);
        assert!(e.is_empty(), "first match does not reach update_every=2");
        let e = t.update(3, &[obj("Person", 10.0)]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].id, e[0].frames),
            (EventKind::Update, id, 3)
        );
        assert!(t.update(4, &[]).is_empty());
        assert!(t.update(5, &[]).is_empty());
        let e = t.update(6, &[]);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].kind, e[0].id, e[0].last_seq), (EventKind::End, id, 3));
        assert!(t.is_empty());
    }

    #[test]
    fn assigned_names_the_track_of_each_object() {
        let mut t = Tracker::new(0.3, 0, 1);
        let e = t.update(1, &[obj("Person", 0.0)]);
        let id = e[0].id;
        assert_eq!(t.assigned(), [(id, 0)]);
        t.update(2, &[obj("Car", 500.0), obj("Person", 5.0)]);
        assert_eq!(t.assigned(), [(id, 1), (id + 1, 0)], "matched, then new");
        t.update(3, &[]);
        assert!(t.assigned().is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn different_labels_or_far_boxes_are_different_objects() {
        let mut t = Tracker::new(0.3, 1, 1);
        t.update(1, &[obj("Person", 0.0)]);
        let e = t.update(2, &[obj("Car", 0.0), obj("Person", 300.0)]);
        let news: Vec<_> = e.iter().filter(|e| e.kind == EventKind::New).collect();
        assert_eq!(news.len(), 2);
        assert_eq!(t.len(), 3);
        assert!((iou(&obj("a", 0.0).bbox, &obj("a", 0.0).bbox) - 1.0).abs() < 1e-6);
    }
}
