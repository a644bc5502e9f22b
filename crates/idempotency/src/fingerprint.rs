//! The request fingerprint: what makes two requests "the same request".
//!
//! SHA-256 over a length-prefixed encoding of the method, the path, the query string
//! and a digest of the body. A JSON body (`application/json` or any `+json` type)
//! that parses is digested in canonical form (object keys sorted by code point, no
//! insignificant whitespace, numbers and strings written one way), so a client that
//! re-serialises the same document with another key order or spacing still matches.
//! Any other body, or JSON that does not parse, is digested as raw bytes.

use std::fmt;

use http::Method;
#[cfg(any(test, feature = "fuzzing"))]
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 request fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Computes the fingerprint of a request.
    ///
    /// `content_type` is the request's `Content-Type` header value, if any.
    pub fn of_request(
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Self {
        let body_digest = body_digest(content_type, body);
        // A request without a query and one with an empty query are the same request.
        Self(digest_parts(&[
            method.as_str().as_bytes(),
            path.as_bytes(),
            query.map(str::as_bytes).unwrap_or_default(),
            &body_digest,
        ]))
    }

    /// Rebuilds a fingerprint from its 32 stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Rebuilds a fingerprint from a stored byte slice; `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(&self.0[..8]))
    }
}

/// SHA-256 over `parts`, each prefixed with its length, which keeps ("/a", "b=c")
/// and ("/ab", "=c") apart.
pub(crate) fn digest_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn is_json_content_type(content_type: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

fn body_digest(content_type: Option<&[u8]>, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    match content_type
        .filter(|ct| is_json_content_type(ct))
        .and_then(|_| canonicalize(body))
    {
        Some(canonical) => {
            hasher.update(b"json:");
            hasher.update(canonical);
        }
        None => {
            hasher.update(b"raw:");
            hasher.update(body);
        }
    }
    hasher.finalize().into()
}

/// The canonical form of the JSON text `body` (as [`canonical_json`] writes it for the
/// parsed value), or `None` when `body` is not one JSON value.
///
/// Written straight from the parser, without building a [`serde_json::Value`]: a `Value` costs an
/// allocation per key, string and container, which was most of the fingerprint's time
/// on every keyed request. Object members are written into one scratch buffer as they
/// are parsed and copied out in key order; a key given twice keeps its last value, as
/// parsing into a `Value` does.
pub fn canonicalize(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde::de::DeserializeSeed::deserialize(CanonicalWriter { out: &mut out }, &mut deserializer)
        .ok()?;
    deserializer.end().ok()?;
    Some(out)
}

/// An object key, borrowed from the input unless it has escapes to undo.
struct BorrowedKey;

impl<'de> serde::de::DeserializeSeed<'de> for BorrowedKey {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BorrowedKey {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(key.to_owned()))
    }
}

