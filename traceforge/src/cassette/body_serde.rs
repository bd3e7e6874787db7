//! How a [`Body`] is written in a cassette and read back: an object with a `kind` field.
//!
//! Written by hand rather than derived: serde's internally tagged enums buffer the whole object
//! in a generic tree before choosing the variant (and `kind` comes last in a sorted file), so
//! every stored document was built twice. Here each field is read once, straight into its
//! type. Errors name the same things the derived code named: an unknown variant, an unknown,
//! duplicate or missing field.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeStruct as _, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::binary::Base64;
use super::body::{Body, Part};
use super::json::{Json, Key, SortedAll};
use crate::provider::Assembled;
use crate::stream::SseEvent;

const VARIANTS: &[&str] = &["empty", "json", "text", "binary", "digest", "multipart", "sse", "ndjson"];

/// The fields of each variant, as the derived code listed them in its errors.
fn variant_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "empty" => &[],
        "json" => &["json"],
        "text" => &["text"],
        "binary" => &["base64"],
        "digest" => &["sha256", "size"],
        "multipart" => &["parts"],
        "sse" => &["events", "complete", "assembled", "offsets_ms"],
        "ndjson" => &["lines", "complete", "assembled", "offsets_ms"],
        _ => return None,
    })
}

impl Serialize for Body {
    /// Fields in sorted order (`kind` among them), as a cassette stores them.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Empty => {
                let mut s = serializer.serialize_struct("Body", 1)?;
                s.serialize_field("kind", "empty")?;
                s.end()
            }
            Body::Json { json } => pair(serializer, ("json", json), ("kind", "json")),
            Body::Text { text } => pair(serializer, ("kind", "text"), ("text", text)),
            Body::Binary { base64 } => pair(serializer, ("base64", base64), ("kind", "binary")),
            Body::Digest { sha256, size } => {
                let mut s = serializer.serialize_struct("Body", 3)?;
                s.serialize_field("kind", "digest")?;
                s.serialize_field("sha256", sha256)?;
                s.serialize_field("size", size)?;
                s.end()
            }
            Body::Multipart { parts } => pair(serializer, ("kind", "multipart"), ("parts", parts)),
            Body::Sse { events, complete, assembled, offsets_ms } => {
                streamed(serializer, "sse", ("events", events), *complete, assembled, offsets_ms)
            }
            Body::Ndjson { lines, complete, assembled, offsets_ms } => {
                streamed(serializer, "ndjson", ("lines", &SortedAll(lines)), *complete, assembled, offsets_ms)
            }
        }
    }
}

