//! Canonical JSON bytes: what Attestix signs.
//!
//! This is the Python reference's own format (`attestix.auth.crypto.canonicalize_json`),
//! not strict RFC 8785:
//!
//! 1. every string and every object key is NFC-normalised, and two keys of one object
//!    that are equal after NFC are an error;
//! 2. a float with an integral value becomes an integer (`1.0` → `1`, `1e21` →
//!    `1000000000000000000000`), except negative zero, which stays `-0.0`; non-finite
//!    numbers are an error;
//! 3. keys are sorted by Unicode code point, separators are `,` and `:` with no
//!    whitespace, non-ASCII is written as raw UTF-8, strings are escaped as Python's
//!    `json.dumps` escapes them, and non-integral floats are written as Python's `repr`.
//!
//! ```
//! use attestix_core::canonical::canonical_bytes;
//! use serde_json::json;
//!
//! let doc = json!({"b": 1, "a": [1.0, 2.5, -0.0, 1e-07]});
//! assert_eq!(canonical_bytes(&doc).unwrap(), br#"{"a":[1,2.5,-0.0,1e-07],"b":1}"#);
//! ```
//!
//! # Numbers the JSON parser has already changed
//!
//! The input is a [`serde_json::Value`], so a number is whatever `serde_json` made of
//! its text. This crate turns on `serde_json/float_roundtrip`, so every float literal
//! parses to the same `f64` as Python's `json.loads` gives. Two literal forms still
//! cannot be told apart once parsed, and canonicalise differently from Python:
//!
//! * an integer literal outside the `i64`/`u64` range (`123456789012345678901234567890`)
//!   is read by `serde_json` as the nearest `f64`, and written here as that float's exact
//!   integer value, where Python keeps the integer exactly. Literals written as floats
//!   (`1e21`, `1.8446744073709552e+19`) agree with Python, and so does every document
//!   this crate's users store, because `serde_json` writes such a number back as a float.
//!   (If some crate in the build turns on `serde_json/arbitrary_precision`, the literal
//!   survives parsing and is written exactly, as Python does.)
//! * the literal `-0` is read by `serde_json` as the float `-0.0` and written `-0.0`;
//!   Python reads it as the integer `0`.

use std::borrow::Cow;
use std::io::Write as _;

use serde_json::{Map, Number, Value};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Why a JSON value has no canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Two keys of one object are equal after NFC normalisation, so one of the two
    /// values would silently disappear from what is signed.
    #[error("object key {key:?} occurs twice after Unicode NFC normalisation")]
    DuplicateKeyAfterNfc {
        /// The key, NFC-normalised.
        key: String,
    },
    /// NaN or an infinity: JSON has no such numbers.
    #[error("JSON numbers must be finite")]
    NonFiniteNumber,
}

/// The canonical bytes of `value`.
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// The canonical bytes of `value` with the top-level keys in `excluded_keys` left out,
/// as if they had been removed from the object first (the keys are matched as written,
/// before normalisation, like the Python reference's dict comprehension).
///
/// This is how a document's signed payload is formed (a UAIT without its mutable
/// fields, a credential without `proof` and `credentialStatus`) without copying it.
/// A `value` that is not an object is written whole.
pub fn canonical_bytes_without(
    value: &Value,
    excluded_keys: &[&str],
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    match value {
        Value::Object(map) => write_object(map, excluded_keys, &mut out)?,
        other => write_canonical(other, &mut out)?,
    }
    Ok(out)
}

/// The canonical bytes of a JSON object.
pub fn canonical_object_bytes(map: &Map<String, Value>) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_object(map, &[], &mut out)?;
    Ok(out)
}

/// Append the canonical bytes of `value` to `out`. On error, `out` holds a partial
/// document.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(&nfc(s), out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, &[], out)?,
    }
    Ok(())
}

/// `s` in Unicode Normalization Form C, borrowed when it already is (the common case).
fn nfc(s: &str) -> Cow<'_, str> {
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => Cow::Borrowed(s),
        IsNormalized::No | IsNormalized::Maybe => {
            let normalised: String = s.nfc().collect();
            if normalised == s {
                Cow::Borrowed(s)
            } else {
                Cow::Owned(normalised)
            }
        }
    }
}

fn write_object(
    map: &Map<String, Value>,
    excluded_keys: &[&str],
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    let mut entries: Vec<(Cow<'_, str>, &Value)> = map
        .iter()
        .filter(|(key, _)| !excluded_keys.contains(&key.as_str()))
        .map(|(key, value)| (nfc(key), value))
        .collect();
    // Rust orders `str` by UTF-8 bytes, which is the order of code points: Python's order.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(CanonicalError::DuplicateKeyAfterNfc {
            key: pair[0].0.clone().into_owned(),
        });
    }
    out.push(b'{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_canonical(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Write `s` (already normalised) as Python's `json.dumps(..., ensure_ascii=False)` does.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        write!(out, "{i}").expect("writing to a Vec<u8> cannot fail");
        return Ok(());
    }
    if let Some(u) = n.as_u64() {
        write!(out, "{u}").expect("writing to a Vec<u8> cannot fail");
        return Ok(());
    }
    let f = n.as_f64().ok_or(CanonicalError::NonFiniteNumber)?;
    if !f.is_finite() {
        return Err(CanonicalError::NonFiniteNumber);
    }
    // Only under `serde_json/arbitrary_precision` can a number that is neither i64 nor
    // u64 still be an integer literal; it is then at least 2^63 in magnitude. Python
    // keeps such an integer exactly, so write the literal.
    if f.abs() >= 9_223_372_036_854_775_808.0 {
        let literal = n.to_string();
        let digits = literal.strip_prefix('-').unwrap_or(&literal);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            out.extend_from_slice(literal.as_bytes());
            return Ok(());
        }
    }
    write_float(f, out);
    Ok(())
}