/// Writes the canonical form of one JSON value into `out` as it is parsed.
struct CanonicalWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> serde::de::DeserializeSeed<'de> for CanonicalWriter<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CanonicalWriter<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<(), E> {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, value: i64) -> Result<(), E> {
        write_scalar(&value, self.out);
        Ok(())
    }

    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        write_scalar(&value, self.out);
        Ok(())
    }

    fn visit_f64<E>(self, value: f64) -> Result<(), E> {
        // As `Value` holds it: a JSON number is never NaN or infinite, so this is the
        // number serde_json would write back.
        write_scalar(&value, self.out);
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        write_string(value, self.out);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(b',');
            }
            let element = CanonicalWriter {
                out: &mut *self.out,
            };
            if items.next_element_seed(element)?.is_none() {
                // No element after all: take back its separator.
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        // Each value is written to `scratch`; `entries` remembers where, by key.
        let mut scratch = Vec::new();
        let mut entries: Vec<(std::borrow::Cow<'de, str>, std::ops::Range<usize>)> = Vec::new();
        while let Some(key) = members.next_key_seed(BorrowedKey)? {
            let start = scratch.len();
            members.next_value_seed(CanonicalWriter { out: &mut scratch })?;
            entries.push((key, start..scratch.len()));
        }
        // Stable, so that of equal keys the last one given stays last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.out.push(b'{');
        let mut first = true;
        for (index, (key, range)) in entries.iter().enumerate() {
            if entries.get(index + 1).is_some_and(|next| next.0 == *key) {
                continue; // a later value for the same key wins
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_string(key, self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&scratch[range.clone()]);
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes a JSON value in canonical form: keys sorted by code point, compact
/// separators, serde_json's number and string formatting.
///
/// Sorting is done here rather than relying on `serde_json::Map` iteration order,
/// because any crate in a build can turn on serde_json's `preserve_order` feature.
/// The streaming [`canonicalize`] is what the layer runs; this tree-walking form is
/// the reference the tests and fuzz targets compare it with.
#[cfg(any(test, feature = "fuzzing"))]
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

#[cfg(any(test, feature = "fuzzing"))]
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Rust's str ordering is byte order of UTF-8, which equals code point order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Strings, numbers, booleans and null: serde_json writes each one way only
        // (deterministic escaping, shortest round-trip numbers).
        scalar => write_scalar(scalar, out),
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    write_scalar(text, out);
}

fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A short hex tag of (scope, key) for logs and metrics, never the key itself.
pub fn short_hash(scope: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update((scope.len() as u64).to_be_bytes());
    hasher.update(scope.as_bytes());
    hasher.update(key.as_bytes());
    hex::encode(&hasher.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &[u8], content_type: &str) -> Fingerprint {
        Fingerprint::of_request(
            &Method::POST,
            "/v1/things",
            None,
            Some(content_type.as_bytes()),
            body,
        )
    }

    #[test]
    fn reordered_and_reformatted_json_has_the_same_fingerprint() {
        let a = post(br#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#, "application/json");
        let b = post(
            b"{ \"a\" : { \"x\" : \"s\", \"y\" : [1, 2] },\n \"b\" : 1 }",
            "application/json; charset=utf-8",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn vendor_json_types_are_canonicalised_too() {
        let a = post(br#"{"b":1,"a":2}"#, "application/merge-patch+json");
        let b = post(br#"{"a":2,"b":1}"#, "application/merge-patch+json");
        assert_eq!(a, b);
    }

    #[test]
    fn different_json_values_differ() {
        assert_ne!(
            post(br#"{"a":1}"#, "application/json"),
            post(br#"{"a":2}"#, "application/json")
        );
        assert_ne!(
            post(br#"{"a":[1,2]}"#, "application/json"),
            post(br#"{"a":[2,1]}"#, "application/json")
        );
    }

    #[test]
    fn non_json_bodies_are_compared_as_raw_bytes() {
        assert_ne!(
            post(br#"{"b":1,"a":2}"#, "text/plain"),
            post(br#"{"a":2,"b":1}"#, "text/plain")
        );
        assert_eq!(post(b"hello", "text/plain"), post(b"hello", "text/plain"));
    }

    #[test]
    fn invalid_json_falls_back_to_raw_bytes() {
        assert_eq!(
            post(b"{not json", "application/json"),
            post(b"{not json", "application/json")
        );
        assert_ne!(
            post(b"{not json", "application/json"),
            post(b"{not  json", "application/json")
        );
    }

    #[test]
    fn method_path_and_query_are_part_of_the_fingerprint() {
        let base = Fingerprint::of_request(&Method::POST, "/a", Some("x=1"), None, b"");
        assert_ne!(
            base,
            Fingerprint::of_request(&Method::PATCH, "/a", Some("x=1"), None, b"")
        );
        assert_ne!(
            base,
            Fingerprint::of_request(&Method::POST, "/b", Some("x=1"), None, b"")
        );
        assert_ne!(
            base,
            Fingerprint::of_request(&Method::POST, "/a", Some("x=2"), None, b"")
        );
        // Length prefixes: moving a byte between path and query changes the fingerprint.
        assert_ne!(
            Fingerprint::of_request(&Method::POST, "/ab", Some("c"), None, b""),
            Fingerprint::of_request(&Method::POST, "/a", Some("bc"), None, b"")
        );
    }

    /// Random JSON text: nested, with duplicate keys, escapes, odd spacing and numbers
    /// written many ways, sometimes cut short (not JSON at all).
    fn random_json(rng: &mut impl rand::Rng, depth: u32, out: &mut String) {
        let space = |rng: &mut dyn rand::RngCore, out: &mut String| {
            for _ in 0..rng.next_u32() % 3 {
                out.push([' ', '\n', '\t', '\r'][(rng.next_u32() % 4) as usize]);
            }
        };
        const STRINGS: [&str; 10] = [
            r#""a""#,
            r#""b""#,
            r#""é""#,
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""😀""#,
            r#""tab\there""#,
            r#""quote\"\\""#,
            r#""""#,
            r#""\/slash""#,
        ];
        const NUMBERS: [&str; 12] = [
            "0",
            "-0",
            "1",
            "1.0",
            "1e2",
            "1E-7",
            "-12.5e+3",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "0.1",
            "123456789.123456789",
        ];
        space(rng, out);
        match if depth == 0 {
            rng.gen_range(0..4)
        } else {
            rng.gen_range(0..6)
        } {
            0 => out.push_str(STRINGS[rng.gen_range(0..STRINGS.len())]),
            1 => out.push_str(NUMBERS[rng.gen_range(0..NUMBERS.len())]),
            2 => out.push_str(["true", "false"][rng.gen_range(0..2)]),
            3 => out.push_str("null"),
            4 => {
                out.push('[');
                for index in 0..rng.gen_range(0..4) {
                    if index > 0 {
                        out.push(',');
                    }
                    random_json(rng, depth - 1, out);
                }
                space(rng, out);
                out.push(']');
            }
            _ => {
                out.push('{');
                for index in 0..rng.gen_range(0..5) {
                    if index > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    // Few distinct keys, so that duplicates are common.
                    out.push_str(STRINGS[rng.gen_range(0..6)]);
                    space(rng, out);
                    out.push(':');
                    random_json(rng, depth - 1, out);
                }
                space(rng, out);
                out.push('}');
            }
        }
        space(rng, out);
    }

    #[test]
    fn the_streaming_canonical_form_is_the_one_of_the_parsed_value() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            random_json(&mut rng, 4, &mut text);
            if rng.gen_ratio(1, 10) {
                let cut = rng.gen_range(0..=text.len());
                text.truncate((0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap());
            }
            let expected = serde_json::from_str::<Value>(&text)
                .ok()
                .map(|value| canonical_json(&value));
            parsed += usize::from(expected.is_some());
            assert_eq!(
                canonicalize(text.as_bytes()).map(String::from_utf8),
                expected.map(String::from_utf8),
                "for {text:?}"
            );
        }
        assert!(parsed > 15_000, "most samples are JSON ({parsed})");
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value() {
        assert_eq!(
            canonicalize(br#"{"b":1,"a":2,"b":3}"#).map(String::from_utf8),
            Some(Ok(r#"{"a":2,"b":3}"#.to_owned()))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_by_code_point() {
        let value: Value = serde_json::from_str(r#"{"😀":1,"｡":2,"a":3,"B":4}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"B":4,"a":3,"｡":2,"😀":1}"#
        );
    }
}
