//! Rolling windows over sampled-frame comparisons (the last N frames and an
//! EWMA), pooled window metrics including pseudo-mAP, and the alarm with
//! hysteresis.

use std::collections::{BTreeMap, VecDeque};

use super::compare::{map_pair, mean, prf, round, Energy, FrameComparison};
use crate::percentile::percentile;
use crate::postprocess::Detection;

/// Metrics pooled over a set of comparisons (a window or a whole source).
#[derive(Clone, Debug, Default)]
pub struct Pooled {
    pub frames: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub mean_iou: Option<f64>,
    pub class_flip_rate: Option<f64>,
    pub score_delta_mean: Option<f64>,
    pub score_delta_p95: Option<f64>,
    pub map50: f64,
    pub map50_95: f64,
    /// Per output tensor: pooled energies (SQNR over all its elements).
    pub outputs: Vec<(String, Energy)>,
    /// Mean per-frame count difference int8 - float, per label.
    pub count_diff: BTreeMap<String, f64>,
    pub int8_objects: usize,
    pub float_objects: usize,
    pub matched: usize,
}

impl Pooled {
    pub fn of<'a>(items: impl IntoIterator<Item = &'a FrameComparison> + Clone) -> Pooled {
        let mut p = Pooled::default();
        let mut ious = Vec::new();
        let mut deltas = Vec::new();
        let (mut flips, mut pairs) = (0usize, 0usize);
        let mut ranked: Vec<(&[Detection], &[Detection])> = Vec::new();
        for c in items.clone() {
            p.frames += 1;
            p.matched += c.tp();
            p.int8_objects += c.int8.len();
            p.float_objects += c.float.len();
            ious.extend(c.matches.iter().map(|m| m.2 as f64));
            deltas.extend_from_slice(&c.score_deltas);
            flips += c.flips;
            pairs += c.box_pairs;
            ranked.push((&c.int8_ranked, &c.float));
            for o in &c.outputs {
                match p.outputs.iter_mut().find(|(n, _)| *n == o.name) {
                    Some((_, e)) => e.add(&o.energy),
                    None => p.outputs.push((o.name.clone(), o.energy)),
                }
            }
            for (l, d) in c.count_diff() {
                *p.count_diff.entry(l).or_insert(0.0) += d as f64;
            }
        }
        if p.frames > 0 {
            for v in p.count_diff.values_mut() {
                *v /= p.frames as f64;
            }
        }
        (p.precision, p.recall, p.f1) = prf(p.matched, p.int8_objects, p.float_objects);
        p.mean_iou = mean(&ious);
        p.class_flip_rate = (pairs > 0).then(|| flips as f64 / pairs as f64);
        p.score_delta_mean = mean(&deltas);
        p.score_delta_p95 = percentile(&deltas, 0.95);
        (p.map50, p.map50_95) = map_pair(&ranked);
        p
    }

    /// Lowest SQNR over the outputs.
    pub fn sqnr_min(&self) -> Option<f64> {
        self.outputs
            .iter()
            .map(|(_, e)| e.sqnr_db())
            .min_by(f64::total_cmp)
    }

    pub fn cosine_min(&self) -> Option<f64> {
        self.outputs
            .iter()
            .map(|(_, e)| e.cosine())
            .min_by(f64::total_cmp)
    }

    /// Value of a named metric (see [`AlarmMetric`]).
    pub fn metric(&self, m: AlarmMetric) -> Option<f64> {
        match m {
            AlarmMetric::F1 => Some(self.f1),
            AlarmMetric::Precision => Some(self.precision),
            AlarmMetric::Recall => Some(self.recall),
            AlarmMetric::Map50 => Some(self.map50),
            AlarmMetric::Map50_95 => Some(self.map50_95),
            AlarmMetric::SqnrDb => self.sqnr_min(),
            AlarmMetric::Cosine => self.cosine_min(),
            AlarmMetric::MeanIou => self.mean_iou,
            AlarmMetric::ClassFlipRate => self.class_flip_rate,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut sq = serde_json::Map::new();
        let mut cos = serde_json::Map::new();
        for (n, e) in &self.outputs {
            sq.insert(n.clone(), round(e.sqnr_db()).into());
            cos.insert(n.clone(), round(e.cosine()).into());
        }
        let diff: BTreeMap<&String, f64> = self
            .count_diff
            .iter()
            .map(|(k, v)| (k, round(*v)))
            .collect();
        serde_json::json!({
            "frames": self.frames,
            "precision": round(self.precision),
            "recall": round(self.recall),
            "f1": round(self.f1),
            "map50": round(self.map50),
            "map50_95": round(self.map50_95),
            "mean_iou": self.mean_iou.map(round),
            "class_flip_rate": self.class_flip_rate.map(round),
            "score_delta": {"mean": self.score_delta_mean.map(round), "p95": self.score_delta_p95.map(round)},
            "sqnr_db": sq,
            "sqnr_db_min": self.sqnr_min().map(round),
            "cosine": cos,
            "count_diff": diff,
            "objects": {"int8": self.int8_objects, "float": self.float_objects, "matched": self.matched},
        })
    }
}

