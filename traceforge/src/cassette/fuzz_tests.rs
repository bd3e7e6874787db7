//! Property-based fuzzing of the two parsers that see untrusted input: the cassette reader
//! (`storage::parse`, fed a file from disk) and the request canonicaliser (`canonical_request`,
//! fed whatever a client sends). Neither may panic, and what the canonicaliser produces must
//! survive a save and a load with its key intact.
//!
//! Each property runs `PROPTEST_CASES` cases (256 by default) and prints how many ran:
//! `PROPTEST_CASES=100000 cargo test -p traceforge fuzz -- --nocapture`.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use super::canonical::{canonical_request, request_key, RawRequest};
use super::storage::{parse, to_pretty_json, verify_keys};
use super::{Body, CassetteFile, Interaction, RecordedResponse};
use crate::redact::Scrubber;
use crate::stream::SseEvent;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// Runs `test` on `cases()` inputs from `strategy`; returns how many ran.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u32 {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let ran = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        test(input)
    });
    if let Err(error) = result {
        panic!("{name}: {error}");
    }
    println!("fuzz {name}: {} cases", ran.get());
    assert!(ran.get() >= cases(), "{name}: only {} of {} cases ran", ran.get(), cases());
    ran.get()
}

/// Any JSON value, including floats of every magnitude and non-ASCII strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}|\\PC{0,4}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A valid cassette with one body of every kind, as the reader's starting point.
fn sample_cassette() -> String {
    let request = |body: Body| super::RecordedRequest {
        method: "POST".into(),
        upstream: "openai".into(),
        path: "/chat/completions".into(),
        query: BTreeMap::from([("alt".to_owned(), vec!["sse".to_owned()])]),
        headers: BTreeMap::from([("openai-beta".to_owned(), "assistants=v2".to_owned())]),
        body,
    };
    let bodies = [
        Body::Json { json: serde_json::json!({"model": "m", "temperature": 0.7, "n": [1, -2, 3.5e-7]}).into() },
        Body::Text { text: "plain é\u{1F600}".into() },
        Body::Binary { base64: "AJ+Slg==".into() },
        Body::Sse {
            events: vec![
                SseEvent {
                    event: Some("delta".into()),
                    data: Some(serde_json::json!({"a": 1, "key": "sk-proj-abcdefghijklmnopqrstuvwxyz"})),
                    ..SseEvent::default()
                },
                SseEvent {
                    id: Some("7".into()),
                    retry: Some(3000),
                    text: Some("[DONE]".into()),
                    ..SseEvent::default()
                },
            ],
            complete: false,
            assembled: Some(crate::provider::Assembled {
                text: "Hi".into(),
                tool_calls: vec![crate::provider::ToolCall {
                    id: Some("call_1".into()),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
            }),
            offsets_ms: Some(vec![0, 5]),
        },
        Body::Ndjson {
            lines: vec![serde_json::json!({"done": true}), Value::String("x".into())],
            complete: true,
            assembled: None,
            offsets_ms: None,
        },
        Body::Multipart {
            parts: vec![super::Part {
                content_type: Some("audio/wav".into()),
                filename: Some("a.wav".into()),
                name: Some("file".into()),
                sha256: Some("00".into()),
                size: Some(6),
                text: Some("t".into()),
            }],
        },
        Body::Digest { sha256: "ab".into(), size: 2 },
        Body::Empty,
    ];
    let interactions = bodies
        .into_iter()
        .map(|body| {
            let request = request(body.clone());
            Interaction {
                key: request_key(&request),
                request,
                responses: vec![RecordedResponse {
                    status: 200,
                    headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
                    body,
                }],
            }
        })
        .collect();
    let interactions: Vec<Interaction> = interactions;
    let order = interactions.iter().map(|i| i.key.clone()).collect();
    let key_rules = crate::matching::KeyRules { ignore_paths: vec!["$.user".into()], normalisers: Vec::new() };
    let file = CassetteFile { format_version: super::FORMAT_VERSION, interactions, order, key_rules };
    to_pretty_json(&file).map(|(_, text)| text).unwrap_or_default()
}

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, &'static str),
    Truncate(usize),
}

const TOKENS: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "null",
    "1e999",
    "-0",
    "\\u0000",
    "\\ud800",
    "\"format_version\": 2,",
    "\"kind\": \"sse\",",
    "\u{ff}",
    "18446744073709551616",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Flip(at, byte)),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), prop::sample::select(&TOKENS[..])).prop_map(|(at, token)| Edit::Insert(at, token)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Flip(at, byte) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
            }
            Edit::Delete(at, n) => {
                let start = (at % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(at, token) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, token.bytes());
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

/// How a cassette was first written: through a sorted `Value` of the whole file. The streaming
/// writer must produce exactly these bytes.
fn reference_text(file: &CassetteFile) -> Result<String, TestCaseError> {
    let value = super::canonical::sorted(serde_json::to_value(file).map_err(|e| TestCaseError::fail(e.to_string()))?);
    let text = serde_json::to_string_pretty(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(text + "\n")
}

/// A parsed cassette writes back to text that parses to the same cassette, byte for byte as
/// it was always written, and the secret scan finds there what it finds in the `Value`.
fn round_trips(file: &CassetteFile) -> Result<(), TestCaseError> {
    let (value, text) = to_pretty_json(file).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&text, &reference_text(file)?);
    prop_assert_eq!(crate::secret_scan::scan_serialized(file, &[]), crate::redact::scan(&value, &[]));
    let again = parse(Path::new("again.json"), text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&again, file);
    Ok(())
}

fn check_reader(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse(Path::new("fuzz.json"), bytes) {
        Ok(file) => round_trips(&file),
        Err(error) => {
            prop_assert!(error.to_string().contains("fuzz.json"), "the error must name the file: {}", error);
            Ok(())
        }
    }
}

#[test]
fn the_cassette_reader_never_panics_on_mutated_cassettes() {
    let sample = sample_cassette().into_bytes();
    match parse(Path::new("sample.json"), &sample) {
        Ok(file) => assert!(round_trips(&file).is_ok(), "the sample does not round-trip"),
        Err(error) => panic!("{error}"),
    }
    fuzz("reader/mutated", prop::collection::vec(edit(), 1..6), |edits| check_reader(&apply(sample.clone(), &edits)));
}

#[test]
fn the_cassette_reader_never_panics_on_arbitrary_bytes_or_json() {
    fuzz("reader/bytes", prop::collection::vec(any::<u8>(), 0..512), |bytes| check_reader(&bytes));
    let shaped = (json_value(), json_value(), json_value()).prop_map(|(version, interactions, extra)| {
        serde_json::json!({"format_version": version, "interactions": [interactions, {"key": extra}]})
    });
    fuzz("reader/json", shaped, |value| check_reader(value.to_string().as_bytes()));
}

#[derive(Debug, Clone)]
struct Raw {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn raw_request() -> impl Strategy<Value = Raw> {
    let content_type = prop_oneof![
        Just("application/json".to_owned()),
        Just("text/event-stream".to_owned()),
        Just("application/x-ndjson".to_owned()),
        Just("text/plain; charset=utf-8".to_owned()),
        Just("application/octet-stream".to_owned()),
        "\\PC{0,20}",
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(json_value(), 0..4).prop_map(|events| {
            events.iter().map(|e| format!("event: x\ndata: {e}\n\n")).collect::<String>().into_bytes()
        }),
    ];
    let header = prop_oneof![
        content_type.prop_map(|v| ("content-type".to_owned(), v.into_bytes())),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|v| ("openai-beta".to_owned(), v)),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|v| ("authorization".to_owned(), v)),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|v| ("x-custom".to_owned(), v)),
    ];
    (
        "[A-Za-z]{1,8}|\\PC{0,8}",
        "\\PC{0,40}",
        proptest::option::of("\\PC{0,60}"),
        prop::collection::vec(header, 0..5),
        body,
    )
        .prop_map(|(method, path, query, headers, body)| Raw { method, path, query, headers, body })
}