/// A body of two fields, given in sorted order.
fn pair<S: Serializer, A: Serialize + ?Sized, B: Serialize + ?Sized>(
    serializer: S,
    (first, a): (&'static str, &A),
    (second, b): (&'static str, &B),
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_struct("Body", 2)?;
    s.serialize_field(first, a)?;
    s.serialize_field(second, b)?;
    s.end()
}

/// An `sse` or `ndjson` body: its list of events or lines, and the optional fields, in sorted
/// order (`events` < `kind` < `lines`).
fn streamed<S: Serializer, L: Serialize>(
    serializer: S,
    kind: &'static str,
    (list_name, list): (&'static str, &L),
    complete: bool,
    assembled: &Option<Assembled>,
    offsets_ms: &Option<Vec<u64>>,
) -> Result<S::Ok, S::Error> {
    let len = 2 + usize::from(!complete) + usize::from(assembled.is_some()) + usize::from(offsets_ms.is_some());
    let mut s = serializer.serialize_struct("Body", len)?;
    if let Some(assembled) = assembled {
        s.serialize_field("assembled", assembled)?;
    }
    if !complete {
        s.serialize_field("complete", &complete)?;
    }
    let list_first = list_name < "kind";
    if list_first {
        s.serialize_field(list_name, list)?;
    }
    s.serialize_field("kind", kind)?;
    if !list_first {
        s.serialize_field(list_name, list)?;
    }
    if let Some(offsets) = offsets_ms {
        s.serialize_field("offsets_ms", offsets)?;
    }
    s.end()
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Body, D::Error> {
        deserializer.deserialize_map(BodyVisitor)
    }
}

/// Every field any variant has; each name has one type whatever the variant.
#[derive(Default)]
struct Fields {
    /// The known names in the order they came (each at most once), and the first unknown one
    /// with how many known ones came before it: for "unknown field" errors once the kind is known.
    seen: [&'static str; 12],
    seen_len: usize,
    unknown: Option<(usize, String)>,
    kind: Option<String>,
    json: Option<Json>,
    text: Option<String>,
    base64: Option<Base64>,
    sha256: Option<String>,
    size: Option<u64>,
    parts: Option<Vec<Part>>,
    events: Option<Vec<SseEvent>>,
    lines: Option<Vec<Value>>,
    complete: Option<bool>,
    assembled: Option<Option<Assembled>>,
    offsets_ms: Option<Option<Vec<u64>>>,
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a body: an object with a `kind` field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = map.next_key_seed(Key)? {
            macro_rules! read {
                ($field:ident) => {{
                    if fields.$field.is_some() {
                        return Err(de::Error::duplicate_field(stringify!($field)));
                    }
                    fields.$field = Some(map.next_value()?);
                    fields.seen[fields.seen_len] = stringify!($field);
                    fields.seen_len += 1;
                }};
            }
            match name.as_ref() {
                "kind" => read!(kind),
                "json" => read!(json),
                "text" => read!(text),
                "base64" => read!(base64),
                "sha256" => read!(sha256),
                "size" => read!(size),
                "parts" => read!(parts),
                "events" => read!(events),
                "lines" => read!(lines),
                "complete" => read!(complete),
                "assembled" => read!(assembled),
                "offsets_ms" => read!(offsets_ms),
                other => {
                    if fields.unknown.is_none() {
                        fields.unknown = Some((fields.seen_len, other.to_owned()));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        fields.into_body()
    }
}

impl Fields {
    fn into_body<E: de::Error>(self) -> Result<Body, E> {
        let kind = self.kind.ok_or_else(|| E::missing_field("kind"))?;
        let expected = variant_fields(&kind).ok_or_else(|| E::unknown_variant(&kind, VARIANTS))?;
        if kind == "empty" {
            // A unit variant: like the derived code, it ignores whatever else the object holds.
            return Ok(Body::Empty);
        }
        let known = &self.seen[..self.seen_len];
        let misplaced = known.iter().position(|name| *name != "kind" && !expected.contains(name));
        match (misplaced, &self.unknown) {
            (Some(at), Some((before, name))) if *before <= at => return Err(E::unknown_field(name, expected)),
            (Some(at), _) => return Err(E::unknown_field(known[at], expected)),
            (None, Some((_, name))) => return Err(E::unknown_field(name, expected)),
            (None, None) => {}
        }
        let required = |field: &'static str| E::missing_field(field);
        Ok(match kind.as_str() {
            "json" => Body::Json { json: self.json.ok_or_else(|| required("json"))? },
            "text" => Body::Text { text: self.text.ok_or_else(|| required("text"))? },
            "binary" => Body::Binary { base64: self.base64.ok_or_else(|| required("base64"))? },
            "digest" => Body::Digest {
                sha256: self.sha256.ok_or_else(|| required("sha256"))?,
                size: self.size.ok_or_else(|| required("size"))?,
            },
            "multipart" => Body::Multipart { parts: self.parts.ok_or_else(|| required("parts"))? },
            "sse" => Body::Sse {
                events: self.events.ok_or_else(|| required("events"))?,
                complete: self.complete.unwrap_or(true),
                assembled: self.assembled.flatten(),
                offsets_ms: self.offsets_ms.flatten(),
            },
            _ => Body::Ndjson {
                lines: self.lines.ok_or_else(|| required("lines"))?,
                complete: self.complete.unwrap_or(true),
                assembled: self.assembled.flatten(),
                offsets_ms: self.offsets_ms.flatten(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derived reader and writer these impls replace, kept to check that they agree.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum Derived {
        Empty,
        Json {
            json: Value,
        },
        Text {
            text: String,
        },
        Binary {
            base64: String,
        },
        Digest {
            sha256: String,
            size: u64,
        },
        Multipart {
            parts: Vec<Part>,
        },
        Sse {
            events: Vec<SseEvent>,
            #[serde(default = "yes", skip_serializing_if = "is_true")]
            complete: bool,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            assembled: Option<Assembled>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            offsets_ms: Option<Vec<u64>>,
        },
        Ndjson {
            lines: Vec<Value>,
            #[serde(default = "yes", skip_serializing_if = "is_true")]
            complete: bool,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            assembled: Option<Assembled>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            offsets_ms: Option<Vec<u64>>,
        },
    }

    fn yes() -> bool {
        true
    }

    fn is_true(value: &bool) -> bool {
        *value
    }

    #[test]
    fn reads_and_writes_what_the_derived_code_did() {
        let same_outcome = [
            r#"{"kind": "empty"}"#,
            r#"{"kind": "empty", "extra": [1]}"#,
            r#"{"json": {"b": [1, 2.5], "a": null}, "kind": "json"}"#,
            r#"{"kind": "json", "json": "text"}"#,
            r#"{"kind": "text", "text": "hi"}"#,
            r#"{"base64": "AJ+Slg==", "kind": "binary"}"#,
            r#"{"kind": "digest", "sha256": "ab", "size": 4}"#,
            r#"{"kind": "multipart", "parts": [{"name": "model", "text": "whisper-1"}, {"filename": "a.wav", "sha256": "c", "size": 6}]}"#,
            r#"{"events": [{"data": {"a": 1}, "event": "e", "id": "1", "retry": 5}, {"text": "[DONE]"}, {}], "kind": "sse"}"#,
            r#"{"assembled": {"text": "Hi"}, "complete": false, "events": [], "kind": "sse", "offsets_ms": [1, 2]}"#,
            r#"{"assembled": null, "complete": true, "events": [], "kind": "sse", "offsets_ms": null}"#,
            r#"{"kind": "ndjson", "lines": [{"done": true}, "x"], "complete": false}"#,
            r#"{"kind": "xml"}"#,
            r#"{"json": 1}"#,
            r#"{"kind": "json"}"#,
            r#"{"kind": "json", "json": 1, "text": "x"}"#,
            r#"{"kind": "text", "text": "x", "extra": true}"#,
            r#"{"kind": "digest", "sha256": "ab"}"#,
            r#"{"kind": "sse", "events": [], "lines": []}"#,
            r#"{"kind": "json", "kind": "json", "json": 1}"#,
            r#"{"kind": "text", "text": 5}"#,
            r#"{"kind": "sse", "events": [{"data": 1, "unknown": 2}]}"#,
            r#"{"kind": "digest", "sha256": "ab", "size": -1}"#,
            r#""json""#,
        ];
        for text in same_outcome {
            let ours = serde_json::from_str::<Body>(text);
            let derived = serde_json::from_str::<Derived>(text);
            match (&ours, &derived) {
                (Ok(ours), Ok(derived)) => {
                    let (a, b) = (serde_json::to_value(ours).ok(), serde_json::to_value(derived).ok());
                    assert!(a.is_some() && a == b, "{text}: {a:?} != {b:?}");
                }
                (Err(ours), Err(derived)) => {
                    let (ours, derived) = (ours.to_string(), derived.to_string());
                    let kind = |m: &str| m.split(" at line").next().unwrap_or_default().to_owned();
                    if derived.starts_with("unknown")
                        || derived.starts_with("missing")
                        || derived.starts_with("duplicate")
                    {
                        assert_eq!(kind(&ours), kind(&derived), "{text}");
                    }
                }
                _ => panic!("{text}: ours {ours:?}, derived {derived:?}"),
            }
        }
        // The derived code also took a body as an array, `["json", {...}]` (serde's sequence
        // form of a tagged struct); the format has always been an object, and that is all we read.
        assert!(serde_json::from_str::<Derived>(r#"["text", "hi"]"#).is_ok());
        assert!(serde_json::from_str::<Body>(r#"["text", "hi"]"#).is_err());
    }
}
