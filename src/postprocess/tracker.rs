//! A simple IoU tracker that turns per-frame detections into object events
//! (`new`, `update`, `end`), like Frigate's events topic.

use serde::Serialize;

use super::bbox::PixelBox;

/// One detected object in source-frame pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Object {
    pub label: String,
    pub class_id: usize,
    pub score: f32,
    /// [x1, y1, x2, y2] in source-frame pixels.
    #[serde(rename = "box")]
    pub bbox: PixelBox,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

/// One tracker event. Serialized as the `events` payload (without `camera`, which the
/// publisher adds): `id` is unique across restarts (`<start_time>-<6 random letters>`, like
/// Frigate's), times are epoch seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub id: String,
    /// The track's number in this run (snapshots are kept by it).
    #[serde(skip)]
    pub track: u64,
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    #[serde(rename = "box")]
    pub bbox: PixelBox,
    /// Capture time of the first frame the object was seen in.
    pub start_time: f64,
    /// Capture time of the last frame it was seen in; set on `end` only.
    pub end_time: Option<f64>,
    /// Capture time of the latest frame it was seen in.
    pub frame_time: f64,
    /// Sequence numbers of the first and latest frames the object was seen in.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Frames the object was seen in.
    pub frames: u64,
    /// The object as its previous event showed it (as the new one on `new`): Frigate's
    /// `before`.
    #[serde(skip)]
    pub before: Option<Box<Event>>,
}

/// When the tracker reports an object (`[tracker]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// IoU needed to continue a track.
    pub iou: f32,
    /// Processed frames a track may be unseen before it ends.
    pub max_missed: u32,
    /// Minimum processed frames between `update` events of one object.
    pub update_every: u32,
    /// The false-positive gate: frames an object must be seen in before `new`...
    pub min_frames: u32,
    /// ... and the median of its recent scores must reach this.
    pub min_score: f32,
    /// An `update` needs a better top score, or the box moved: IoU with the box of the last
    /// event below this.
    pub update_iou: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            iou: 0.3,
            max_missed: 5,
            update_every: 5,
            min_frames: 3,
            min_score: 0.5,
            update_iou: 0.7,
        }
    }
}

/// Scores kept per track for the gate's median.
const HISTORY: usize = 10;

struct Track {
    id: u64,
    uid: String,
    obj: Object,
    top_score: f32,
    first_seq: u64,
    last_seq: u64,
    start_time: f64,
    frame_time: f64,
    frames: u64,
    missed: u32,
    since_update: u32,
    /// The latest scores, oldest first (at most [`HISTORY`]).
    scores: Vec<f32>,
    /// The last event published for it: `None` while the gate holds it back.
    shown: Option<Event>,
}

