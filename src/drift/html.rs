//! The self-contained HTML page of an `edgecam evaluate` report: inline SVG
//! charts drawn here (metric over time, per-label agreement, per-layer
//! error) and tables; no scripts, no external resources.

use std::fmt::Write as _;

use serde_json::Value;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

const W: f64 = 760.0;
const H: f64 = 240.0;
const PAD_L: f64 = 48.0;
const PAD_B: f64 = 28.0;
const PAD_T: f64 = 12.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A line chart of several series over x; y range [lo, hi].
fn line_chart(
    title: &str,
    xs: &[f64],
    series: &[(&str, Vec<Option<f64>>)],
    lo: f64,
    hi: f64,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">"#,
        esc(title)
    );
    let (x0, x1) = (
        xs.first().copied().unwrap_or(0.0),
        xs.last().copied().unwrap_or(1.0),
    );
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let px = |x: f64| PAD_L + (x - x0) / span * (W - PAD_L - 10.0);
    let py = |y: f64| PAD_T + (1.0 - (y.clamp(lo, hi) - lo) / (hi - lo)) * (H - PAD_T - PAD_B);
    for k in 0..=4 {
        let y = lo + (hi - lo) * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            W - 10.0,
            PAD_L - 4.0,
            py(y) + 3.0,
            fmt_tick(y),
            y1 = py(y)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" font-size="10">{}</text><text x="{:.1}" y="{}" font-size="10" text-anchor="end">{}</text>"#,
        PAD_L,
        H - 8.0,
        fmt_tick(x0),
        W - 10.0,
        H - 8.0,
        fmt_tick(x1)
    );
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let mut d = String::new();
        let mut pen = false;
        for (x, y) in xs.iter().zip(ys) {
            match y {
                Some(y) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        px(*x),
                        py(*y)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{c}">{}</text>"#,
            PAD_L + 8.0 + 140.0 * k as f64,
            PAD_T + 12.0,
            esc(name)
        );
        if xs.len() == 1 {
            if let Some(Some(y)) = ys.first() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                    px(xs[0]),
                    py(*y)
                );
            }
        }
    }
    s.push_str("</svg></figure>\n");
    s
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Vertical bars (one per item) with a hover title; y range [lo, hi].
fn bar_chart(title: &str, items: &[(String, f64)], lo: f64, hi: f64, colour: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">"#,
        esc(title)
    );
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let n = items.len().max(1) as f64;
    let bw = (W - PAD_L - 10.0) / n;
    let py = |y: f64| PAD_T + (1.0 - (y.clamp(lo, hi) - lo) / (hi - lo)) * (H - PAD_T - PAD_B);
    for k in 0..=4 {
        let y = lo + (hi - lo) * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{PAD_L}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            W - 10.0,
            PAD_L - 4.0,
            py(y) + 3.0,
            fmt_tick(y),
            y1 = py(y)
        );
    }
    for (k, (name, v)) in items.iter().enumerate() {
        let x = PAD_L + bw * k as f64;
        let (top, bottom) = (py(*v), py(lo));
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{} — {:.2}</title></rect>"#,
            x + bw * 0.1,
            top.min(bottom),
            (bw * 0.8).max(1.0),
            (bottom - top).abs(),
            esc(name),
            v
        );
        if items.len() <= 24 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" font-size="9" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                H - 14.0,
                esc(&name.chars().take(10).collect::<String>())
            );
        }
    }
    s.push_str("</svg></figure>\n");
    s
}

