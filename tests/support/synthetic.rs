//! Synthetic cassettes of known content, shared by the crash test and its helper binary
//! (`tests/bin/stress.rs` includes this file), so both agree on what each version holds.

use std::collections::BTreeMap;

use traceforge::cassette::{canonical, Body, CassetteFile, Interaction, RecordedRequest, RecordedResponse};

/// Versions cycle through 1..=MAX_VERSION interactions.
pub const MAX_VERSION: usize = 24;

/// The version a save writes after `current` (the number of interactions on disk).
pub fn next(current: usize) -> usize {
    current % MAX_VERSION + 1
}

/// Version `n`: `n` interactions, each with an answer of about 1 KiB that names the version,
/// so two versions never share bytes and a save of one takes long enough to be interrupted.
pub fn version(n: usize) -> CassetteFile {
    let mut interactions: Vec<Interaction> = (0..n)
        .map(|i| {
            let request = RecordedRequest {
                method: "POST".into(),
                upstream: "openai".into(),
                path: "/chat/completions".into(),
                query: BTreeMap::new(),
                headers: BTreeMap::new(),
                body: Body::Json {
                    json: serde_json::json!({"model": "m", "messages": [{"role": "user", "content": format!("question {i}")}]}).into(),
                },
            };
            let key = canonical::request_key(&request);
            let text = format!("answer {i} of version {n}: {}", "lorem ipsum ".repeat(85));
            let response = RecordedResponse { status: 200, headers: BTreeMap::new(), body: Body::Text { text } };
            Interaction { key, request, responses: vec![response] }
        })
        .collect();
    interactions.sort_by(|a, b| a.key.cmp(&b.key));
    CassetteFile { format_version: traceforge::cassette::FORMAT_VERSION, interactions, ..CassetteFile::default() }
}

/// The exact bytes `storage::save` writes for version `n`.
pub fn version_bytes(n: usize) -> Vec<u8> {
    match traceforge::cassette::storage::to_pretty_json(&version(n)) {
        Ok((_, text)) => text.into_bytes(),
        Err(error) => panic!("version {n} does not serialize: {error}"),
    }
}
