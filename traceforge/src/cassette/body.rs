//! Bodies as stored in a cassette: structure where the content allows it, so people can read
//! the diff, and exactly enough framing information to replay them faithfully.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::binary::{Base64, DecodedPieces};
use super::canonical::sha256_hex;
use super::json::Json;
use crate::provider::{Answer, Assembled};
use crate::stream::{self, SseEvent};

/// A request or response body. In a cassette, an object whose `kind` names the variant (see
/// `body_serde.rs` for how it is read and written).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A JSON document, stored as JSON.
    Json {
        /// The document, parsed when first looked into (`Json::from(value)` builds one).
        json: Json,
    },
    /// UTF-8 text that is not JSON.
    Text {
        /// The text.
        text: String,
    },
    /// Bytes that are not text (audio, images), base64-encoded: how response bodies are stored.
    Binary {
        /// Standard base64 of the bytes (shared, not copied: see [`Base64`]).
        base64: Base64,
    },
    /// Bytes that are not text, stored as their hash and size only: how request bodies are
    /// stored (the recorder matches them, it never sends them back).
    Digest {
        /// sha256 of the bytes, lowercase hex.
        sha256: String,
        /// Their length in bytes.
        size: u64,
    },
    /// A `multipart/form-data` request body (uploads to transcription endpoints), one entry per
    /// part, without the random boundary, so that the same upload matches on every run.
    Multipart {
        /// The parts in order.
        parts: Vec<Part>,
    },
    /// A `text/event-stream` body, one entry per event.
    Sse {
        /// The events in the order they arrived.
        events: Vec<SseEvent>,
        /// `false` when the upstream cut the stream off; replay then cuts it off too.
        complete: bool,
        /// The answer's text and tool calls, for people reading the diff; ignored on replay.
        assembled: Option<Assembled>,
        /// Milliseconds from the response headers to each event, when recorded with
        /// `RecorderBuilder::record_offsets(true)`; used by recorded pacing.
        offsets_ms: Option<Vec<u64>>,
    },
    /// A newline-delimited JSON stream (Ollama), one entry per line.
    Ndjson {
        /// The lines in order.
        lines: Vec<Value>,
        /// `false` when the upstream cut the stream off.
        complete: bool,
        /// As for `Sse`.
        assembled: Option<Assembled>,
        /// As for `Sse`, one per line.
        offsets_ms: Option<Vec<u64>>,
    },
}

/// One part of a multipart request body.
// Fields in sorted order: a cassette is written with its keys sorted, field by field as declared.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The part's `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The uploaded file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The form field's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// sha256 of a file's bytes, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The value of a text field (no file name, valid UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// How a stored body goes back on the wire.
pub(crate) enum ReplayBody {
    /// In one piece.
    Full(Bytes),
    /// A binary body, decoded piece by piece as it is sent.
    Pieces(DecodedPieces),
    /// As a stream of chunks; when `complete` is false the connection is reset after the last.
    /// `offsets_ms`, when recorded, holds each chunk's arrival time for recorded pacing.
    Chunks { chunks: Vec<Bytes>, complete: bool, offsets_ms: Option<Vec<u64>> },
}

/// The size of the pieces a binary body is decoded and sent in.
const REPLAY_PIECE: usize = 64 * 1024;

/// The media type of a `Content-Type`, lower case (borrowed when it already is).
fn media_type(content_type: Option<&str>) -> std::borrow::Cow<'_, str> {
    let media = content_type.and_then(|ct| ct.split(';').next()).map_or("", str::trim);
    if media.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(media.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(media)
    }
}

