//! Explaining a miss: the nearest recorded request by structural distance, and a field-level
//! diff that a person can read in a test failure.

use std::fmt::Write as _;

use serde_json::Value;

use crate::cassette::{Interaction, RecordedRequest};
use crate::matching::Matcher;
use crate::redact::push_key;

/// One field that differs between a recorded request and the actual one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// JSON path into the request, e.g. `$.body.json.messages[1].content`.
    pub path: String,
    /// The recorded value, rendered and truncated; `None` when the field was not recorded.
    pub recorded: Option<String>,
    /// The actual value, rendered and truncated; `None` when the request lacks the field.
    pub actual: Option<String>,
}

/// The recorded request closest to `actual`, and how it differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nearest {
    /// Position of the interaction in the cassette.
    pub index: usize,
    /// Its key.
    pub key: String,
    /// Its one-line summary (`POST openai /chat/completions`).
    pub summary: String,
    /// The fields that differ.
    pub differences: Vec<Difference>,
}

/// Differences beyond this many are counted, not listed.
const MAX_LISTED: usize = 12;
const WINDOW_BEFORE: usize = 30;
const WINDOW_AFTER: usize = 70;

/// Finds the recorded request with the fewest differing fields; a different upstream, method
/// or path weighs more than any number of body differences.
pub fn nearest(actual: &RecordedRequest, interactions: &[Interaction], matcher: &Matcher) -> Option<Nearest> {
    let actual_value = serde_json::to_value(matcher.view(actual)).ok()?;
    interactions
        .iter()
        .enumerate()
        .filter_map(|(index, interaction)| {
            let recorded = serde_json::to_value(matcher.view(&interaction.request)).ok()?;
            let mut differences = Vec::new();
            diff(&recorded, &actual_value, &mut String::from("$"), &mut differences);
            let weight = differences
                .iter()
                .map(|d| if ENDPOINT_FIELDS.contains(&d.path.as_str()) { 10_000 } else { 1 })
                .sum::<usize>();
            Some((weight, index, interaction, differences))
        })
        .min_by_key(|(weight, index, ..)| (*weight, *index))
        .map(|(_, index, interaction, differences)| Nearest {
            index,
            key: interaction.key.clone(),
            summary: interaction.request.summary(),
            differences,
        })
}

/// The fields that decide which endpoint a request goes to.
pub const ENDPOINT_FIELDS: [&str; 3] = ["$.method", "$.path", "$.upstream"];

/// The differing fields of two requests.
pub fn differences(recorded: &RecordedRequest, actual: &RecordedRequest) -> Vec<Difference> {
    let mut out = Vec::new();
    if let (Ok(a), Ok(b)) = (serde_json::to_value(recorded), serde_json::to_value(actual)) {
        diff(&a, &b, &mut String::from("$"), &mut out);
    }
    out
}

/// Collects every leaf where `recorded` and `actual` differ.
pub fn diff(recorded: &Value, actual: &Value, path: &mut String, out: &mut Vec<Difference>) {
    match (recorded, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let len = path.len();
                push_key(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, path, out),
                    (x, y) => {
                        out.push(Difference { path: path.clone(), recorded: x.map(render), actual: y.map(render) })
                    }
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff(x, y, path, out),
                    (x, y) => {
                        out.push(Difference { path: path.clone(), recorded: x.map(render), actual: y.map(render) })
                    }
                }
                path.truncate(len);
            }
        }
        (Value::String(a), Value::String(b)) if a != b => {
            let (a, b) = excerpt_pair(a, b);
            out.push(Difference { path: path.clone(), recorded: Some(a), actual: Some(b) });
        }
        (a, b) if crate::cassette::canonical::canonical_json(a) != crate::cassette::canonical::canonical_json(b) => {
            out.push(Difference { path: path.clone(), recorded: Some(render(a)), actual: Some(render(b)) })
        }
        _ => {}
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => quoted_start(s, WINDOW_BEFORE + WINDOW_AFTER),
        other => {
            let text = other.to_string();
            let count = text.chars().count();
            if count > WINDOW_BEFORE + WINDOW_AFTER {
                format!("{}… ({count} chars)", truncate_chars(&text, WINDOW_BEFORE + WINDOW_AFTER))
            } else {
                text
            }
        }
    }
}

/// `text` as a JSON string, cut after `max` characters with `…` marking the cut.
pub(crate) fn quoted_start(text: &str, max: usize) -> String {
    quote(&truncate_chars(text, max), false, text.chars().count() > max)
}

fn truncate_chars(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

fn quote(text: &str, cut_before: bool, cut_after: bool) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    format!("{}{quoted}{}", if cut_before { "…" } else { "" }, if cut_after { "…" } else { "" })
}

/// Both strings cut to a window around their first difference, so a one-word change in a long
/// prompt shows up without printing the whole prompt.
fn excerpt_pair(a: &str, b: &str) -> (String, String) {
    let first_diff = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let start = first_diff.saturating_sub(WINDOW_BEFORE);
    let excerpt = |s: &str| {
        let total = s.chars().count();
        let end = (first_diff + WINDOW_AFTER).min(total);
        let window: String = s.chars().skip(start).take(end.saturating_sub(start)).collect();
        quote(&window, start > 0, end < total)
    };
    (excerpt(a), excerpt(b))
}

/// A text in JSON quotes, shortened in the middle past `max` characters (keeping its start and
/// its end, which is where answers usually differ), with its length.
pub(crate) fn quote_shortened(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return quote(text, false, false);
    }
    let head: String = text.chars().take(max * 2 / 3).collect();
    let tail: String = text.chars().skip(count - max / 3).collect();
    format!("{} … {} ({count} characters)", quote(&head, false, false), quote(&tail, false, false))
}

/// Renders a diff as indented lines: path, then recorded and actual values.
pub fn render_differences(differences: &[Difference], indent: &str) -> String {
    let mut out = String::new();
    for difference in differences.iter().take(MAX_LISTED) {
        let _ = writeln!(out, "{indent}{}", difference.path);
        let _ = writeln!(out, "{indent}  recorded: {}", difference.recorded.as_deref().unwrap_or("(absent)"));
        let _ = writeln!(out, "{indent}  actual:   {}", difference.actual.as_deref().unwrap_or("(absent)"));
    }
    if differences.len() > MAX_LISTED {
        let _ = writeln!(out, "{indent}… and {} more differences", differences.len() - MAX_LISTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_strings_are_cut_around_the_first_difference() {
        let prefix = "x".repeat(500);
        let (a, b) = excerpt_pair(&format!("{prefix} in French please"), &format!("{prefix} in German please"));
        assert!(a.starts_with('…') && a.contains("French") && a.len() < 150, "{a}");
        assert!(b.contains("German"), "{b}");
    }

    #[test]
    fn diff_lists_changed_added_and_removed_fields() {
        let mut out = Vec::new();
        diff(
            &json!({"a": 1, "b": [1, 2], "c": "x"}),
            &json!({"a": 1.0, "b": [1], "d": true, "c": "y"}),
            &mut "$".to_owned(),
            &mut out,
        );
        let paths: Vec<&str> = out.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["$.b[1]", "$.c", "$.d"]);
        assert_eq!(out[0].actual, None);
        assert_eq!(out[2].recorded, None);
    }
}
