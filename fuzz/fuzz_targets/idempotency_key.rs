//! `IdempotencyKey::parse` on arbitrary header bytes: never panics, and every key it
//! accepts obeys the contract (1 to 255 visible ASCII characters after unquoting,
//! the bare and the quoted forms naming the same key).

#![no_main]

use http::{HeaderMap, HeaderValue};
use idempotency::{IdempotencyKey, IDEMPOTENCY_KEY, MAX_KEY_LEN};
use libfuzzer_sys::fuzz_target;

/// The Structured Field string form of a key: quotes around it, `"` and `\` escaped.
fn quoted(key: &str) -> Vec<u8> {
    let mut out = vec![b'"'];
    for byte in key.bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
    out
}

fn is_visible_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

fuzz_target!(|raw: &[u8]| {
    let parsed = IdempotencyKey::parse(raw);

    if let Ok(key) = &parsed {
        let text = key.as_str().as_bytes();
        assert!(
            (1..=MAX_KEY_LEN).contains(&text.len()),
            "accepted a key of {} characters",
            text.len()
        );
        assert!(is_visible_ascii(text), "accepted a key outside 0x21..=0x7E");
        // The quoted form of an accepted key names the same key, and a quoted input
        // is the only way to write that key quoted (escapes are \" and \\ only).
        let requoted = quoted(key.as_str());
        assert_eq!(
            IdempotencyKey::parse(&requoted).as_ref(),
            Ok(key),
            "the quoted form of a key parses back to it"
        );
        if raw.first() == Some(&b'"') {
            assert_eq!(requoted, raw, "sf-string quoting is unique");
        } else {
            assert_eq!(text, raw, "a bare key is taken as it is");
        }
    }

    // Every bare run of 1..=255 visible ASCII characters that does not open a quote is
    // a key.
    if raw.first() != Some(&b'"') && (1..=MAX_KEY_LEN).contains(&raw.len()) && is_visible_ascii(raw)
    {
        assert!(parsed.is_ok(), "rejected the valid bare key {raw:?}");
    }

    // Through the header map, as the layer reads it: the same answer, and a repeated
    // header is always an error.
    if let Ok(value) = HeaderValue::from_bytes(raw) {
        let mut headers = HeaderMap::new();
        headers.append(IDEMPOTENCY_KEY, value.clone());
        let from_headers = IdempotencyKey::from_headers(headers.get_all(IDEMPOTENCY_KEY));
        assert_eq!(from_headers, parsed.clone().map(Some));
        headers.append(IDEMPOTENCY_KEY, value);
        assert!(IdempotencyKey::from_headers(headers.get_all(IDEMPOTENCY_KEY)).is_err());
    }
});