impl Body {
    /// Whether there is no body at all.
    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Empty)
    }

    /// Classifies raw bytes by their content type (and content, when the type says little).
    /// `complete` is false when the bytes are a stream that was cut off.
    pub fn from_bytes(content_type: Option<&str>, bytes: &[u8], complete: bool) -> Body {
        let media = media_type(content_type);
        if media == "text/event-stream" {
            let (events, leftover) = stream::parse_sse(bytes);
            return Body::Sse { events, complete: complete && !leftover, assembled: None, offsets_ms: None };
        }
        if matches!(media.as_ref(), "application/x-ndjson" | "application/ndjson" | "application/jsonl") {
            let (lines, leftover) = stream::parse_ndjson(bytes);
            return Body::Ndjson { lines, complete: complete && !leftover, assembled: None, offsets_ms: None };
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
                        return Body::Json { json: json.into() };
                    }
                }
                return Body::Text { text: text.to_owned() };
            }
        }
        Body::Binary { base64: base64::engine::general_purpose::STANDARD.encode(bytes).into() }
    }

    /// Whether a body of this content type is stored as [`Body::Binary`] whatever its bytes: a
    /// media type that is neither textual nor a stream (`audio/*`, `image/*`, octet streams).
    pub(crate) fn is_binary_media(content_type: Option<&str>) -> bool {
        let media = media_type(content_type);
        !(media.is_empty()
            || media.starts_with("text/")
            || media.contains("json")
            || media == "application/x-www-form-urlencoded")
    }

    /// Classifies a request body. As [`Body::from_bytes`], except that bytes that are not text
    /// are stored as their sha256 and size ([`Body::Digest`]), and `multipart/form-data` part by
    /// part without its random boundary ([`Body::Multipart`]): a request is matched, never sent
    /// back, and a 20 MB audio upload should not land in the repository as base64.
    pub fn from_request_bytes(content_type: Option<&str>, bytes: &[u8]) -> Body {
        if media_type(content_type) == "multipart/form-data" {
            if let Some(parts) = content_type.and_then(boundary).and_then(|b| parse_multipart(bytes, &b)) {
                return Body::Multipart { parts };
            }
        }
        match Body::from_bytes(content_type, bytes, true) {
            Body::Binary { .. } => Body::Digest { sha256: sha256_hex(bytes), size: bytes.len() as u64 },
            other => other,
        }
    }

    /// Fills in [`Body::Sse`]'s and [`Body::Ndjson`]'s `assembled` answer, for the diff.
    pub(crate) fn assemble(&mut self) {
        let answer = Answer::from_body(self);
        if let Body::Sse { assembled, .. } | Body::Ndjson { assembled, .. } = self {
            *assembled = answer.and_then(Answer::into_assembled);
        }
    }

    /// Sets the arrival offsets of [`Body::Sse`]'s events or [`Body::Ndjson`]'s lines.
    pub(crate) fn set_offsets(&mut self, offsets: Vec<u64>) {
        if let Body::Sse { offsets_ms, .. } | Body::Ndjson { offsets_ms, .. } = self {
            *offsets_ms = Some(offsets);
        }
    }

    /// The body as it goes back to a client.
    pub(crate) fn replay(&self) -> ReplayBody {
        match self {
            Body::Empty => ReplayBody::Full(Bytes::new()),
            Body::Json { json } => ReplayBody::Full(json.compact()),
            Body::Text { text } => ReplayBody::Full(Bytes::from(text.clone())),
            // Text that is not valid base64 replays as no body, as it always has.
            Body::Binary { base64 } => match base64.decoded_pieces(REPLAY_PIECE) {
                Some(pieces) => ReplayBody::Pieces(pieces),
                None => ReplayBody::Full(Bytes::new()),
            },
            // Request-only kinds: never replayed, a client would only see their summary.
            Body::Digest { .. } | Body::Multipart { .. } => ReplayBody::Full(Bytes::new()),
            Body::Sse { events, complete, offsets_ms, .. } => ReplayBody::Chunks {
                chunks: events.iter().map(stream::encode_sse).collect(),
                complete: *complete,
                offsets_ms: offsets_ms.clone(),
            },
            Body::Ndjson { lines, complete, offsets_ms, .. } => ReplayBody::Chunks {
                chunks: lines.iter().map(stream::encode_ndjson).collect(),
                complete: *complete,
                offsets_ms: offsets_ms.clone(),
            },
        }
    }
}

/// The `boundary` parameter of a multipart content type, unquoted.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&i| &haystack[i..i + needle.len()] == needle)
}

/// Splits a multipart body into parts; `None` when it is not well formed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut position = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(position..position + 2) == Some(b"--") {
            return Some(parts); // the closing delimiter
        }
        position += 2; // CRLF after the delimiter
        let headers_end = find(body, b"\r\n\r\n", position)?;
        let headers = std::str::from_utf8(body.get(position..headers_end)?).ok()?;
        let content_start = headers_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), content_start)?;
        let content = &body[content_start..next];
        let mut part = Part::default();
        for line in headers.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-type" {
                part.content_type = Some(value.to_owned());
            } else if name == "content-disposition" {
                for param in value.split(';').skip(1) {
                    if let Some((key, val)) = param.split_once('=') {
                        let val = val.trim().trim_matches('"').to_owned();
                        match key.trim() {
                            "name" => part.name = Some(val),
                            "filename" => part.filename = Some(val),
                            _ => {}
                        }
                    }
                }
            }
        }
        match std::str::from_utf8(content) {
            Ok(text) if part.filename.is_none() => part.text = Some(text.to_owned()),
            _ => {
                part.sha256 = Some(sha256_hex(content));
                part.size = Some(content.len() as u64);
            }
        }
        parts.push(part);
        position = next + 2 + delimiter.len();
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
            Body::Json { json: json!({"a": 1}).into() }
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
        let body = Body::from_bytes(Some("application/octet-stream"), &bytes, true);
        assert!(Body::is_binary_media(Some("audio/mpeg")) && !Body::is_binary_media(Some("application/json")));
        match body.replay() {
            ReplayBody::Pieces(pieces) => assert_eq!(pieces.flat_map(|p| p.to_vec()).collect::<Vec<u8>>(), bytes),
            _ => panic!("binary bodies replay decoded piece by piece"),
        }
        let broken = Body::Binary { base64: "not base64!".into() };
        assert!(matches!(broken.replay(), ReplayBody::Full(bytes) if bytes.is_empty()));
    }

    #[test]
    fn request_bodies_that_are_not_text_are_keyed_by_their_hash() {
        let body = Body::from_request_bytes(Some("audio/wav"), &[0, 159, 146, 150]);
        assert!(matches!(&body, Body::Digest { size: 4, sha256 } if sha256.len() == 64), "{body:?}");
    }

    #[test]
    fn multipart_drops_the_boundary_and_hashes_files() {
        let upload = |boundary: &str| {
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\x00\x01\r\n--{boundary}--\r\n"
            );
            Body::from_request_bytes(Some(&format!("multipart/form-data; boundary={boundary}")), body.as_bytes())
        };
        let first = upload("abc123");
        assert_eq!(first, upload("zzz999"));
        let Body::Multipart { parts } = first else { panic!("not multipart") };
        assert_eq!(parts[0].text.as_deref(), Some("whisper-1"));
        assert_eq!((parts[1].filename.as_deref(), parts[1].size), (Some("a.wav"), Some(6)));
    }
}
