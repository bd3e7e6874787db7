//! A JSON body that is parsed only when someone looks inside it.
//!
//! A loaded cassette holds every stored document, but a replay mostly sends them back as bytes:
//! building a `serde_json::Value` tree for each one at load (and freeing it after the test) was
//! most of the cost of loading. [`Json`] keeps the document as its compact text, exactly the
//! bytes `serde_json::to_vec` writes for its value, and parses it on first access.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// A JSON document: a [`Value`], held as compact text until it is first read as a value.
///
/// Reads go through [`std::ops::Deref`] (`json.get("model")`), writes through
/// [`std::ops::DerefMut`]. `Json::from(value)` and `json.into_value()` convert.
#[derive(Default)]
pub struct Json {
    /// Set when built from a value, or once changed.
    owned: Option<Value>,
    /// Parsed from `compact` on first read, when `owned` is not set.
    parsed: OnceLock<Value>,
    /// The compact text: read from a cassette, or written on first use.
    compact: OnceLock<Bytes>,
}

impl Json {
    /// A document from its compact text, which must be exactly what `serde_json::to_vec`
    /// writes for the value it holds (so that [`Json::compact`] needs no work).
    fn from_compact(compact: Bytes) -> Json {
        Json { owned: None, parsed: OnceLock::new(), compact: OnceLock::from(compact) }
    }

    /// The document as a value (parsed on first use).
    pub fn value(&self) -> &Value {
        match &self.owned {
            Some(value) => value,
            None => self.parsed.get_or_init(|| parse(self.compact.get())),
        }
    }

    /// The document as a value to change. The compact text is written again when next needed.
    pub fn value_mut(&mut self) -> &mut Value {
        let compact = self.compact.take();
        let parsed = self.parsed.take();
        self.owned.get_or_insert_with(|| parsed.unwrap_or_else(|| parse(compact.as_ref())))
    }

    /// The document as a value, owned.
    pub fn into_value(self) -> Value {
        match self.owned {
            Some(value) => value,
            None => self.parsed.into_inner().unwrap_or_else(|| parse(self.compact.get())),
        }
    }

    /// The document in compact form, as sent to a client on replay (serialized on first use,
    /// then shared).
    pub fn compact(&self) -> Bytes {
        self.compact.get_or_init(|| Bytes::from(serde_json::to_vec(self.value()).unwrap_or_default())).clone()
    }
}

/// Parses compact text this module wrote from a valid document: it cannot fail, but `Null`
/// stands in rather than a panic.
fn parse(compact: Option<&Bytes>) -> Value {
    compact.and_then(|bytes| serde_json::from_slice(bytes).ok()).unwrap_or(Value::Null)
}

impl From<Value> for Json {
    fn from(value: Value) -> Json {
        Json { owned: Some(value), parsed: OnceLock::new(), compact: OnceLock::new() }
    }
}

impl From<Json> for Value {
    fn from(json: Json) -> Value {
        json.into_value()
    }
}

impl std::ops::Deref for Json {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl std::ops::DerefMut for Json {
    fn deref_mut(&mut self) -> &mut Value {
        self.value_mut()
    }
}

impl Clone for Json {
    fn clone(&self) -> Json {
        match (&self.owned, self.compact.get()) {
            // The text is shared, not copied; the tree is parsed again if the clone needs it.
            (None, Some(compact)) => Json::from_compact(compact.clone()),
            _ => Json::from(self.value().clone()),
        }
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        // Equal compact text is the same value; different text may still be (`-0.0` and `0.0`).
        if let (Some(a), Some(b)) = (self.compact.get(), other.compact.get()) {
            if a == b {
                return true;
            }
        }
        self.value() == other.value()
    }
}

impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (&self.owned, self.parsed.get(), self.compact.get()) {
            (Some(value), ..) | (None, Some(value), _) => Sorted(value).serialize(serializer),
            // Parsed for the occasion, not kept: a save does not leave every body parsed.
            (None, None, compact) => Sorted(&parse(compact)).serialize(serializer),
        }
    }
}

