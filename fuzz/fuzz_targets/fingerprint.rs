//! `Fingerprint::of_request`, `idempotency::fingerprint::canonical_json` and
//! `canonicalize`: never panic, are deterministic, agree with each other, and a JSON
//! body that parses has the same fingerprint as the same document written with other
//! spacing (what a retrying client may send).

#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use idempotency::fingerprint::{canonical_json, canonicalize};
use idempotency::Fingerprint;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    method: u8,
    path: &'a str,
    query: Option<&'a str>,
    content_type: ContentType<'a>,
    body: &'a [u8],
}

#[derive(Debug, Arbitrary)]
enum ContentType<'a> {
    None,
    Json,
    JsonWithCharset,
    ProblemJson,
    Text,
    Raw(&'a [u8]),
}

impl ContentType<'_> {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::None => None,
            Self::Json => Some(b"application/json"),
            Self::JsonWithCharset => Some(b"Application/JSON; charset=utf-8"),
            Self::ProblemJson => Some(b"application/problem+json"),
            Self::Text => Some(b"text/plain"),
            Self::Raw(raw) => Some(raw),
        }
    }
}

fuzz_target!(|request: Request<'_>| {
    let method = match request.method % 4 {
        0 => Method::POST,
        1 => Method::PATCH,
        2 => Method::PUT,
        _ => Method::DELETE,
    };
    let content_type = request.content_type.bytes();
    let fingerprint = |body: &[u8]| {
        Fingerprint::of_request(&method, request.path, request.query, content_type, body)
    };
    let first = fingerprint(request.body);
    assert_eq!(first, fingerprint(request.body), "deterministic");
    assert_eq!(
        Fingerprint::from_slice(first.as_bytes()),
        Some(first),
        "stored bytes rebuild the fingerprint"
    );

    let parsed = serde_json::from_slice::<Value>(request.body);
    // The fingerprint's streaming canonicaliser agrees with canonical_json on the
    // parsed value, and refuses exactly what serde_json refuses.
    assert_eq!(
        canonicalize(request.body),
        parsed.as_ref().ok().map(canonical_json),
        "streaming and Value canonical forms differ"
    );
    let Ok(document) = parsed else {
        return;
    };
    // canonical_json writes JSON that reads back as the same document.
    let canonical = canonical_json(&document);
    let reparsed: Value = serde_json::from_slice(&canonical).unwrap_or_else(|error| {
        panic!(
            "canonical_json wrote invalid JSON ({error}): {}",
            String::from_utf8_lossy(&canonical)
        )
    });
    assert_eq!(reparsed, document, "canonical_json changed the document");
    assert_eq!(
        canonical_json(&reparsed),
        canonical,
        "canonical_json is a fixed point"
    );

    let is_json = matches!(
        request.content_type,
        ContentType::Json | ContentType::JsonWithCharset | ContentType::ProblemJson
    );
    if is_json {
        let pretty = serde_json::to_vec_pretty(&document).expect("a parsed value serialises");
        assert_eq!(
            fingerprint(&pretty),
            first,
            "the same JSON written with other spacing is the same request"
        );
        assert_eq!(fingerprint(&canonical), first);
    }
});
