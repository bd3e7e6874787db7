//! The cassette: what is stored for each interaction, how a request becomes its key, and how
//! cassette files are read and written safely.

pub(crate) mod body;
pub mod canonical;
pub mod storage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use body::{Body, Part};

/// The cassette format this build reads and writes. See `docs/cassette-format.md`.
pub const FORMAT_VERSION: u32 = 1;

/// A whole cassette file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassetteFile {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// One entry per distinct request, sorted by key.
    pub interactions: Vec<Interaction>,
}

/// A distinct request and the responses it received, in the order they were recorded: the
/// first call replays `responses[0]`, the second `responses[1]`, and so on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// sha256 of the canonical form of `request` (see [`canonical::request_key`]).
    pub key: String,
    /// The request as matched: scrubbed of secrets, with only the headers that take part in matching.
    pub request: RecordedRequest,
    /// What the upstream answered, once per call.
    pub responses: Vec<RecordedResponse>,
}

/// The canonical, secret-free form of a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// The upstream's name (not its URL, so a cassette replays whatever the base URL).
    pub upstream: String,
    /// The path below the upstream's base URL, e.g. `/chat/completions`.
    pub path: String,
    /// Query parameters, sorted by name, secrets removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, Vec<String>>,
    /// Only the headers that take part in matching (e.g. `anthropic-version`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body; JSON is stored as structure.
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
}

impl RecordedRequest {
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers worth replaying (volatile and hop-by-hop ones are dropped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body, decoded; streamed bodies as a list of events.
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
}
