//! Bodies as stored in a cassette: structure where the content allows it, so people can read
//! the diff, and exactly enough framing information to replay them faithfully.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stream::{self, SseEvent};

/// A request or response body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A JSON document, stored as JSON.
    Json {
        /// The document.
        json: Value,
    },
    /// UTF-8 text that is not JSON.
    Text {
        /// The text.
        text: String,
    },
    /// Bytes that are not text (audio, images, multipart uploads), base64-encoded.
    Binary {
        /// Standard base64 of the bytes.
        base64: String,
    },
    /// A `text/event-stream` body, one entry per event.
    Sse {
        /// The events in the order they arrived.
        events: Vec<SseEvent>,
        /// `false` when the upstream cut the stream off; replay then cuts it off too.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        complete: bool,
    },
    /// A newline-delimited JSON stream (Ollama), one entry per line.
    Ndjson {
        /// The lines in order.
        lines: Vec<Value>,
        /// `false` when the upstream cut the stream off.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        complete: bool,
    },
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// How a stored body goes back on the wire.
pub(crate) enum ReplayBody {
    /// In one piece.
    Full(Bytes),
    /// As a stream of chunks; when `complete` is false the connection is reset after the last.
    Chunks { chunks: Vec<Bytes>, complete: bool },
}

impl Body {
    /// Whether there is no body at all.
    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Empty)
    }

    /// Classifies raw bytes by their content type (and content, when the type says little).
    /// `complete` is false when the bytes are a stream that was cut off.
    pub fn from_bytes(content_type: Option<&str>, bytes: &[u8], complete: bool) -> Body {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if media == "text/event-stream" {
            let (events, leftover) = stream::parse_sse(bytes);
            return Body::Sse { events, complete: complete && !leftover };
        }
        if matches!(media.as_str(), "application/x-ndjson" | "application/ndjson" | "application/jsonl") {
            let (lines, leftover) = stream::parse_ndjson(bytes);
            return Body::Ndjson { lines, complete: complete && !leftover };
        }
        if bytes.is_empty() {
            return Body::Empty;
        }
        let textual = media.is_empty()
            || media.starts_with("text/")
            || media == "application/json"
            || media.ends_with("+json")
            || media == "application/x-www-form-urlencoded";
        if textual {
            if let Ok(text) = std::str::from_utf8(bytes) {
                // Only a JSON media type (or none at all) makes JSON: `text/plain` stays text.
                let looks_json =
                    media.contains("json") || (media.is_empty() && text.trim_start().starts_with(['{', '[']));
                if looks_json {
                    if let Ok(json) = serde_json::from_slice::<Value>(bytes) {
                        return Body::Json { json };
                    }
                }
                return Body::Text { text: text.to_owned() };
            }
        }
        Body::Binary { base64: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }

    /// The body as it goes back to a client.
    pub(crate) fn replay(&self) -> ReplayBody {
        match self {
            Body::Empty => ReplayBody::Full(Bytes::new()),
            Body::Json { json } => ReplayBody::Full(Bytes::from(serde_json::to_vec(json).unwrap_or_default())),
            Body::Text { text } => ReplayBody::Full(Bytes::from(text.clone())),
            Body::Binary { base64 } => ReplayBody::Full(Bytes::from(
                base64::engine::general_purpose::STANDARD.decode(base64).unwrap_or_default(),
            )),
            Body::Sse { events, complete } => {
                ReplayBody::Chunks { chunks: events.iter().map(stream::encode_sse).collect(), complete: *complete }
            }
            Body::Ndjson { lines, complete } => {
                ReplayBody::Chunks { chunks: lines.iter().map(stream::encode_ndjson).collect(), complete: *complete }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_by_content_type_and_content() {
        assert_eq!(
            Body::from_bytes(Some("application/json; charset=utf-8"), br#"{"a":1}"#, true),
            Body::Json { json: json!({"a": 1}) }
        );
        assert_eq!(Body::from_bytes(Some("text/plain"), b"hi", true), Body::Text { text: "hi".into() });
        assert!(matches!(Body::from_bytes(Some("audio/mpeg"), &[0, 159, 146, 150], true), Body::Binary { .. }));
        assert!(matches!(
            Body::from_bytes(Some("text/event-stream"), b"data: {}\n\n", true),
            Body::Sse { complete: true, .. }
        ));
        assert_eq!(Body::from_bytes(None, b"", true), Body::Empty);
    }

    #[test]
    fn binary_round_trips() {
        let bytes = [0u8, 255, 1, 2, 3];
        match Body::from_bytes(Some("application/octet-stream"), &bytes, true).replay() {
            ReplayBody::Full(out) => assert_eq!(&out[..], &bytes),
            ReplayBody::Chunks { .. } => panic!("binary bodies replay in one piece"),
        }
    }
}
