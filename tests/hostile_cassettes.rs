//! Hostile cassettes: truncated JSON, wrong types, a future version, invalid UTF-8, a 200 MB
//! file, deeply nested JSON and duplicate keys. Each gives a clear error that names the file,
//! in every mode that reads the cassette; none panics, and none is ever overwritten.

mod support;

use std::path::Path;
use std::time::Instant;

use support::{cassette_in, scratch};
use traceforge::cassette::storage::{self, SaveOptions};
use traceforge::cassette::CassetteFile;
use traceforge::{Mode, Recorder};

const KEY_A: &str = "890e456e7b77276c24a2be045ed43728bac5b0765ae45af956c87e058fde66d6";

fn interaction(key: &str) -> String {
    format!(
        r#"{{"key": "{key}", "request": {{"method": "POST", "upstream": "openai", "path": "/x"}}, "responses": [{{"status": 200}}]}}"#
    )
}

/// Writes `bytes`, then checks that loading fails with `expected` in a message naming the file,
/// that no mode starts on it, that a save refuses to replace it, and that its bytes never change.
fn assert_rejected(path: &Path, bytes: &[u8], expected: &[&str]) -> String {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let message = match storage::load(path) {
        Err(error) => error.to_string(),
        Ok(file) => panic!("{}: loaded a hostile cassette: {file:?}", path.display()),
    };
    assert!(message.contains(&path.display().to_string()), "the error must name the file: {message}");
    for needle in expected {
        assert!(message.contains(needle), "missing `{needle}` in: {message}");
    }
    for mode in [Mode::Record, Mode::Auto, Mode::Replay, Mode::Strict] {
        match Recorder::builder().cassette(path).force_mode(mode).start() {
            Err(error) => assert_eq!(error.to_string(), message, "{mode}"),
            Ok(_) => panic!("{mode} started on a hostile cassette {}", path.display()),
        }
    }
    let save = storage::save(path, &SaveOptions::default(), |_| CassetteFile::default());
    assert!(save.is_err(), "a save must not replace a hostile cassette");
    assert!(std::fs::read(path).map(|on_disk| on_disk == bytes).unwrap_or(false), "{} was modified", path.display());
    message
}