/// Serializes a value with every object's keys in sorted order, as a cassette stores them,
/// whatever map type serde_json was built with (`preserve_order` keeps insertion order).
pub(crate) struct Sorted<'a>(pub(crate) &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if maps_are_sorted() {
            return self.0.serialize(serializer);
        }
        match self.0 {
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serializer.collect_map(entries.into_iter().map(|(key, item)| (key, Sorted(item))))
            }
            other => other.serialize(serializer),
        }
    }
}

/// [`Sorted`] for each value of a list.
pub(crate) struct SortedAll<'a>(pub(crate) &'a [Value]);

impl Serialize for SortedAll<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Sorted))
    }
}

/// For `#[serde(serialize_with)]` on an optional value.
pub(crate) fn serialize_sorted<S: Serializer>(value: &Option<Value>, serializer: S) -> Result<S::Ok, S::Error> {
    value.as_ref().map(Sorted).serialize(serializer)
}

/// Whether serde_json's maps iterate in key order (its default), so values need no sorting.
fn maps_are_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().map(String::as_str) == Some("a")
    })
}

impl<'de> Deserialize<'de> for Json {
    /// Reads a document straight into its compact text, without building a tree. The text is
    /// what `serde_json::to_vec` writes for the value when every object's keys are in order
    /// and distinct (always so in a file traceforge wrote); otherwise it goes through a
    /// [`Value`], so duplicate and unordered keys mean what they always meant.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        let mut in_order = true;
        let compact = with_scratch(|out| {
            Transcode { out, in_order: &mut in_order }.deserialize(deserializer)?;
            // A small document is copied out at its exact size; a large one keeps the buffer.
            Ok(if out.len() <= SCRATCH_KEEP { Bytes::copy_from_slice(out) } else { Bytes::from(std::mem::take(out)) })
        })?;
        if in_order {
            return Ok(Json::from_compact(compact));
        }
        serde_json::from_slice::<Value>(&compact).map(Json::from).map_err(de::Error::custom)
    }
}

/// Documents up to this size are written in a reused buffer, then copied out.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's empty write buffer (a fresh one if it is in use), so reading many
/// documents does not grow a buffer for each.
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            f(&mut scratch)
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Writes the value a deserializer yields as compact JSON, visiting exactly what a [`Value`]
/// would (so the same recursion limit and the same errors apply), and notes whether every
/// object's keys came in strictly increasing order.
struct Transcode<'a> {
    out: &'a mut Vec<u8>,
    in_order: &'a mut bool,
}

