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
    match content_type.filter(|ct| is_json_content_type(ct)) {
        Some(_) => match serde_json::from_slice::<Value>(body) {
            Ok(document) => {
                hasher.update(b"json:");
                hasher.update(canonical_json(&document));
            }
            Err(_) => {
                hasher.update(b"raw:");
                hasher.update(body);
            }
        },
        None => {
            hasher.update(b"raw:");
            hasher.update(body);
        }
    }
    hasher.finalize().into()
}

/// Writes a JSON value in canonical form: keys sorted by code point, compact
/// separators, serde_json's number and string formatting.
///
/// Sorting is done here rather than relying on `serde_json::Map` iteration order,
/// because any crate in a build can turn on serde_json's `preserve_order` feature.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

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

    #[test]
    fn canonical_json_sorts_keys_by_code_point() {
        let value: Value = serde_json::from_str(r#"{"😀":1,"｡":2,"a":3,"B":4}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"B":4,"a":3,"｡":2,"😀":1}"#
        );
    }
}