#[test]
fn the_canonicaliser_never_panics_and_its_keys_survive_a_save_and_load() {
    let scrubber = Scrubber::default();
    let match_headers = vec!["openai-beta".to_owned(), "authorization".to_owned(), "x-custom".to_owned()];
    fuzz("canonicaliser", raw_request(), |raw| {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &raw.headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        let input = RawRequest {
            method: &raw.method,
            upstream: "openai",
            path: &raw.path,
            query: raw.query.as_deref(),
            headers: &headers,
            body: &raw.body,
        };
        let request = canonical_request(&input, &match_headers, &scrubber);
        let key = request_key(&request);
        prop_assert_eq!(key.len(), 64);
        prop_assert_eq!(&key, &request_key(&canonical_request(&input, &match_headers, &scrubber)), "deterministic");
        // The key written field by field is the key of the request serialized as a whole.
        let as_value = serde_json::to_value(&request).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&key, &super::canonical::sha256_hex(super::canonical::canonical_json(&as_value).as_bytes()));
        prop_assert!(!request.headers.contains_key("authorization"), "a secret header was kept");
        prop_assert!(request.path.starts_with('/') && !request.path.contains("//"));

        // Stored and read back, the request still hashes to the key it was recorded under.
        let file = CassetteFile {
            format_version: super::FORMAT_VERSION,
            interactions: vec![Interaction {
                key: key.clone(),
                request,
                responses: vec![RecordedResponse { status: 200, headers: BTreeMap::new(), body: Body::Empty }],
            }],
            ..CassetteFile::default()
        };
        let (_, text) = to_pretty_json(&file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let loaded =
            parse(Path::new("canonical.json"), text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        verify_keys(Path::new("canonical.json"), &loaded, &crate::matching::Matcher::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&loaded, &file);
        Ok(())
    });
}

/// Writes `value` as JSON with every object's keys in reverse order and extra whitespace.
fn write_reversed(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push_str("[ ");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,\n");
                }
                write_reversed(item, out);
            }
            out.push_str(" ]");
        }
        Value::Object(map) => {
            out.push_str("{ ");
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| b.0.cmp(a.0));
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,\t");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(" : ");
                write_reversed(item, out);
            }
            out.push_str(" }");
        }
        other => out.push_str(&other.to_string()),
    }
}

