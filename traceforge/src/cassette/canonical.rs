//! The canonical request: the one form of a request that matching, hashing and storage share.
//! Secrets are scrubbed first, so a scrubbed request always finds its recording.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Body, RecordedRequest};
use crate::redact::Scrubber;

/// The parts of an incoming request the recorder turns into a [`RecordedRequest`].
pub(crate) struct RawRequest<'a> {
    pub method: &'a str,
    pub upstream: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Builds the canonical, scrubbed form of a request.
pub(crate) fn canonical_request(
    raw: &RawRequest<'_>,
    match_headers: &[String],
    scrubber: &Scrubber,
) -> RecordedRequest {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(q) = raw.query {
        for (name, value) in form_urlencoded::parse(q.as_bytes()) {
            if !scrubber.is_secret_query_param(&name) {
                query.entry(name.into_owned()).or_default().push(value.into_owned());
            }
        }
    }
    let mut headers = BTreeMap::new();
    for name in match_headers {
        let values: Vec<&str> = raw.headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() && !scrubber.is_secret_header(name) {
            headers.insert(name.to_ascii_lowercase(), values.join(", "));
        }
    }
    let content_type = raw.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut request = RecordedRequest {
        method: raw.method.to_ascii_uppercase(),
        upstream: raw.upstream.to_owned(),
        path: normalise_path(raw.path),
        query,
        headers,
        body: Body::from_request_bytes(content_type, raw.body),
    };
    scrubber.scrub_request(&mut request);
    request
}

/// `/v1//chat/completions/` and `/v1/chat/completions` are the same endpoint.
fn normalise_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// The request key: sha256 (hex) of the canonical JSON of the request.
pub fn request_key(request: &RecordedRequest) -> String {
    let value = serde_json::to_value(request).unwrap_or(Value::Null);
    let mut text = String::with_capacity(256);
    write_canonical(&value, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Canonical JSON: object keys sorted, no whitespace, and numbers normalised so that `1`,
/// `1.0` and `1e0` are the same.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    let _ = write!(out, "{}", f as i64);
                } else {
                    let _ = write!(out, "{f:?}");
                }
            }
        }
        Value::String(s) => {
            let _ = write!(out, "{}", Value::String(s.clone()));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String(key.clone()));
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// The same value with every object's keys in sorted order, whatever map type serde_json was
/// built with (`preserve_order` keeps insertion order, so we insert in sorted order).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (key, item) in entries {
                out.insert(key, sorted(item));
            }
            Value::Object(out)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> RecordedRequest {
        RecordedRequest::new("POST", "openai", "/chat/completions", Body::Json { json: body.into() })
    }

    #[test]
    fn key_ignores_key_order_and_number_spelling() {
        let a: Value =
            serde_json::from_str(r#"{"model":"m","temperature":1,"messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"messages":[{"content":"hi","role":"user"}],"temperature":1.0,"model":"m"}"#)
                .unwrap_or_default();
        assert_eq!(request_key(&request(a)), request_key(&request(b)));
    }

    #[test]
    fn key_changes_with_content() {
        assert_ne!(request_key(&request(json!({"a": "x"}))), request_key(&request(json!({"a": "y"}))));
    }

    #[test]
    fn canonical_json_is_compact_and_sorted() {
        assert_eq!(
            canonical_json(&json!({"b": [1, 2.5], "a": {"d": null, "c": "é\""}})),
            r#"{"a":{"c":"é\"","d":null},"b":[1,2.5]}"#
        );
    }

    #[test]
    fn scrubs_secret_query_parameters_and_keeps_the_rest() {
        let headers = http::HeaderMap::new();
        let raw = RawRequest {
            method: "post",
            upstream: "gemini",
            path: "/v1beta//models/x:generateContent/",
            query: Some("key=AIzaSECRET&alt=sse"),
            headers: &headers,
            body: b"",
        };
        let request = canonical_request(&raw, &[], &Scrubber::default());
        assert_eq!(request.path, "/v1beta/models/x:generateContent");
        assert_eq!(request.method, "POST");
        assert_eq!(request.query.get("alt"), Some(&vec!["sse".to_owned()]));
        assert!(!request.query.contains_key("key"));
    }
}
