//! Python's `json.dumps(value, separators=(",", ":"))` byte for byte, with and
//! without `sort_keys=True`: what the reference hashes and signs outside the
//! canonical form (delegation token payloads, provenance chain hashes).

use std::fmt::Write as _;

use serde_json::Value;

/// `value` as Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))`:
/// keys sorted by code point, non-ASCII escaped as `\uXXXX` (surrogate pairs above
/// the BMP), no Unicode normalisation, floats as Python's `repr`.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, Style::SORTED, &mut out);
    out
}

/// `value` as Python's `json.dumps(value, sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`: as [`dumps_sorted`], with non-ASCII characters written as
/// themselves (the reference's Merkle leaves of audit batches).
pub fn dumps_sorted_unicode(value: &Value) -> String {
    let mut out = String::new();
    write_value(
        value,
        Style {
            sorted: true,
            ascii: false,
        },
        &mut out,
    );
    out
}

/// `value` as Python's `json.dumps(value, separators=(",", ":"))`: keys in the map's
/// order, otherwise as [`dumps_sorted`].
pub fn write_dumps(value: &Value, out: &mut String) {
    write_value(
        value,
        Style {
            sorted: false,
            ascii: true,
        },
        out,
    );
}

/// `sort_keys` and `ensure_ascii`.
#[derive(Clone, Copy)]
struct Style {
    sorted: bool,
    ascii: bool,
}

impl Style {
    const SORTED: Self = Self {
        sorted: true,
        ascii: true,
    };
}

fn write_value(value: &Value, style: Style, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, style.ascii, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, style, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // Python compares str by code point; Rust's str order is byte order of
            // UTF-8, which is the same.
            if style.sorted {
                keys.sort();
            }
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, style.ascii, out);
                out.push(':');
                write_value(&map[key], style, out);
            }
            out.push('}');
        }
    }
}

fn write_number(number: &serde_json::Number, out: &mut String) {
    if number.is_i64() || number.is_u64() {
        out.push_str(&number.to_string());
        return;
    }
    let f = number.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e16 {
        // Python's repr of an integral float keeps `.0`.
        let _ = write!(out, "{f:.1}");
    } else if f.fract() == 0.0 {
        // repr switches to exponent form at 1e16: `1e+16`, `1.5e+22`.
        let text = format!("{f:e}");
        out.push_str(&text.replacen('e', "e+", 1));
    } else {
        // The canonical form writes non-integral floats as Python's repr.
        let canonical = crate::canonical_bytes(&Value::Number(number.clone())).unwrap_or_default();
        out.push_str(&String::from_utf8_lossy(&canonical));
    }
}

fn write_string(text: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            // Without ensure_ascii Python escapes only the C0 controls (DEL and
            // everything above it are written as themselves).
            _ if !ascii && c >= '\u{7f}' => out.push(c),
            _ => {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_ensure_ascii_only_c0_controls_are_escaped() {
        // Python: json.dumps({"b": "é\x7f\x01\n😀", "a": 1.0}, sort_keys=True,
        // separators=(",", ":"), ensure_ascii=False)
        let value = serde_json::json!({"b": "é\u{7f}\u{1}\n😀", "a": 1.0});
        assert_eq!(
            dumps_sorted_unicode(&value),
            "{\"a\":1.0,\"b\":\"é\u{7f}\\u0001\\n😀\"}"
        );
        assert_eq!(
            dumps_sorted(&value),
            "{\"a\":1.0,\"b\":\"\\u00e9\\u007f\\u0001\\n\\ud83d\\ude00\"}"
        );
    }
}
