//! The pre-write secret scan ([`crate::redact::scan`]) run over anything serializable, as it
//! serializes: every string and object key is checked at the JSON path it will have in the
//! file, without building the `Value` tree of the whole cassette (which held a second copy of
//! every body, a large binary one included).

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

use crate::redact::{check, push_key, scanner, SecretFinding};

/// Scans what `value` serializes to, exactly as [`crate::redact::scan`] scans the same JSON as a
/// `Value`: the same findings, at the same paths, in the same order.
pub(crate) fn scan_serialized<T: Serialize>(value: &T, allowed: &[String]) -> Vec<SecretFinding> {
    let Some(scanner) = scanner() else {
        // As `scan`: refusing every write is the safe failure.
        return vec![SecretFinding { json_path: "$".into(), kind: "scanner unavailable", masked: String::new() }];
    };
    let mut scan = Scan { path: String::from("$"), scanner, allowed, findings: Vec::new() };
    // Only a key that is not a string could fail, and no cassette type has one.
    let _ = value.serialize(&mut scan);
    scan.findings
}

struct Scan<'a> {
    path: String,
    scanner: &'a crate::redact::Scanner,
    allowed: &'a [String],
    findings: Vec<SecretFinding>,
}

impl Scan<'_> {
    fn text(&mut self, text: &str) {
        check(text, &self.path, self.scanner, self.allowed, &mut self.findings);
    }

    /// Scans `value` as the member `key` of an object (the key itself is scanned too).
    fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Never> {
        let len = self.path.len();
        push_key(&mut self.path, key);
        self.text(key);
        let result = value.serialize(&mut *self);
        self.path.truncate(len);
        result
    }

    /// Enters a variant's wrapper object, `{"Variant": ...}`; returns the path to restore.
    fn enter_variant(&mut self, variant: &str) -> usize {
        let restore = self.path.len();
        push_key(&mut self.path, variant);
        self.text(variant);
        restore
    }

    fn element<T: Serialize + ?Sized>(&mut self, index: usize, value: &T) -> Result<(), Never> {
        let len = self.path.len();
        let _ = write!(self.path, "[{index}]");
        let result = value.serialize(&mut *self);
        self.path.truncate(len);
        result
    }
}

/// The scan's error: only a map key that is not a string, which no cassette has.
#[derive(Debug)]
pub(crate) struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key that is not a string")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_: T) -> Never {
        Never
    }
}

/// A list being scanned, or the members of a struct variant (`{"Variant": [...]}`).
struct Elements<'s, 'a> {
    scan: &'s mut Scan<'a>,
    next: usize,
    /// The path to restore at the end (a variant's wrapper adds to it).
    restore: usize,
}

/// An object being scanned: keys are remembered until their value comes.
struct Members<'s, 'a> {
    scan: &'s mut Scan<'a>,
    key: Option<String>,
    restore: usize,
}

macro_rules! nothing_to_scan {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<(), Never> { Ok(()) })*
    };
}

impl<'s, 'a> ser::Serializer for &'s mut Scan<'a> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Elements<'s, 'a>;
    type SerializeTuple = Elements<'s, 'a>;
    type SerializeTupleStruct = Elements<'s, 'a>;
    type SerializeTupleVariant = Elements<'s, 'a>;
    type SerializeMap = Members<'s, 'a>;
    type SerializeStruct = Members<'s, 'a>;
    type SerializeStructVariant = Members<'s, 'a>;

    nothing_to_scan!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_char(self, value: char) -> Result<(), Never> {
        self.text(value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), Never> {
        self.text(value);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Never> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        self.member(variant, value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'s, 'a>, Never> {
        let restore = self.path.len();
        Ok(Elements { scan: self, next: 0, restore })
    }

    fn serialize_tuple(self, len: usize) -> Result<Elements<'s, 'a>, Never> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Elements<'s, 'a>, Never> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Elements<'s, 'a>, Never> {
        let restore = self.enter_variant(variant);
        Ok(Elements { scan: self, next: 0, restore })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Members<'s, 'a>, Never> {
        let restore = self.path.len();
        Ok(Members { scan: self, key: None, restore })
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Members<'s, 'a>, Never> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Members<'s, 'a>, Never> {
        let restore = self.enter_variant(variant);
        Ok(Members { scan: self, key: None, restore })
    }
}

impl Elements<'_, '_> {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.next += 1;
        self.scan.element(self.next - 1, value)
    }

    fn done(self) -> Result<(), Never> {
        self.scan.path.truncate(self.restore);
        Ok(())
    }
}

macro_rules! elements {
    ($($trait:ident::$method:ident),*) => {
        $(impl ser::$trait for Elements<'_, '_> {
            type Ok = ();
            type Error = Never;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
                self.push(value)
            }

            fn end(self) -> Result<(), Never> {
                self.done()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Members<'_, '_> {
    type Ok = ();
    type Error = Never;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        self.key = Some(key.serialize(KeyText)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        let key = self.key.take().unwrap_or_default();
        self.scan.member(&key, value)
    }

    fn end(self) -> Result<(), Never> {
        self.scan.path.truncate(self.restore);
        Ok(())
    }
}

macro_rules! members {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Members<'_, '_> {
            type Ok = ();
            type Error = Never;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
                self.scan.member(key, value)
            }

            fn end(self) -> Result<(), Never> {
                self.scan.path.truncate(self.restore);
                Ok(())
            }
        })*
    };
}

members!(SerializeStruct, SerializeStructVariant);

/// A map key as the text it has in JSON (serde_json writes integer keys as strings).
struct KeyText;

macro_rules! integer_keys {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method(self, value: $ty) -> Result<String, Never> { Ok(value.to_string()) })*
    };
}

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = Never;
    type SerializeSeq = ser::Impossible<String, Never>;
    type SerializeTuple = ser::Impossible<String, Never>;
    type SerializeTupleStruct = ser::Impossible<String, Never>;
    type SerializeTupleVariant = ser::Impossible<String, Never>;
    type SerializeMap = ser::Impossible<String, Never>;
    type SerializeStruct = ser::Impossible<String, Never>;
    type SerializeStructVariant = ser::Impossible<String, Never>;

    integer_keys!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_bool(bool),
        serialize_char(char)
    );

    fn serialize_str(self, value: &str) -> Result<String, Never> {
        Ok(value.to_owned())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, Never> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<String, Never> {
        value.serialize(self)
    }

    fn serialize_f32(self, _: f32) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_f64(self, _: f64) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_none(self) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_unit(self) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Never> {
        Err(Never)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Never> {
        Err(Never)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Never> {
        Err(Never)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Never> {
        Err(Never)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
        Err(Never)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Never> {
        Err(Never)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Never> {
        Err(Never)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_the_value_scan_finds_where_it_finds_it() {
        let secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
        let value = json!({
            "a": [1, "plain", {"key": secret, secret: true}],
            "b": {"nested": [[{"x": format!("Bearer {}", "t".repeat(20))}]]},
            "we ird": "AKIAABCDEFGHIJKLMNOP",
            "z": null
        });
        let allowed = vec!["$.b*".to_owned()];
        let expected = crate::redact::scan(&value, &[]);
        assert!(expected.len() >= 4, "{expected:?}");
        assert_eq!(scan_serialized(&value, &[]), expected);
        assert_eq!(scan_serialized(&value, &allowed), crate::redact::scan(&value, &allowed));
    }
}