#[test]
fn the_key_ignores_json_key_order_and_whitespace() {
    let scrubber = Scrubber::default();
    let headers = {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        headers
    };
    let object = prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    fuzz("canonicaliser/json-order", object, |value| {
        let compact = value.to_string();
        let mut reversed = String::new();
        write_reversed(&value, &mut reversed);
        let key = |body: &str| {
            let raw = RawRequest {
                method: "POST",
                upstream: "openai",
                path: "/x",
                query: None,
                headers: &headers,
                body: body.as_bytes(),
            };
            request_key(&canonical_request(&raw, &[], &scrubber))
        };
        prop_assert_eq!(key(&compact), key(&reversed), "{} vs {}", compact, reversed);
        Ok(())
    });
}

/// The float the canonicaliser property found: without serde_json's `float_roundtrip`, it read
/// back one ULP off and the stored request no longer hashed to its key.
#[test]
fn a_float_reads_back_exactly_and_keeps_its_key() {
    let body = br#"[{"":1.5999572268667601e-10}]"#;
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let raw = RawRequest { method: "POST", upstream: "openai", path: "/x", query: None, headers: &headers, body };
    let request = canonical_request(&raw, &[], &Scrubber::default());
    let key = request_key(&request);
    let response = RecordedResponse { status: 200, headers: BTreeMap::new(), body: Body::Empty };
    let file = CassetteFile {
        format_version: super::FORMAT_VERSION,
        interactions: vec![Interaction { key, request, responses: vec![response] }],
        ..CassetteFile::default()
    };
    let text = to_pretty_json(&file).map(|(_, text)| text).unwrap_or_default();
    let loaded = parse(Path::new("float.json"), text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    verify_keys(Path::new("float.json"), &loaded, &crate::matching::Matcher::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, file);
}

#[test]
fn a_stored_document_replays_as_the_bytes_its_value_serializes_to() {
    // Read from pretty text (as saved), compact text, and text with keys reversed (hand-edited):
    // the compact form is what `serde_json::to_vec` writes for the value, whatever the spelling.
    fuzz("json/compact", json_value(), |value| {
        let expected = serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut reversed = String::new();
        write_reversed(&value, &mut reversed);
        let pretty = serde_json::to_string_pretty(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for text in [pretty, value.to_string(), reversed] {
            let json: super::Json = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&json.compact()[..], &expected[..], "{}", text);
            prop_assert_eq!(json.value(), &value);
        }
        Ok(())
    });
}