impl Track {
    fn median_score(&self) -> f32 {
        let mut v = self.scores.clone();
        v.sort_by(f32::total_cmp);
        let n = v.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

pub struct Tracker {
    settings: Settings,
    next_id: u64,
    /// Keys the random part of event ids (differs per run).
    ids: std::collections::hash_map::RandomState,
    tracks: Vec<Track>,
    /// (track id, object index) of every reported object of the latest [`Tracker::update`].
    assigned: Vec<(u64, usize)>,
    false_positives: u64,
}

impl Tracker {
    pub fn new(settings: Settings) -> Self {
        Tracker {
            settings: Settings {
                update_every: settings.update_every.max(1),
                min_frames: settings.min_frames.max(1),
                ..settings
            },
            next_id: 1,
            ids: std::collections::hash_map::RandomState::new(),
            tracks: Vec::new(),
            assigned: Vec::new(),
            false_positives: 0,
        }
    }

    /// Number of live tracks (reported or still held back by the gate).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Tracks that ended without passing the false-positive gate.
    pub fn false_positives(&self) -> u64 {
        self.false_positives
    }

    /// The track of each reported object of the latest [`Tracker::update`] (track id, index
    /// into its `objects`); objects the gate still holds back are not listed.
    pub fn assigned(&self) -> &[(u64, usize)] {
        &self.assigned
    }

    /// The label of each reported object of the latest [`Tracker::update`] of `objects`:
    /// what `counts/<label>` counts (objects past the false-positive gate, as Frigate counts
    /// true positives only).
    pub fn reported_labels<'a>(
        &'a self,
        objects: &'a [Object],
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.assigned
            .iter()
            .filter_map(move |&(_, i)| objects.get(i).map(|o| o.label.as_ref()))
    }

    /// `<start_time>-<6 lower-case letters and digits>`: unique across restarts, as the
    /// random part is keyed per run.
    fn uid(&self, track: u64, start_time: f64) -> String {
        use std::hash::BuildHasher;
        let mut h = self.ids.hash_one(track);
        let mut suffix = String::with_capacity(6);
        for _ in 0..6 {
            suffix.push(char::from_digit((h % 36) as u32, 36).unwrap_or('0'));
            h /= 36;
        }
        format!("{start_time:.6}-{suffix}")
    }

    fn event(t: &Track, kind: EventKind) -> Event {
        Event {
            kind,
            id: t.uid.clone(),
            track: t.id,
            label: t.obj.label.clone(),
            score: t.obj.score,
            top_score: t.top_score,
            bbox: t.obj.bbox,
            start_time: t.start_time,
            end_time: (kind == EventKind::End).then_some(t.frame_time),
            frame_time: t.frame_time,
            first_seq: t.first_seq,
            last_seq: t.last_seq,
            frames: t.frames,
            before: None,
        }
    }

    /// The event `kind` of `t`, remembered as the track's last shown state.
    fn show(t: &mut Track, kind: EventKind) -> Event {
        let mut e = Self::event(t, kind);
        let before = t.shown.take().unwrap_or_else(|| e.clone());
        e.before = Some(Box::new(before));
        let mut shown = e.clone();
        shown.before = None;
        t.shown = Some(shown);
        e
    }

    /// Feed one processed frame, captured at `time` (epoch seconds); returns the events it
    /// causes: `new` once an object passes the false-positive gate, `update` when a reported
    /// object scores better or moves (at most every `update_every` frames), `end` when a
    /// reported object is gone.
    pub fn update(&mut self, seq: u64, time: f64, objects: &[Object]) -> Vec<Event> {
        let st = self.settings;
        let mut events = Vec::new();
        self.assigned.clear();
        // Greedy matching by IoU, same label only, best pairs first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (oi, o) in objects.iter().enumerate() {
                if o.label == t.obj.label {
                    let v = t.obj.bbox.iou(&o.bbox);
                    if v >= st.iou {
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
            t.obj = objects[oi].clone();
            t.top_score = t.top_score.max(t.obj.score);
            t.last_seq = seq;
            t.frame_time = time;
            t.frames += 1;
            t.missed = 0;
            t.since_update += 1;
            if t.scores.len() == HISTORY {
                t.scores.remove(0);
            }
            t.scores.push(t.obj.score);
            match &t.shown {
                None => {
                    if t.frames >= u64::from(st.min_frames) && t.median_score() >= st.min_score {
                        t.since_update = 0;
                        events.push(Self::show(t, EventKind::New));
                    }
                }
                Some(last) => {
                    let better = t.top_score > last.top_score;
                    let moved = last.bbox.iou(&t.obj.bbox) < st.update_iou;
                    if t.since_update >= st.update_every && (better || moved) {
                        t.since_update = 0;
                        events.push(Self::show(t, EventKind::Update));
                    }
                }
            }
            if t.shown.is_some() {
                self.assigned.push((t.id, oi));
            }
        }
        // Unmatched tracks age and end (silently, if the gate never let them through).
        let mut i = 0;
        while i < self.tracks.len() {
            if i < track_used.len() && !track_used[i] {
                self.tracks[i].missed += 1;
                if self.tracks[i].missed > st.max_missed {
                    let mut t = self.tracks.remove(i);
                    track_used.remove(i);
                    if t.shown.is_some() {
                        events.push(Self::show(&mut t, EventKind::End));
                    } else {
                        self.false_positives += 1;
                    }
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
            let id = self.next_id;
            self.next_id += 1;
            let mut t = Track {
                id,
                uid: self.uid(id, time),
                obj: o.clone(),
                top_score: o.score,
                first_seq: seq,
                last_seq: seq,
                start_time: time,
                frame_time: time,
                frames: 1,
                missed: 0,
                since_update: 0,
                scores: vec![o.score],
                shown: None,
            };
            if st.min_frames <= 1 && o.score >= st.min_score {
                events.push(Self::show(&mut t, EventKind::New));
                self.assigned.push((id, oi));
            }
            self.tracks.push(t);
        }
        events
    }

    /// End every live track (shutdown): `end` for each reported object.
    pub fn finish(&mut self) -> Vec<Event> {
        self.assigned.clear();
        let mut out = Vec::new();
        for mut t in self.tracks.drain(..) {
            if t.shown.is_some() {
                out.push(Self::show(&mut t, EventKind::End));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(label: &str, x: f32) -> Object {
        scored(label, x, 0.8)
    }

    fn scored(label: &str, x: f32, score: f32) -> Object {
        Object {
            label: label.into(),
            class_id: 1,
            score,
            bbox: crate::postprocess::PixelBox([x, 10.0, x + 50.0, 110.0]),
        }
    }

    fn settings(max_missed: u32, update_every: u32, min_frames: u32) -> Settings {
        Settings {
            max_missed,
            update_every,
            min_frames,
            ..Settings::default()
        }
    }

    #[test]
    fn an_object_moving_keeps_its_id_updates_when_it_moves_and_ends_after_missing() {
        let mut t = Tracker::new(settings(2, 2, 1));
        let e = t.update(1, 100.0, &[obj("person", 0.0)]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EventKind::New);
        assert_eq!((e[0].start_time, e[0].end_time), (100.0, None));
        let b = e[0].before.as_deref().unwrap();
        assert_eq!(
            (b.kind, b.score),
            (EventKind::New, 0.8),
            "before = after on new"
        );
        let id = e[0].id.clone();
        assert!(id.starts_with("100.000000-") && id.len() == 17, "{id}");
        let e = t.update(2, 100.2, &[obj("person", 5.0)]);
        assert!(e.is_empty(), "first match does not reach update_every=2");
        let e = t.update(3, 100.4, &[obj("person", 5.0)]);
        assert!(
            e.is_empty(),
            "same score, box moved 5 px of 50 (IoU 0.82 >= 0.7)"
        );
        let e = t.update(4, 100.6, &[obj("person", 30.0)]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].id.as_str(), e[0].frames),
            (EventKind::Update, id.as_str(), 4)
        );
        assert_eq!(
            e[0].before.as_deref().unwrap().bbox[0],
            0.0,
            "before: the new event"
        );
        assert!(t.update(5, 100.8, &[]).is_empty());
        assert!(t.update(6, 101.0, &[]).is_empty());
        let e = t.update(7, 101.2, &[]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].id.as_str(), e[0].last_seq),
            (EventKind::End, id.as_str(), 4)
        );
        assert_eq!(e[0].end_time, Some(100.6), "the last frame it was seen in");
        assert_eq!(e[0].before.as_deref().unwrap().bbox[0], 30.0);
        assert!(t.is_empty());
    }

    #[test]
    fn updates_need_a_better_score_or_a_move_not_just_time() {
        let mut t = Tracker::new(settings(2, 1, 1));
        t.update(1, 0.0, &[scored("car", 0.0, 0.6)]);
        for seq in 2..10 {
            let e = t.update(seq, seq as f64, &[scored("car", 0.0, 0.6)]);
            assert!(e.is_empty(), "a still object at the same score is quiet");
        }
        let e = t.update(10, 10.0, &[scored("car", 0.0, 0.7)]);
        assert_eq!(e.len(), 1, "a better score");
        assert_eq!((e[0].score, e[0].top_score), (0.7, 0.7));
        assert!(t.update(11, 11.0, &[scored("car", 0.0, 0.65)]).is_empty());
    }

    #[test]
    fn counts_follow_the_gate() {
        let mut t = Tracker::new(Settings {
            min_frames: 3,
            max_missed: 0,
            ..Settings::default()
        });
        fn labels(t: &Tracker, o: &[Object]) -> Vec<String> {
            t.reported_labels(o).map(str::to_string).collect()
        }
        // A person stays; a dog flickers for two frames (a false positive) far from it.
        let f = [obj("person", 0.0), obj("dog", 400.0)];
        t.update(1, 1.0, &f);
        assert!(labels(&t, &f).is_empty(), "nobody past the gate yet");
        t.update(2, 2.0, &f);
        assert!(labels(&t, &f).is_empty());
        let f = [obj("person", 2.0)];
        t.update(3, 3.0, &f);
        assert_eq!(
            labels(&t, &f),
            ["person"],
            "the person, from its third frame"
        );
        let f = [obj("dog", 400.0), obj("person", 4.0)];
        t.update(4, 4.0, &f);
        assert_eq!(labels(&t, &f), ["person"], "a new dog track starts over");
        assert_eq!(t.false_positives(), 1);
    }

    #[test]
    fn the_gate_holds_back_short_lived_and_low_scoring_objects() {
        let mut t = Tracker::new(Settings {
            min_frames: 3,
            min_score: 0.6,
            max_missed: 0,
            ..Settings::default()
        });
        // Two frames, then gone: a false positive, never reported.
        assert!(t.update(1, 1.0, &[obj("dog", 0.0)]).is_empty());
        assert!(t.assigned().is_empty(), "held back: not assigned");
        assert!(t.update(2, 2.0, &[obj("dog", 0.0)]).is_empty());
        assert!(t.update(3, 3.0, &[]).is_empty());
        assert_eq!(t.false_positives(), 1);
        // Three frames, but a median score of 0.55: still held back.
        for seq in 4..7 {
            let s = if seq == 5 { 0.9 } else { 0.55 };
            assert!(t
                .update(seq, seq as f64, &[scored("dog", 0.0, s)])
                .is_empty());
        }
        // A better score lifts the median (0.55, 0.9, 0.55, 0.9: 0.725): `new`, with the
        // first frame's time.
        let e = t.update(7, 7.0, &[scored("dog", 0.0, 0.9)]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].start_time, e[0].frames),
            (EventKind::New, 4.0, 4)
        );
        assert_eq!(t.assigned(), [(e[0].track, 0)]);
        let fin = t.finish();
        assert_eq!(fin.len(), 1);
        assert_eq!(fin[0].end_time, Some(7.0));
    }

    #[test]
    fn ids_differ_between_runs_and_tracks() {
        let a = Tracker::new(Settings::default());
        let b = Tracker::new(Settings::default());
        assert_ne!(a.uid(1, 5.0), a.uid(2, 5.0));
        assert_ne!(a.uid(1, 5.0), b.uid(1, 5.0), "another run");
        assert_eq!(a.uid(1, 5.0), a.uid(1, 5.0));
    }

    #[test]
    fn assigned_names_the_track_of_each_object() {
        let mut t = Tracker::new(settings(0, 1, 1));
        let e = t.update(1, 1.0, &[obj("person", 0.0)]);
        let id = e[0].track;
        assert_eq!(t.assigned(), [(id, 0)]);
        t.update(2, 2.0, &[obj("car", 500.0), obj("person", 5.0)]);
        assert_eq!(t.assigned(), [(id, 1), (id + 1, 0)], "matched, then new");
        t.update(3, 3.0, &[]);
        assert!(t.assigned().is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn different_labels_or_far_boxes_are_different_objects() {
        let mut t = Tracker::new(settings(1, 1, 1));
        t.update(1, 1.0, &[obj("person", 0.0)]);
        let e = t.update(2, 2.0, &[obj("car", 0.0), obj("person", 300.0)]);
        let news: Vec<_> = e.iter().filter(|e| e.kind == EventKind::New).collect();
        assert_eq!(news.len(), 2);
        assert_eq!(t.len(), 3);
        assert!((obj("a", 0.0).bbox.iou(&obj("a", 0.0).bbox) - 1.0).abs() < 1e-6);
    }
}