/// Exponentially weighted moving averages of per-frame metrics.
#[derive(Clone, Debug)]
pub struct Ewma {
    alpha: f64,
    pub values: BTreeMap<String, f64>,
}

impl Ewma {
    pub fn new(alpha: f64) -> Self {
        Ewma {
            alpha,
            values: BTreeMap::new(),
        }
    }

    fn push(&mut self, key: &str, v: f64) {
        let a = self.alpha;
        self.values
            .entry(key.to_string())
            .and_modify(|e| *e = a * v + (1.0 - a) * *e)
            .or_insert(v);
    }

    pub fn update(&mut self, c: &FrameComparison) {
        let (p, r, f) = c.prf();
        self.push("precision", p);
        self.push("recall", r);
        self.push("f1", f);
        if let Some(i) = c.mean_iou() {
            self.push("mean_iou", i);
        }
        for o in &c.outputs {
            self.push(&format!("sqnr_db/{}", o.name), o.energy.sqnr_db());
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut sq = serde_json::Map::new();
        for (k, v) in &self.values {
            match k.strip_prefix("sqnr_db/") {
                Some(n) => {
                    sq.insert(n.to_string(), round(*v).into());
                }
                None => {
                    m.insert(k.clone(), round(*v).into());
                }
            }
        }
        m.insert("alpha".into(), self.alpha.into());
        m.insert("sqnr_db".into(), sq.into());
        m.into()
    }
}

/// The metric an alarm watches (typed at load, in the configuration).
pub use crate::config::AlarmMetric;

/// Threshold alarm with hysteresis: fires when the metric crosses
/// `threshold` in the bad direction, clears once it is back past
/// `threshold ± hysteresis` in the good direction. It only judges windows of
/// at least `min_frames` frames.
#[derive(Clone, Debug)]
pub struct Alarm {
    pub metric: AlarmMetric,
    pub threshold: f64,
    pub hysteresis: f64,
    pub min_frames: usize,
    pub active: bool,
    /// Last value judged.
    pub value: Option<f64>,
    /// Number of times it fired.
    pub fired: u64,
}

impl Alarm {
    pub fn new(metric: AlarmMetric, threshold: f64, hysteresis: f64, min_frames: usize) -> Self {
        Alarm {
            metric,
            threshold,
            hysteresis,
            min_frames: min_frames.max(1),
            active: false,
            value: None,
            fired: 0,
        }
    }

    /// Judge a window; returns `Some(new state)` when the state changes.
    pub fn update(&mut self, w: &Pooled) -> Option<bool> {
        if w.frames < self.min_frames {
            return None;
        }
        let v = w.metric(self.metric)?;
        self.value = Some(v);
        let good = self.metric.higher_is_better();
        let bad = if good {
            v < self.threshold
        } else {
            v > self.threshold
        };
        let recovered = if good {
            v >= self.threshold + self.hysteresis
        } else {
            v <= self.threshold - self.hysteresis
        };
        if !self.active && bad {
            self.active = true;
            self.fired += 1;
            Some(true)
        } else if self.active && recovered {
            self.active = false;
            Some(false)
        } else {
            None
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "active": self.active,
            "metric": self.metric.name(),
            "value": self.value.map(round),
            "threshold": self.threshold,
            "hysteresis": self.hysteresis,
            "fired": self.fired,
        })
    }
}

