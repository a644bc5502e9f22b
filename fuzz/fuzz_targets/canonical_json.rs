//! `attestix_core::canonical_bytes` (the bytes Attestix signs) on any JSON text: never
//! panics, and when it succeeds its output is JSON that is its own canonical form, so
//! a document re-serialised by anyone still has the same signed bytes.

#![no_main]

use attestix_core::canonical::{canonical_bytes, canonical_bytes_without};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(canonical) = canonical_bytes(&value) else {
        return;
    };

    // A fixed point: the canonical bytes parse, and are their own canonical form.
    let reparsed: Value = serde_json::from_slice(&canonical).unwrap_or_else(|error| {
        panic!(
            "canonical bytes are not JSON ({error}): {}",
            String::from_utf8_lossy(&canonical)
        )
    });
    assert_eq!(
        canonical_bytes(&reparsed).as_deref(),
        Ok(&canonical[..]),
        "canonicalising the canonical bytes changed them"
    );

    // Whatever serde_json writes back (compact or pretty) signs the same.
    for text in [
        serde_json::to_string(&value).expect("a parsed value serialises"),
        serde_json::to_string_pretty(&value).expect("a parsed value serialises"),
    ] {
        let again: Value = serde_json::from_str(&text).expect("serde_json reads its own output");
        assert_eq!(
            canonical_bytes(&again).as_deref(),
            Ok(&canonical[..]),
            "re-serialising changed the signed bytes: {text}"
        );
    }

    // Leaving out top-level keys is the same as removing them first.
    if let Value::Object(map) = &value {
        if let Some(first) = map.keys().next().cloned() {
            let mut without = map.clone();
            without.remove(&first);
            assert_eq!(
                canonical_bytes_without(&value, &[first.as_str()]),
                canonical_bytes(&Value::Object(without)),
            );
        }
    }
});