/// Write a finite float as the Python reference does: an integral value as an integer
/// (negative zero excepted), anything else as Python's `repr`.
fn write_float(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() { b"-0.0" } else { b"0" });
    } else if f.fract() == 0.0 {
        // `{:.0}` is exact for an integral float (`1e23` → `99999999999999991611392`),
        // as Python's `int(1e23)` is.
        write!(out, "{f:.0}").expect("writing to a Vec<u8> cannot fail");
    } else {
        write_python_repr(f, out);
    }
}

/// Python's `repr(float)` for a finite, non-zero float: the shortest digits that
/// round-trip, positional when the decimal point position `decpt` (value =
/// 0.d1d2… × 10^decpt) is in -3..=16, otherwise `d[.ddd]e±XX`.
fn write_python_repr(f: f64, out: &mut Vec<u8>) {
    // `{:e}` gives the shortest round-trip digits, like Python's repr, as `d.ddde-7`.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` output of a finite float always has an exponent");
    let exponent: i32 = exponent
        .parse()
        .expect("`{:e}` output of a finite float has an integer exponent");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let (digits, exponent) = break_tie_to_even(f, digits, exponent);
    let digits = digits.as_bytes();
    let decpt = exponent + 1;

    if negative {
        out.push(b'-');
    }
    if (-3..=16).contains(&decpt) {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', decpt.unsigned_abs() as usize));
            out.extend_from_slice(digits);
        } else {
            let point = decpt as usize;
            if point >= digits.len() {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', point - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits[point..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exponent.unsigned_abs())
            .expect("writing to a Vec<u8> cannot fail");
    }
}

/// Python's shortest repr breaks an exact tie between two shortest candidates to the
/// even last digit (`644988699245121.25` → `644988699245121.2`); Rust's `{:e}` rounds
/// such a tie up. `digits`/`exponent` are Rust's shortest form (`d.ddd × 10^exponent`);
/// this returns Python's.
fn break_tie_to_even(f: f64, digits: String, exponent: i32) -> (String, i32) {
    let n = digits.len();
    // A tie means the exact value has exactly n + 1 significant digits, the last a 5.
    let rounded = format!("{:.*e}", n, f.abs());
    let rounded_digits: String = rounded
        .split_once('e')
        .map_or("", |(mantissa, _)| mantissa)
        .chars()
        .filter(|c| *c != '.')
        .collect();
    if !rounded_digits.ends_with('5') {
        return (digits, exponent);
    }
    // Every double's exact expansion has at most 767 significant digits.
    let exact = format!("{:.800e}", f.abs());
    let (exact_mantissa, exact_exponent) = exact
        .split_once('e')
        .expect("`{:e}` output of a finite float always has an exponent");
    let exact_digits: Vec<u8> = exact_mantissa.bytes().filter(|b| *b != b'.').collect();
    let is_tie =
        exact_digits.get(n) == Some(&b'5') && exact_digits[n + 1..].iter().all(|d| *d == b'0');
    if !is_tie {
        return (digits, exponent);
    }
    let exact_exponent: i32 = exact_exponent
        .parse()
        .expect("`{:e}` output of a finite float has an integer exponent");
    // The candidates are the exact digits truncated to n, and that plus one unit.
    let mut candidate = exact_digits[..n].to_vec();
    let mut candidate_exponent = exact_exponent;
    if candidate[n - 1] % 2 == 1 {
        let mut i = n;
        loop {
            if i == 0 {
                candidate.insert(0, b'1');
                candidate_exponent += 1;
                break;
            }
            i -= 1;
            if candidate[i] == b'9' {
                candidate[i] = b'0';
            } else {
                candidate[i] += 1;
                break;
            }
        }
    }
    while candidate.len() > 1 && candidate.last() == Some(&b'0') {
        candidate.pop();
    }
    let candidate = String::from_utf8(candidate).expect("ASCII digits");
    // Keep Rust's choice unless the even candidate provably reads back as `f`.
    let reads_back = format!(
        "{candidate}e{}",
        candidate_exponent - (candidate.len() as i32 - 1)
    )
    .parse::<f64>()
    .is_ok_and(|parsed| parsed == f.abs());
    if reads_back {
        (candidate, candidate_exponent)
    } else {
        (digits, exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical_str(value: &Value) -> String {
        String::from_utf8(canonical_bytes(value).expect("value has canonical bytes"))
            .expect("canonical bytes are UTF-8")
    }

    fn canonical_of_json(text: &str) -> String {
        canonical_str(&serde_json::from_str(text).expect("test JSON parses"))
    }

    #[test]
    fn spec_example_numbers_and_key_order() {
        let input =
            r#"{"b":1,"a":[1.0,2.5,-0.0,1e-07,1e21,0.30000000000000004,1e16,123456789.125]}"#;
        assert_eq!(
            canonical_of_json(input),
            r#"{"a":[1,2.5,-0.0,1e-07,1000000000000000000000,0.30000000000000004,10000000000000000,123456789.125],"b":1}"#
        );
    }

    #[test]
    fn spec_example_nfc_and_escaping() {
        let input = json!({
            "cafe\u{0301}": "xe\u{0301}",
            "e": "\u{1F600}",
            "k": "\"q\"\\\n\t\u{0001}",
        });
        assert_eq!(
            canonical_bytes(&input).unwrap(),
            "{\"caf\u{e9}\":\"x\u{e9}\",\"e\":\"\u{1F600}\",\"k\":\"\\\"q\\\"\\\\\\n\\t\\u0001\"}"
                .as_bytes()
        );
    }

    #[test]
    fn spec_example_keys_sorted_by_code_point() {
        let input = json!({"\u{1F600}": 1, "\u{FF61}": 2, "a": 3});
        assert_eq!(
            canonical_str(&input),
            "{\"a\":3,\"\u{FF61}\":2,\"\u{1F600}\":1}"
        );
    }

    #[test]
    fn floats_follow_python_repr() {
        let cases = [
            ("1e16", "10000000000000000"),
            ("1e-05", "1e-05"),
            ("0.0001", "0.0001"),
            ("0.00012345", "0.00012345"),
            ("123456789012345680.0", "123456789012345680"),
            ("1e23", "99999999999999991611392"),
            ("1.5e-05", "1.5e-05"),
            ("-2.5e-10", "-2.5e-10"),
            ("5e-324", "5e-324"),
            ("1e-100", "1e-100"),
            ("2.2250738585072014e-308", "2.2250738585072014e-308"),
            ("0.1", "0.1"),
            ("-0.5", "-0.5"),
            ("4503599627370495.5", "4503599627370495.5"),
            ("1234567.0000001", "1234567.0000001"),
            ("644988699245121.25", "644988699245121.2"),
            ("644988699245121.75", "644988699245121.8"),
            ("0.0", "0"),
            ("-0.0", "-0.0"),
            ("1.7976931348623157e308", "179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_of_json(input), expected, "input {input}");
        }
    }

    #[test]
    fn integers_are_written_exactly() {
        assert_eq!(
            canonical_of_json(
                "[0,-1,9223372036854775807,-9223372036854775808,18446744073709551615]"
            ),
            "[0,-1,9223372036854775807,-9223372036854775808,18446744073709551615]"
        );
    }

    #[test]
    fn integer_literals_beyond_64_bits_become_the_nearest_float() {
        // Documented deviation: Python keeps 2^64 exactly; so does this (2^64 is a float),
        // but 10^23 + 1 is not representable: it becomes the nearest float, 10^23 + 2^23.
        assert_eq!(
            canonical_of_json("18446744073709551616"),
            "18446744073709551616"
        );
        assert_eq!(
            canonical_of_json("100000000000000000000001"),
            "100000000000000008388608"
        );
    }

    #[test]
    fn control_characters_escape_as_python_does() {
        let input = Value::String("\u{0}\u{8}\u{c}\r\u{1f}\u{7f}/</".to_owned());
        assert_eq!(
            canonical_str(&input),
            "\"\\u0000\\b\\f\\r\\u001f\u{7f}/</\""
        );
    }

    #[test]
    fn keys_equal_after_nfc_are_an_error() {
        let input = json!({"caf\u{e9}": 1, "cafe\u{301}": 2});
        assert_eq!(
            canonical_bytes(&input),
            Err(CanonicalError::DuplicateKeyAfterNfc {
                key: "caf\u{e9}".to_owned()
            })
        );
        let nested = json!([{"x": {"\u{212b}": 1, "\u{c5}": 2}}]);
        assert!(canonical_bytes(&nested).is_err());
    }

    #[test]
    fn nested_structures_and_literals() {
        let input = json!({"z": [true, false, null, {}, []], "a": {"d": "", "c": [1, [2]]}});
        assert_eq!(
            canonical_str(&input),
            r#"{"a":{"c":[1,[2]],"d":""},"z":[true,false,null,{},[]]}"#
        );
    }

    #[test]
    fn excluded_keys_are_left_out_only_at_the_top_level() {
        let input = json!({"proof": 1, "b": {"proof": 2}, "credentialStatus": 3});
        assert_eq!(
            canonical_bytes_without(&input, &["proof", "credentialStatus"]).unwrap(),
            br#"{"b":{"proof":2}}"#
        );
        assert_eq!(
            canonical_bytes_without(&json!([1]), &["proof"]).unwrap(),
            b"[1]"
        );
    }
}
