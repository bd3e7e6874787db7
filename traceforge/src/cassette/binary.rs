//! A binary body's base64 text, held once: shared rather than copied, encoded as the body
//! arrives while recording, read in place from the cassette file when loading a large one, and
//! decoded piece by piece when replayed. A 50 MB download is never in memory twice.

use std::cell::RefCell;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Standard base64 text, with padding, of a binary body (always ASCII when traceforge wrote it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Base64(Bytes);

impl Base64 {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Built only from `str`s, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The decoded bytes, `None` when the text is not valid base64.
    pub fn decode(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.0).ok()
    }

    /// The bytes in pieces of about `piece` bytes, decoded as they are taken; `None` when the
    /// text is not valid base64 (checked whole first, so a bad cassette never sends a part).
    pub(crate) fn decoded_pieces(&self, piece: usize) -> Option<DecodedPieces> {
        let window = (piece.max(3) / 3) * 4;
        let mut scratch = vec![0; window / 4 * 3];
        let mut length = 0u64;
        let text = &self.0[..];
        // Valid base64 pads only its last group, so it decodes window by window to the same
        // bytes; anything else fails in its own window (a misplaced `=` included).
        if !text.len().is_multiple_of(4) {
            return None;
        }
        for (i, chunk) in text.chunks(window).enumerate() {
            let last = (i + 1) * window >= text.len();
            if !last && chunk.contains(&b'=') {
                return None;
            }
            length += STANDARD.decode_slice(chunk, &mut scratch).ok()? as u64;
        }
        Some(DecodedPieces { text: self.0.clone(), window, length })
    }
}

/// A binary body decoded piece by piece (see [`Base64::decoded_pieces`]).
pub(crate) struct DecodedPieces {
    text: Bytes,
    window: usize,
    /// Decoded bytes still to come.
    length: u64,
}

impl DecodedPieces {
    /// How many decoded bytes are still to come.
    pub(crate) fn remaining(&self) -> u64 {
        self.length
    }
}

impl Iterator for DecodedPieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.text.is_empty() {
            return None;
        }
        let chunk = self.text.split_to(self.window.min(self.text.len()));
        // Checked whole in `decoded_pieces`.
        let piece = STANDARD.decode(&chunk).unwrap_or_default();
        self.length = self.length.saturating_sub(piece.len() as u64);
        Some(Bytes::from(piece))
    }
}

impl From<String> for Base64 {
    fn from(text: String) -> Base64 {
        Base64(Bytes::from(text))
    }
}

impl From<&str> for Base64 {
    fn from(text: &str) -> Base64 {
        Base64(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Debug for Base64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Base64 text this long or longer is read in place from the cassette's bytes (which it then
/// keeps alive) instead of being copied.
const READ_IN_PLACE: usize = 64 * 1024;

thread_local! {
    /// The bytes of the cassette being parsed on this thread, if the reader shares them.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `parse`, letting large base64 strings it reads from `source` point into it.
pub(super) fn reading_from<T>(source: &Bytes, parse: impl FnOnce() -> T) -> T {
    /// Puts back what was there before, even if `parse` panics.
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|cell| cell.replace(previous));
        }
    }
    let _restore = Restore(SOURCE.with(|cell| cell.replace(Some(source.clone()))));
    parse()
}

/// `text` as a slice of the bytes being parsed, when it lies inside them.
fn in_source(text: &str) -> Option<Bytes> {
    SOURCE.with(|cell| {
        let source = cell.borrow();
        let source = source.as_ref()?;
        let start = (text.as_ptr() as usize).checked_sub(source.as_ptr() as usize)?;
        (start + text.len() <= source.len()).then(|| source.slice(start..start + text.len()))
    })
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Base64, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Base64;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Base64, E> {
                if text.len() >= READ_IN_PLACE {
                    if let Some(shared) = in_source(text) {
                        return Ok(Base64(shared));
                    }
                }
                Ok(Base64::from(text))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Base64, E> {
                Ok(Base64::from(text))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Base64, E> {
                Ok(Base64::from(text))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Encodes a body into base64 as its chunks arrive, so the raw bytes are never kept.
pub(crate) struct Encoder {
    writer: base64::write::EncoderStringWriter<'static, base64::engine::GeneralPurpose, String>,
}

impl Encoder {
    /// An encoder for a body of about `size_hint` bytes (room is made for it up front).
    pub(crate) fn new(size_hint: Option<u64>) -> Encoder {
        let capacity = size_hint.and_then(|n| usize::try_from(n.div_ceil(3) * 4).ok()).unwrap_or(0);
        Encoder {
            writer: base64::write::EncoderStringWriter::from_consumer(String::with_capacity(capacity), &STANDARD),
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        use std::io::Write as _;
        // Writing into a String cannot fail.
        let _ = self.writer.write_all(chunk);
    }

    pub(crate) fn finish(self) -> Base64 {
        Base64::from(self.writer.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_piece_by_piece_to_the_whole() {
        for len in [0, 1, 2, 3, 4, 5, 299, 300, 301, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut encoder = Encoder::new(None);
            for chunk in bytes.chunks(77) {
                encoder.push(chunk);
            }
            let text = encoder.finish();
            assert_eq!(text.as_str(), STANDARD.encode(&bytes));
            let pieces = text.decoded_pieces(100).unwrap_or_else(|| panic!("{len} did not decode"));
            assert_eq!(pieces.remaining(), len as u64);
            let joined: Vec<u8> = pieces.flat_map(|piece| piece.to_vec()).collect();
            assert_eq!(joined, bytes);
        }
    }

    #[test]
    fn invalid_text_is_refused_whole() {
        for text in ["QQ==QQ==", "QQ=", "Q===", "AB*D", "QR==", "QUJD\n"] {
            let base64 = Base64::from(text);
            assert_eq!(base64.decoded_pieces(3).is_some(), base64.decode().is_some(), "{text}");
            assert!(base64.decoded_pieces(3).is_none(), "{text}");
        }
    }

    #[test]
    fn large_text_is_read_in_place() {
        let text = "QUJD".repeat(READ_IN_PLACE);
        let json = Bytes::from(format!("[\"{text}\", \"QUJD\"]"));
        let parsed: Vec<Base64> =
            reading_from(&json, || serde_json::from_slice(&json)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed[0].as_str(), text);
        assert_eq!(parsed[0].0.as_ptr(), json[2..].as_ptr(), "shares the source");
        assert_eq!(parsed[1].as_str(), "QUJD");
        assert!(in_source("x").is_none(), "the source is forgotten after the parse");
    }
}
