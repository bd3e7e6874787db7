//! The canonical request: the one form of a request that matching, hashing and storage share.
//! Secrets are scrubbed first, so a scrubbed request always finds its recording.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::json::write_str;
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
    // Most paths are already in this form.
    if path.starts_with('/') && !path.contains("//") && (path.len() == 1 || !path.ends_with('/')) {
        return if path.len() == 1 { "/".to_owned() } else { path.to_owned() };
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// The request key: sha256 (hex) of the canonical JSON of the request.
pub fn request_key(request: &RecordedRequest) -> String {
    let mut text = Vec::with_capacity(512);
    write_request(request, &mut text);
    sha256_hex(&text)
}

/// sha256 of `bytes`, as 64 lowercase hex digits.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// The canonical JSON of the request as it serializes (fields omitted in the file are absent),
/// written field by field rather than through a `Value` copy of the whole request.
fn write_request(request: &RecordedRequest, out: &mut Vec<u8>) {
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &str| {
        out.push(if std::mem::take(&mut first) { b'{' } else { b',' });
        write_str(out, name);
        out.push(b':');
    };
    // Sorted: body, headers, method, path, query, upstream.
    match &request.body {
        Body::Empty => {}
        Body::Json { json } => {
            field(out, "body");
            out.extend_from_slice(br#"{"json":"#);
            write_canonical(json, out);
            out.extend_from_slice(br#","kind":"json"}"#);
        }
        other => {
            field(out, "body");
            write_canonical(&serde_json::to_value(other).unwrap_or(Value::Null), out);
        }
    }
    if !request.headers.is_empty() {
        field(out, "headers");
        write_object(out, request.headers.iter(), |out, value| write_str(out, value));
    }
    field(out, "method");
    write_str(out, &request.method);
    field(out, "path");
    write_str(out, &request.path);
    if !request.query.is_empty() {
        field(out, "query");
        write_object(out, request.query.iter(), |out, values| {
            write_array(out, values, |out, value| write_str(out, value))
        });
    }
    field(out, "upstream");
    write_str(out, &request.upstream);
    out.push(b'}');
}

/// A JSON object of `entries`, given in sorted order, each value written by `value`.
fn write_object<'a, V: 'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a String, &'a V)>,
    mut value: impl FnMut(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (name, item)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        value(out, item);
    }
    out.push(b'}');
}

/// A JSON array of `items`, each written by `item`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, each) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, each);
    }
    out.push(b']');
}

/// Canonical JSON: object keys sorted, no whitespace, and numbers normalised so that `1`,
/// `1.0` and `1e0` are the same.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    use std::io::Write as _;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            // Writing to a Vec cannot fail.
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
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_array(out, items, |out, item| write_canonical(item, out)),
        Value::Object(map) => {
            let value = |out: &mut Vec<u8>, item: &Value| write_canonical(item, out);
            // Already in order unless serde_json keeps insertion order (`preserve_order`).
            if map.keys().is_sorted() {
                write_object(out, map.iter(), value);
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_object(out, entries.into_iter(), value);
            }
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

    /// The key as it was first defined: the canonical JSON of the whole request as a `Value`.
    fn key_through_a_value(request: &RecordedRequest) -> String {
        sha256_hex(canonical_json(&serde_json::to_value(request).unwrap_or(Value::Null)).as_bytes())
    }

    #[test]
    fn the_key_is_the_hash_of_the_request_serialized_as_a_value() {
        let mut full = request(json!({"b": [1, 2.0, -0.0, 1e300, "x\"\n\u{1}é"], "a": {"z": null, "y": true}}));
        full.query = BTreeMap::from([("alt".into(), vec!["sse".into(), "b\"".into()]), ("e".into(), vec![])]);
        full.headers = BTreeMap::from([("openai-beta".into(), "v2".into()), ("anthropic-version".into(), "1".into())]);
        let bodies = [
            Body::Empty,
            Body::Text { text: "t".into() },
            Body::Digest { sha256: "00".into(), size: 3 },
            Body::Sse { events: Vec::new(), complete: false, assembled: None, offsets_ms: Some(vec![1]) },
        ];
        for request in
            std::iter::once(full.clone()).chain(bodies.into_iter().map(|body| RecordedRequest { body, ..full.clone() }))
        {
            assert_eq!(request_key(&request), key_through_a_value(&request), "{request:?}");
        }
        let bare = RecordedRequest::new("GET", "ollama", "/api/tags", Body::Empty);
        assert_eq!(request_key(&bare), key_through_a_value(&bare));
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
        for (path, normal) in
            [("/", "/"), ("", "/"), ("//", "/"), ("/a", "/a"), ("/a/", "/a"), ("a//b", "/a/b"), ("/a/b", "/a/b")]
        {
            assert_eq!(normalise_path(path), normal, "{path}");
        }
        assert_eq!(request.method, "POST");
        assert_eq!(request.query.get("alt"), Some(&vec!["sse".to_owned()]));
        assert!(!request.query.contains_key("key"));
    }
}