/// The last `size` comparisons, their EWMA and the alarm.
pub struct Window {
    pub size: usize,
    pub items: VecDeque<FrameComparison>,
    pub ewma: Ewma,
    pub alarm: Alarm,
}

impl Window {
    pub fn new(size: usize, ewma_alpha: f64, alarm: Alarm) -> Self {
        Window {
            size: size.max(1),
            items: VecDeque::with_capacity(size.max(1)),
            ewma: Ewma::new(ewma_alpha),
            alarm,
        }
    }

    /// Add a comparison; returns the pooled window and the alarm transition.
    pub fn push(&mut self, c: FrameComparison) -> (Pooled, Option<bool>) {
        self.ewma.update(&c);
        if self.items.len() == self.size {
            self.items.pop_front();
        }
        self.items.push_back(c);
        let pooled = Pooled::of(self.items.iter());
        let change = self.alarm.update(&pooled);
        (pooled, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, agree: bool) -> FrameComparison {
        let d = |c: usize, x: f32| Detection {
            class_id: c,
            label: format!("L{c}").into(),
            score: 0.9,
            bbox: crate::postprocess::NormBox([0.0, x, 0.4, x + 0.3]),
        };
        let truth = vec![d(1, 0.0), d(2, 0.5)];
        let pred = if agree {
            truth.clone()
        } else {
            vec![d(3, 0.0)]
        };
        FrameComparison::new(seq, pred, truth, 0.5, vec![])
    }

    #[test]
    fn alarm_fires_and_clears_with_hysteresis() {
        let alarm = Alarm::new(AlarmMetric::F1, 0.5, 0.2, 2);
        let mut w = Window::new(4, 0.5, alarm);
        // Good frames: no alarm.
        for s in 0..4 {
            let (p, ch) = w.push(frame(s, true));
            assert_eq!(p.f1, 1.0);
            assert_eq!(ch, None);
        }
        // Bad frames: pooled F1 = 2TP / (2TP + FP + FN) falls to 0.8, 0.57, 0.31.
        let (p, ch) = w.push(frame(4, false));
        assert!((p.f1 - 0.8).abs() < 1e-9, "{}", p.f1);
        assert_eq!(ch, None);
        w.push(frame(5, false));
        let (p, ch) = w.push(frame(6, false));
        assert!(p.f1 < 0.5, "{}", p.f1);
        assert_eq!(ch, Some(true));
        assert!(w.alarm.active);
        // One good frame lifts F1 above 0.5 but not above 0.7: stays on.
        w.push(frame(7, true));
        let (p, ch) = w.push(frame(8, true));
        assert!(p.f1 > 0.5 && p.f1 < 0.7, "{}", p.f1);
        assert_eq!(ch, None);
        assert!(w.alarm.active);
        let (p, ch) = w.push(frame(9, true));
        assert!(p.f1 >= 0.7, "{}", p.f1);
        assert_eq!(ch, Some(false));
        assert_eq!(w.alarm.fired, 1);
        assert_eq!(w.items.len(), 4);
        // EWMA follows the per-frame F1.
        assert!(w.ewma.values["f1"] > 0.8);
    }

    #[test]
    fn flip_rate_alarm_is_reversed() {
        let mut a = Alarm::new(AlarmMetric::ClassFlipRate, 0.2, 0.1, 1);
        let p = Pooled {
            frames: 1,
            class_flip_rate: Some(0.5),
            ..Default::default()
        };
        assert_eq!(a.update(&p), Some(true));
        let p = Pooled {
            frames: 1,
            class_flip_rate: Some(0.15),
            ..Default::default()
        };
        assert_eq!(a.update(&p), None);
        let p = Pooled {
            frames: 1,
            class_flip_rate: Some(0.05),
            ..Default::default()
        };
        assert_eq!(a.update(&p), Some(false));
        assert!(AlarmMetric::parse("nope").is_err());
        for n in AlarmMetric::NAMES {
            assert_eq!(AlarmMetric::parse(n).unwrap().name(), *n);
        }
    }
}