/// Render the report (as produced by `Evaluator::report`).
const HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>edgecam drift report</title><style>body{font-family:sans-serif;max-width:800px;margin:1em auto;color:#222}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td.l,th.l{text-align:left}figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:4px}.alarm{color:#b00;font-weight:bold}</style></head><body>\n";

fn f4(v: &Value) -> String {
    num(v).map(|x| format!("{x:.4}")).unwrap_or("-".into())
}

/// The page of a single-model report ([`super::evaluate::Evaluator::report`]).
pub fn render(r: &Value) -> String {
    let mut h = String::from(HEAD);
    let _ = writeln!(
        h,
        "<h1>Quantization drift</h1><p><b>int8</b> {}<br><b>float</b> {}<br><b>source</b> {}</p>",
        esc(r["int8"].as_str().unwrap_or("")),
        esc(r["float"].as_str().unwrap_or("")),
        esc(r["source"].as_str().unwrap_or(""))
    );
    details(r, &mut h);
    h.push_str("</body></html>\n");
    h
}

/// The page of a report of several candidates
/// ([`super::evaluate::report_many`]): a table with a column per candidate,
/// their agreement over time in one chart, then each candidate's own sections.
pub fn render_many(r: &Value) -> String {
    let cands = r["candidates"].as_array().cloned().unwrap_or_default();
    let name = |c: &Value| c["name"].as_str().unwrap_or("").to_string();
    let mut h = String::from(HEAD);
    let _ = writeln!(
        h,
        "<h1>Quantization drift: {} int8 candidates</h1><p><b>float</b> {}<br><b>source</b> {}</p>",
        cands.len(),
        esc(r["float"].as_str().unwrap_or("")),
        esc(r["source"].as_str().unwrap_or(""))
    );
    h.push_str("<table><tr><th class=l>metric</th>");
    for c in &cands {
        let _ = write!(
            h,
            "<th title=\"{}\">{}</th>",
            esc(c["int8"].as_str().unwrap_or("")),
            esc(&name(c))
        );
    }
    h.push_str("</tr>");
    let rows = [
        "frames compared",
        "agreement F1",
        "precision",
        "recall",
        "pseudo-mAP@0.5",
        "pseudo-mAP@[.5:.95]",
        "min raw-output SQNR (dB)",
        "alarm",
    ];
    for k in rows {
        let _ = write!(h, "<tr><td class=l>{k}</td>");
        for c in &cands {
            let _ = write!(h, "<td>{}</td>", esc(&summary_cell(k, &c["summary"])));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
    if let Some(first) = cands.first() {
        let xs: Vec<f64> = first["frames"]
            .as_array()
            .map(|v| v.iter().map(|f| num(&f["seq"]).unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let names: Vec<String> = cands.iter().map(name).collect();
        let series: Vec<(&str, Vec<Option<f64>>)> = cands
            .iter()
            .zip(&names)
            .map(|(c, n)| {
                let ys = c["frames"]
                    .as_array()
                    .map(|v| v.iter().map(|f| num(&f["window_f1"])).collect())
                    .unwrap_or_default();
                (n.as_str(), ys)
            })
            .collect();
        h.push_str(&line_chart(
            "F1 window over time per candidate (x: frame number)",
            &xs,
            &series,
            0.0,
            1.0,
        ));
    }
    for c in &cands {
        let _ = writeln!(
            h,
            "<h2>{}</h2><p><b>int8</b> {}</p>",
            esc(&name(c)),
            esc(c["int8"].as_str().unwrap_or(""))
        );
        details(c, &mut h);
    }
    h.push_str("</body></html>\n");
    h
}

/// One cell of [`render_many`]'s summary table: `row` of a candidate's `summary`.
fn summary_cell(row: &str, sum: &Value) -> String {
    match row {
        "frames compared" => sum["frames"].to_string(),
        "agreement F1" => f4(&sum["f1"]),
        "precision" => f4(&sum["precision"]),
        "recall" => f4(&sum["recall"]),
        "pseudo-mAP@0.5" => f4(&sum["map50"]),
        "pseudo-mAP@[.5:.95]" => f4(&sum["map50_95"]),
        "min raw-output SQNR (dB)" => sum["sqnr_db"]
            .as_object()
            .and_then(|m| m.values().filter_map(num).min_by(|a, b| a.total_cmp(b)))
            .map_or("-".into(), |v| format!("{v:.4}")),
        "alarm" => match sum["alarm"]["first_fired_after_frames"].as_u64() {
            Some(k) => format!("fired after {k} frames"),
            None => "not fired".into(),
        },
        _ => "-".into(),
    }
}

/// A single-model report's sections: summary table, charts over time,
/// per-label and per-layer views.
fn details(r: &Value, h: &mut String) {
    let sum = &r["summary"];
    let f = f4;
    h.push_str("<table><tr><th class=l>metric</th><th>value</th></tr>");
    for (k, v) in [
        ("frames compared", sum["frames"].to_string()),
        ("agreement F1", f(&sum["f1"])),
        ("precision", f(&sum["precision"])),
        ("recall", f(&sum["recall"])),
        ("pseudo-mAP@0.5", f(&sum["map50"])),
        ("pseudo-mAP@[.5:.95]", f(&sum["map50_95"])),
        ("mean IoU of matches", f(&sum["mean_iou"])),
        ("class flip rate", f(&sum["class_flip_rate"])),
        ("score delta mean", f(&sum["score_delta"]["mean"])),
        ("score delta p95", f(&sum["score_delta"]["p95"])),
    ] {
        let _ = write!(h, "<tr><td class=l>{k}</td><td>{v}</td></tr>");
    }
    if let Some(m) = sum["sqnr_db"].as_object() {
        for (k, v) in m {
            let _ = write!(
                h,
                "<tr><td class=l>SQNR {} (dB)</td><td>{}</td></tr>",
                esc(k),
                f(v)
            );
        }
    }
    let alarm = &sum["alarm"];
    let _ = writeln!(
        h,
        "<tr><td class=l>alarm ({} vs {})</td><td class=\"{}\">{}</td></tr></table>",
        esc(alarm["metric"].as_str().unwrap_or("")),
        alarm["threshold"],
        if alarm["fired"].as_bool() == Some(true) {
            "alarm"
        } else {
            ""
        },
        match alarm["first_fired_after_frames"].as_u64() {
            Some(k) => format!("fired after {k} frames"),
            None => "not fired".into(),
        }
    );

    // Metric over time.
    let frames = r["frames"].as_array().cloned().unwrap_or_default();
    let xs: Vec<f64> = frames
        .iter()
        .map(|v| num(&v["seq"]).unwrap_or(0.0))
        .collect();
    let col = |k: &str| -> Vec<Option<f64>> { frames.iter().map(|v| num(&v[k])).collect() };
    h.push_str(&line_chart(
        "Agreement over time (x: frame number)",
        &xs,
        &[
            ("F1 per frame", col("f1")),
            ("F1 window", col("window_f1")),
            ("pseudo-mAP@0.5 window", col("window_map50")),
        ],
        0.0,
        1.0,
    ));
    let mut sq_series: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    if let Some(first) = frames.first().and_then(|v| v["sqnr_db"].as_object()) {
        for name in first.keys() {
            sq_series.push((
                format!("SQNR {}", name.rsplit('/').next().unwrap_or(name)),
                frames.iter().map(|v| num(&v["sqnr_db"][name])).collect(),
            ));
        }
    }
    let all: Vec<f64> = sq_series
        .iter()
        .flat_map(|s| s.1.iter().flatten().copied())
        .collect();
    let (lo, hi) = (
        all.iter().copied().fold(f64::INFINITY, f64::min).min(0.0),
        all.iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(10.0),
    );
    let refs: Vec<(&str, Vec<Option<f64>>)> = sq_series
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    h.push_str(&line_chart(
        "Raw-output SQNR over time (dB)",
        &xs,
        &refs,
        lo,
        hi.ceil(),
    ));

    // Per-label agreement.
    let labels = r["labels"].as_array().cloned().unwrap_or_default();
    let items: Vec<(String, f64)> = labels
        .iter()
        .filter(|l| l["float"].as_u64().unwrap_or(0) > 0)
        .map(|l| {
            (
                l["label"].as_str().unwrap_or("").to_string(),
                num(&l["recall"]).unwrap_or(0.0),
            )
        })
        .collect();
    h.push_str(&bar_chart(
        "Per-label agreement: share of the float model's objects the int8 model also finds",
        &items,
        0.0,
        1.0,
        "#2ca02c",
    ));
    h.push_str("<table><tr><th class=l>label</th><th>float</th><th>int8</th><th>matched</th><th>recall</th><th>precision</th></tr>");
    for l in &labels {
        let _ = write!(
            h,
            "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(l["label"].as_str().unwrap_or("")),
            l["float"],
            l["int8"],
            l["matched"],
            f(&l["recall"]),
            f(&l["precision"])
        );
    }
    h.push_str("</table>\n");

    // Per-layer error.
    let layers = r["layers"].as_array().cloned().unwrap_or_default();
    if !layers.is_empty() {
        let items: Vec<(String, f64)> = layers
            .iter()
            .enumerate()
            .map(|(k, l)| {
                (
                    format!(
                        "{k}: {}",
                        super::evaluate::short_name(l["name"].as_str().unwrap_or(""))
                    ),
                    num(&l["sqnr_db"]).unwrap_or(0.0),
                )
            })
            .collect();
        let hi = items.iter().map(|x| x.1).fold(10.0f64, f64::max).ceil();
        let lo = items.iter().map(|x| x.1).fold(0.0f64, f64::min).floor();
        h.push_str(&bar_chart(
            "Per-layer SQNR in execution order (dB; low = this tensor lost accuracy; hover for names)",
            &items,
            lo,
            hi,
            "#1f77b4",
        ));
        h.push_str("<table><tr><th>#</th><th class=l>op</th><th class=l>tensor</th><th>SQNR dB</th><th>RMSE / scale</th><th>cosine</th></tr>");
        for (k, l) in layers.iter().enumerate() {
            let _ = write!(
                h,
                "<tr><td>{k}</td><td class=l>{}</td><td class=l title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(l["op"].as_str().unwrap_or("")),
                esc(l["name"].as_str().unwrap_or("")),
                esc(super::evaluate::short_name(l["name"].as_str().unwrap_or(""))),
                f(&l["sqnr_db"]),
                f(&l["rmse_scaled"]),
                f(&l["cosine"])
            );
        }
        h.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_self_contained_page_with_charts() {
        let r = serde_json::json!({
            "int8": "a<b.tflite", "float": "f.tflite", "source": "clip",
            "summary": {"frames": 2, "f1": 0.75, "precision": 1.0, "recall": 0.6, "map50": 0.7,
                "map50_95": 0.5, "sqnr_db": {"raw_outputs/box_encodings": 20.0},
                "score_delta": {"mean": 0.01, "p95": 0.02},
                "alarm": {"metric": "f1", "threshold": 0.5, "fired": false}},
            "frames": [
                {"seq": 1, "f1": 1.0, "window_f1": 1.0, "window_map50": 1.0, "sqnr_db": {"raw_outputs/box_encodings": 21.0}},
                {"seq": 5, "f1": 0.5, "window_f1": 0.75, "window_map50": 0.7, "sqnr_db": {"raw_outputs/box_encodings": 19.0}}
            ],
            "labels": [{"label": "Person", "float": 5, "int8": 3, "matched": 3, "recall": 0.6, "precision": 1.0}],
            "layers": [{"name": "conv0;x", "op": "CONV_2D", "sqnr_db": 30.0, "rmse_scaled": 0.3, "cosine": 0.99},
                       {"name": "conv1", "op": "CONV_2D", "sqnr_db": 5.0, "rmse_scaled": 4.0, "cosine": 0.8}],
        });
        let h = render(&r);
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("a&lt;b.tflite"));
        assert_eq!(h.matches("<svg").count(), 4);
        assert!(
            !h.contains("<script") && !h.contains("http://")
                || h.matches("http://").count()
                    == h.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(h.contains("Person"));
        assert!(h.contains("conv1"));
        assert!(h.contains("<path d=\"M"));
    }
}