impl Transcode<'_> {
    fn scalar<E: de::Error>(&mut self, value: impl Serialize) -> Result<(), E> {
        value.serialize(&mut serde_json::Serializer::new(&mut *self.out)).map_err(E::custom)
    }

    fn string<E>(&mut self, value: &str) -> Result<(), E> {
        write_str(self.out, value);
        Ok(())
    }

    fn again(&mut self) -> Transcode<'_> {
        Transcode { out: self.out, in_order: self.in_order }
    }
}

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, value: bool) -> Result<(), E> {
        self.scalar(value)
    }

    fn visit_i64<E: de::Error>(mut self, value: i64) -> Result<(), E> {
        self.scalar(value)
    }

    fn visit_u64<E: de::Error>(mut self, value: u64) -> Result<(), E> {
        self.scalar(value)
    }

    fn visit_i128<E: de::Error>(mut self, value: i128) -> Result<(), E> {
        let number = serde_json::Number::deserialize(de::value::I128Deserializer::<E>::new(value))?;
        self.scalar(number)
    }

    fn visit_u128<E: de::Error>(mut self, value: u128) -> Result<(), E> {
        let number = serde_json::Number::deserialize(de::value::U128Deserializer::<E>::new(value))?;
        self.scalar(number)
    }

    fn visit_f64<E: de::Error>(mut self, value: f64) -> Result<(), E> {
        // As `Value`: a number that is not finite becomes null.
        match serde_json::Number::from_f64(value) {
            Some(number) => self.scalar(number),
            None => self.visit_unit(),
        }
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.string(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let start = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq.next_element_seed(self.again())?.is_none() {
                self.out.truncate(start);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut previous: Option<Cow<'de, str>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if previous.is_some() {
                self.out.push(b',');
            }
            if previous.as_deref().is_some_and(|previous| previous >= key.as_ref()) {
                *self.in_order = false;
            }
            self.string(key.as_ref())?;
            self.out.push(b':');
            map.next_value_seed(self.again())?;
            previous = Some(key);
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes `value` as a JSON string, exactly as serde_json does; most strings need no escaping
/// and are copied as they are.
pub(crate) fn write_str(out: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        // Writing to a Vec cannot fail.
        let _ = serde::Serialize::serialize(value, &mut serde_json::Serializer::new(&mut *out));
        return;
    }
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

/// Whether serde_json escapes anything in `bytes`: a control character, `"` or `\\`. Eight
/// bytes at a time, since most of a document is string content.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` below `n` (for n <= 0x80) sets its high bit here; exact as to whether any does.
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        if below(v, 0x20) | below(v ^ (ONES * u64::from(b'"')), 1) | below(v ^ (ONES * u64::from(b'\\')), 1) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// An object key, borrowed from the input when it has no escapes.
pub(super) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Json {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn compact_text_is_what_the_value_serializes_to() {
        for text in [
            r#"{"a": [1, -2, 3.50, 1e20, 1E-7, 18446744073709551616, -0.0], "b": {"c": null, "d": true}}"#,
            r#"{"s": "é\u00e9\/\"\\\n\t\u0001\ud83d\ude00", "z": "plain"}"#,
            r#"[[], {}, [{}], "x", 0, -9223372036854775808]"#,
            r#"{"b": 1, "a": 2}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"y": 1, "x": [3, 2]}, "b": 0}"#,
            "null",
            "  \"top\"  ",
        ] {
            let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            let json = read(text);
            assert_eq!(json.compact(), serde_json::to_vec(&value).unwrap_or_default(), "{text}");
            assert_eq!(json.value(), &value, "{text}");
            assert_eq!(json, value, "{text}");
        }
    }

    #[test]
    fn reads_and_writes_go_through_the_value() {
        let mut json = read(r#"{"model": "m", "n": 1}"#);
        assert_eq!(json.get("model").and_then(Value::as_str), Some("m"));
        let before = json.compact();
        json["n"] = json!(2);
        assert_ne!(json.compact(), before);
        assert_eq!(&json.compact()[..], br#"{"model":"m","n":2}"#);
        assert_eq!(json.clone(), json);
        assert_eq!(format!("{json:?}"), format!("{:?}", json!({"model": "m", "n": 2})));
        assert_eq!(serde_json::to_value(&json).ok(), Some(json!({"model": "m", "n": 2})));
        assert_eq!(json.into_value(), json!({"model": "m", "n": 2}));
    }

    #[test]
    fn escapes_are_found_in_any_position() {
        for len in 0..20 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert!(needs_escape(&bytes), "{bytes:?}");
                }
                let mut bytes = vec![0x7f; len];
                bytes[at] = 0xc3;
                assert!(!needs_escape(&bytes));
            }
            assert!(!needs_escape(&vec![b' '; len]) && !needs_escape("é😀/#]!~".repeat(len).as_bytes()));
        }
    }

    #[test]
    fn nesting_beyond_the_recursion_limit_is_refused_like_a_value() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = serde_json::from_str::<Json>(&deep).err().map(|e| e.to_string()).unwrap_or_default();
        let expected = serde_json::from_str::<Value>(&deep).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(error, expected);
        assert!(error.contains("recursion limit exceeded"), "{error}");
    }
}