#[test]
fn truncated_json_wrong_types_and_future_versions_are_clear_errors() {
    let dir = scratch();
    let full = format!(r#"{{"format_version": 1, "interactions": [{}]}}"#, interaction(KEY_A));
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("empty", String::new(), vec!["is corrupt at line 1"]),
        ("truncated", full[..full.len() / 2].to_owned(), vec!["is corrupt at line 1", "EOF"]),
        ("not_an_object", "[1, 2, 3]".to_owned(), vec!["is corrupt"]),
        ("string_version", r#"{"format_version": "1", "interactions": []}"#.to_owned(), vec!["format_version \"1\""]),
        ("float_version", r#"{"format_version": 1.0, "interactions": []}"#.to_owned(), vec!["format_version 1.0"]),
        (
            "future_version",
            r#"{"format_version": 2, "interactions": [{"v2": true}]}"#.to_owned(),
            vec!["format_version 2", "upgrade traceforge"],
        ),
        ("missing_version", r#"{"interactions": []}"#.to_owned(), vec!["format_version missing"]),
        (
            "interactions_not_array",
            r#"{"format_version": 1, "interactions": {}}"#.to_owned(),
            vec!["is corrupt", "expected a sequence"],
        ),
        (
            "status_is_string",
            full.replace(r#""status": 200"#, r#""status": "200""#),
            vec!["is corrupt", "expected u16"],
        ),
        ("status_out_of_range", full.replace(r#""status": 200"#, r#""status": 70000"#), vec!["is corrupt"]),
        (
            "unknown_field",
            full.replace(r#""path": "/x""#, r#""path": "/x", "extra": 1"#),
            vec!["unknown field `extra`"],
        ),
        (
            "unknown_body_kind",
            full.replace(r#""path": "/x""#, r#""path": "/x", "body": {"kind": "xml"}"#),
            vec!["unknown variant `xml`"],
        ),
        ("bad_key", full.replace(KEY_A, "not-a-key"), vec!["is invalid", "not a lower-case sha256"]),
        ("no_responses", full.replace(r#"[{"status": 200}]"#, "[]"), vec!["is invalid", "has no responses"]),
        ("trailing_garbage", format!("{full} {{}}"), vec!["trailing characters"]),
    ];
    for (name, content, expected) in cases {
        assert_rejected(&cassette_in(&dir, name), content.as_bytes(), &expected);
    }
}

#[test]
fn invalid_utf8_is_a_clear_error() {
    let dir = scratch();
    let good = format!(r#"{{"format_version": 1, "interactions": [{}]}}"#, interaction(KEY_A));
    let mut bytes = good.into_bytes();
    // Invalid UTF-8 inside a string, and a lone byte outside any string.
    let at = bytes.windows(2).position(|w| w == b"/x").unwrap_or_else(|| panic!("no path")) + 1;
    bytes[at] = 0xff;
    assert_rejected(&cassette_in(&dir, "utf8_in_string"), &bytes, &["is corrupt", "invalid unicode code point"]);
    assert_rejected(
        &cassette_in(&dir, "utf8_outside"),
        b"\xfe{\"format_version\": 1}",
        &["is corrupt at line 1, column 1"],
    );
    // A UTF-8 byte-order mark is not JSON either.
    assert_rejected(
        &cassette_in(&dir, "bom"),
        b"\xef\xbb\xbf{\"format_version\": 1, \"interactions\": []}",
        &["is corrupt"],
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let dir = scratch();
    // The same JSON field twice: serde's derived deserializers refuse duplicates.
    assert_rejected(
        &cassette_in(&dir, "duplicate_version"),
        br#"{"format_version": 1, "format_version": 1, "interactions": []}"#,
        &["duplicate field `format_version`"],
    );
    assert_rejected(
        &cassette_in(&dir, "duplicate_interactions_field"),
        br#"{"format_version": 1, "interactions": [], "interactions": []}"#,
        &["duplicate field `interactions`"],
    );
    let duplicated_status = interaction(KEY_A).replace(r#""status": 200"#, r#""status": 200, "status": 500"#);
    assert_rejected(
        &cassette_in(&dir, "duplicate_status"),
        format!(r#"{{"format_version": 1, "interactions": [{duplicated_status}]}}"#).as_bytes(),
        &["duplicate field `status`"],
    );
    // The same interaction key twice: rejected by the integrity check.
    assert_rejected(
        &cassette_in(&dir, "duplicate_interaction_key"),
        format!(r#"{{"format_version": 1, "interactions": [{}, {}]}}"#, interaction(KEY_A), interaction(KEY_A))
            .as_bytes(),
        &["interactions[0] and interactions[1] have the same key"],
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let dir = scratch();
    let depth = 100_000;
    let deep = |open: &str, core: &str, close: &str| format!("{}{core}{}", open.repeat(depth), close.repeat(depth));
    let in_body = |json: String| {
        format!(
            r#"{{"format_version": 1, "interactions": [{}]}}"#,
            interaction(KEY_A).replace(r#""path": "/x""#, &format!(r#""path": "/x", "body": {json}"#))
        )
    };
    // Nested where the version is read, where the reader skips a value, and inside stored
    // bodies, where the parser descends: serde_json stops at 128 levels.
    for (name, content, expected) in [
        ("deep_top", deep("[", "", "]"), "recursion limit exceeded"),
        (
            "deep_version",
            format!(r#"{{"format_version": {}, "interactions": []}}"#, deep("[", "", "]")),
            "recursion limit exceeded",
        ),
        (
            "deep_skipped",
            format!(r#"{{"interactions": {}, "format_version": 1}}"#, deep("{\"a\":", "1", "}")),
            "expected a sequence",
        ),
        (
            "deep_json_body",
            in_body(format!(r#"{{"kind": "json", "json": {}}}"#, deep("[", "", "]"))),
            "recursion limit exceeded",
        ),
        (
            "deep_sse_data",
            in_body(format!(r#"{{"kind": "sse", "events": [{{"data": {}}}]}}"#, deep("{\"a\":", "1", "}"))),
            "recursion limit exceeded",
        ),
        (
            "deep_ndjson_line",
            in_body(format!(r#"{{"kind": "ndjson", "lines": [{}]}}"#, deep("[", "", "]"))),
            "recursion limit exceeded",
        ),
    ] {
        assert_rejected(&cassette_in(&dir, name), content.as_bytes(), &[expected]);
    }
    // 127 levels is within serde_json's limit of 128 and loads.
    let ok = format!(
        r#"{{"format_version": 1, "interactions": [{}]}}"#,
        interaction(KEY_A).replace(
            r#""path": "/x""#,
            &format!(r#""path": "/x", "body": {{"kind": "json", "json": {}}}"#, "[".repeat(120) + &"]".repeat(120))
        )
    );
    assert!(storage::parse(Path::new("ok.json"), ok.as_bytes()).is_ok());
}

#[test]
fn a_200_mb_cassette_is_refused_unread_and_a_large_one_still_loads() {
    let dir = scratch();
    let path = cassette_in(&dir, "huge");
    // A valid beginning and a 200 MB answer: over the 100 MiB limit, refused before parsing.
    let head = format!(
        r#"{{"format_version": 1, "interactions": [{}"#,
        interaction(KEY_A).replace(r#"[{"status": 200}]"#, r#"[{"status": 200, "body": {"kind": "text", "text": ""#)
    );
    let mut bytes = Vec::with_capacity(200 * 1024 * 1024 + head.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.resize(200 * 1024 * 1024, b'a');
    let started = Instant::now();
    let message = assert_rejected(&path, &bytes, &[&format!("is over {} bytes", storage::MAX_CASSETTE_BYTES)]);
    let elapsed = started.elapsed();
    println!("200 MB cassette rejected (load, 4 modes, 1 save) in {elapsed:?}: {message:.120}");
    drop(bytes);

    // A legitimately large cassette (a 10 MB answer) under the limit loads.
    let path = cassette_in(&dir, "large");
    let big = format!(
        r#"{{"format_version": 1, "interactions": [{}]}}"#,
        interaction(KEY_A).replace(
            r#"[{"status": 200}]"#,
            &format!(r#"[{{"status": 200, "body": {{"kind": "text", "text": "{}"}}}}]"#, "a".repeat(10 * 1024 * 1024))
        )
    );
    std::fs::write(&path, &big).unwrap_or_else(|e| panic!("{e}"));
    let file = storage::load(&path).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no cassette"));
    assert_eq!(file.interactions.len(), 1);
}
