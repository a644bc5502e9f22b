//! JSON documents read strictly, for verification: no object key given twice at any
//! depth, and (for [`SignedDocument`]) every string and key already in Unicode NFC.
//!
//! `serde_json::Value` keeps the last of two equal keys. A document whose signature is
//! checked on the last `credentialSubject` may be read by another parser on the first,
//! so a forgery placed before the genuine member would "verify"; the only safe answer
//! is to refuse the document. Signing NFC-normalises every string, so `"\u{212a}"`
//! (KELVIN SIGN) and `"K"` have the same signature: a verifier that accepted either
//! would vouch for text that was never signed. This crate issues only NFC, so a
//! document with other strings is refused rather than normalised.
//!
//! ```
//! use attestix_core::document::{SignedDocument, UniqueKeys};
//!
//! let ok: SignedDocument = serde_json::from_str(r#"{"a":{"b":"K"}}"#).unwrap();
//! assert_eq!(ok.0["a"]["b"], "K");
//! let repeated = serde_json::from_str::<UniqueKeys>(r#"{"a":{"b":1,"b":2}}"#);
//! assert!(repeated.unwrap_err().to_string().contains("repeated key"));
//! let kelvin = serde_json::from_str::<SignedDocument>("{\"a\":\"\u{212a}\"}");
//! assert!(kelvin.unwrap_err().to_string().contains("NFC"));
//! ```

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Any JSON value in which no object has the same key twice.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueKeys(pub Value);

/// A document to verify: [`UniqueKeys`], and every string and object key in NFC.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedDocument(pub Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StrictValue { require_nfc: false }
            .deserialize(deserializer)
            .map(Self)
    }
}

impl<'de> Deserialize<'de> for SignedDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StrictValue { require_nfc: true }
            .deserialize(deserializer)
            .map(Self)
    }
}

/// Whether `text` is in Unicode Normalization Form C.
pub fn is_nfc(text: &str) -> bool {
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => text.chars().eq(text.nfc()),
    }
}

/// `text` in NFC (a copy only when it is not already).
pub fn to_nfc(text: String) -> String {
    if is_nfc(&text) {
        text
    } else {
        text.nfc().collect()
    }
}

/// Whether every string and object key in `value` is in NFC.
pub fn is_nfc_value(value: &Value) -> bool {
    match value {
        Value::String(text) => is_nfc(text),
        Value::Array(items) => items.iter().all(is_nfc_value),
        Value::Object(map) => map
            .iter()
            .all(|(key, value)| is_nfc(key) && is_nfc_value(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// `value` with every string and object key in NFC. Two keys of one object that are
/// equal after NFC become one (the later wins): check first with
/// [`crate::canonical::canonical_bytes`], which refuses them.
pub fn nfc_value(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(to_nfc(text)),
        Value::Array(items) => Value::Array(items.into_iter().map(nfc_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (to_nfc(key), nfc_value(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Shows at most a few dozen characters of an offending string in an error.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() <= SHOWN {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head:?}…")
    }
}

// A visitor rather than a second pass over the text: it sees every key as the parser
// reads it, where a `Value` has already dropped the first of two, and it needs no
// dependency (serde_with's `MapPreventDuplicates` covers typed maps, not nested JSON).
// Recursion stays bounded by serde_json's own nesting limit (128).
#[derive(Clone, Copy)]
struct StrictValue {
    require_nfc: bool,
}

impl StrictValue {
    fn check<E: de::Error>(self, text: &str, what: &str) -> Result<(), E> {
        if self.require_nfc && !is_nfc(text) {
            return Err(E::custom(format!(
                "{what} {} is not in Unicode NFC; this server signs only NFC text, and \
                 a signature over the normalised form does not vouch for this one",
                excerpt(text)
            )));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("JSON numbers must be finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.check(value, "string")?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.check(&value, "string")?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            self.check(&key, "key")?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "repeated key {}: a document must not give an object member twice",
                    excerpt(&key)
                )));
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":1}"#,
            r#"{"x":[{"y":{"a":1,"b":2,"a":3}}]}"#,
            r#"[{"k":null,"k":null}]"#,
        ] {
            let error = serde_json::from_str::<UniqueKeys>(text).unwrap_err();
            assert!(
                error.to_string().contains("repeated key"),
                "{text}: {error}"
            );
            assert!(serde_json::from_str::<SignedDocument>(text).is_err());
        }
    }

    #[test]
    fn distinct_keys_give_the_same_value_as_serde_json() {
        let text = r#"{"b":[1,2.5,-0.0,1e21,null,true,"x"],"a":{"c":{}},"😀":"é"}"#;
        let strict: SignedDocument = serde_json::from_str(text).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict.0, plain);
        assert_eq!(
            serde_json::to_string(&strict.0).unwrap(),
            serde_json::to_string(&plain).unwrap(),
            "key order is kept"
        );
    }

    #[test]
    fn strings_and_keys_not_in_nfc_are_refused_only_for_signed_documents() {
        for text in [
            "{\"t\":\"\u{212a}\"}",
            "{\"\u{212b}\":1}",
            "[\"e\u{301}\"]",
            "\"\\u212a\"",
        ] {
            let error = serde_json::from_str::<SignedDocument>(text).unwrap_err();
            assert!(error.to_string().contains("NFC"), "{text}: {error}");
            assert!(serde_json::from_str::<UniqueKeys>(text).is_ok(), "{text}");
        }
        assert!(serde_json::from_str::<SignedDocument>("{\"\u{c5}\":\"\u{e9}\"}").is_ok());
    }

    #[test]
    fn nfc_helpers_agree_with_the_parser() {
        let value = json!({"\u{212b}": ["\u{212a}", {"e\u{301}": 1}]});
        assert!(!is_nfc_value(&value));
        let normalised = nfc_value(value);
        assert_eq!(normalised, json!({"\u{c5}": ["K", {"\u{e9}": 1}]}));
        assert!(is_nfc_value(&normalised));
        assert!(is_nfc("plain ascii") && !is_nfc("\u{212a}"));
    }
}
