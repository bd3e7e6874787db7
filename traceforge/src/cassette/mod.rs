//! The cassette: what is stored for each interaction, how a request becomes its key, and how
//! cassette files are read and written safely.

pub(crate) mod binary;
pub(crate) mod body;
mod body_serde;
pub mod canonical;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod json;
pub mod storage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use binary::Base64;
pub use body::{Body, Part};
pub use json::Json;

use crate::matching::KeyRules;

/// The cassette format this build reads and writes. See `docs/cassette-format.md`.
pub const FORMAT_VERSION: u32 = 1;

/// A whole cassette file.
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassetteFile {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// One entry per distinct request, sorted by key.
    pub interactions: Vec<Interaction>,
    /// The matching rules the keys were computed under, when they are not the defaults. A run
    /// whose rules differ recomputes the keys; one with the same rules trusts them (fast load).
    #[serde(default, skip_serializing_if = "KeyRules::is_default")]
    pub key_rules: KeyRules,
    /// With the `sequence` strategy only: the key of each call, in the order the calls
    /// completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
}

/// A distinct request and the responses it received, in the order they were recorded: the
/// first call replays `responses[0]`, the second `responses[1]`, and so on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// sha256 of the canonical form of `request` as matched (after ignored paths and
    /// normalisers; see [`crate::matching::Matcher::key`]).
    pub key: String,
    /// The request as matched: scrubbed of secrets, with only the headers that take part in matching.
    pub request: RecordedRequest,
    /// What the upstream answered, once per call.
    pub responses: Vec<RecordedResponse>,
}

/// The canonical, secret-free form of a request.
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// The request body; JSON is stored as structure.
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
    /// Only the headers that take part in matching (e.g. `anthropic-version`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP method, upper case.
    pub method: String,
    /// The path below the upstream's base URL, e.g. `/chat/completions`.
    pub path: String,
    /// Query parameters, sorted by name, secrets removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, Vec<String>>,
    /// The upstream's name (not its URL, so a cassette replays whatever the base URL).
    pub upstream: String,
}

impl RecordedRequest {
    /// A request with no query and no matched headers, e.g. for building cassettes in code:
    /// `RecordedRequest::new("POST", "openai", "/chat/completions", Body::Json { json: value.into() })`.
    pub fn new(method: &str, upstream: &str, path: &str, body: Body) -> RecordedRequest {
        RecordedRequest {
            method: method.to_ascii_uppercase(),
            upstream: upstream.to_owned(),
            path: path.to_owned(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body,
        }
    }

    /// `POST openai /chat/completions`, for messages.
    pub fn summary(&self) -> String {
        let mut summary = format!("{} {} {}", self.method, self.upstream, self.path);
        if !self.query.is_empty() {
            let query: Vec<String> = self
                .query
                .iter()
                .flat_map(|(name, values)| values.iter().map(move |value| format!("{name}={value}")))
                .collect();
            summary.push('?');
            summary.push_str(&query.join("&"));
        }
        summary
    }
}

/// One recorded answer.
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// The body, decoded; streamed bodies as a list of events.
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
    /// Response headers worth replaying (volatile and hop-by-hop ones are dropped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP status code.
    pub status: u16,
}
