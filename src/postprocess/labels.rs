//! Label names as subscribers see them: a model's label map says "Person" or "Computer mouse";
//! topics and payloads carry the slug (`person`, `computer_mouse`), as Frigate's do, and the
//! display name is kept for Home Assistant's entity names. Configured label names (filters,
//! thresholds, Home Assistant's list) are checked against the model's map at start.

/// `label` as it appears in topics and payloads: lower-case ASCII letters and digits, `_` for
/// anything else ("Computer mouse" → `computer_mouse`, "C++" → `c__`). Never empty.
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Whether a label map entry names a real class (not a placeholder such as `???` or
/// `background`).
pub fn is_real(label: &str) -> bool {
    !label.is_empty() && label != "???" && label != "background"
}

/// The real labels of a model's map, as (slug, display name), in map order, each slug once.
pub fn of_model(labels: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in labels.iter().filter(|l| is_real(l)) {
        let s = slug(l);
        if !out.iter().any(|(k, _)| *k == s) {
            out.push((s, l.clone()));
        }
    }
    out
}

/// The model label `name` refers to (by display name or slug, any case): its slug. Otherwise
/// an error that names the closest label.
pub fn resolve(name: &str, model: &[(String, String)]) -> Result<String, String> {
    let s = slug(name.trim());
    if model.iter().any(|(k, _)| *k == s) {
        return Ok(s);
    }
    let closest = model
        .iter()
        .min_by_key(|(k, _)| edit_distance(&s, k))
        .map(|(k, _)| k.as_str());
    Err(match closest {
        Some(c) => format!("unknown label '{name}' (did you mean '{c}'?)"),
        None => format!("unknown label '{name}': the model has no labels"),
    })
}

/// Levenshtein distance over bytes (slugs are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Vec<(String, String)> {
        of_model(&[
            "???".into(),
            "Person".into(),
            "Computer mouse".into(),
            "Car".into(),
            "background".into(),
        ])
    }

    #[test]
    fn slugs_are_lower_case_topic_safe_and_never_empty() {
        assert_eq!(slug("Person"), "person");
        assert_eq!(slug("Computer mouse"), "computer_mouse");
        assert_eq!(slug("C++/#"), "c____");
        assert_eq!(slug("Café"), "caf_");
        assert_eq!(slug(""), "_");
    }

    #[test]
    fn the_model_map_keeps_real_labels_with_their_display_names() {
        assert_eq!(
            model(),
            [
                ("person".to_string(), "Person".to_string()),
                ("computer_mouse".into(), "Computer mouse".into()),
                ("car".into(), "Car".into()),
            ]
        );
    }

    #[test]
    fn names_resolve_by_display_name_or_slug_and_errors_suggest_the_closest() {
        let m = model();
        assert_eq!(resolve("Person", &m).unwrap(), "person");
        assert_eq!(resolve("person", &m).unwrap(), "person");
        assert_eq!(resolve("computer mouse", &m).unwrap(), "computer_mouse");
        assert_eq!(resolve("COMPUTER_MOUSE", &m).unwrap(), "computer_mouse");
        let e = resolve("persn", &m).unwrap_err();
        assert!(
            e.contains("'persn'") && e.contains("did you mean 'person'"),
            "{e}"
        );
        let e = resolve("cars", &m).unwrap_err();
        assert!(e.contains("did you mean 'car'"), "{e}");
        assert!(resolve("dog", &[]).unwrap_err().contains("no labels"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
