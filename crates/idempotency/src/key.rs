//! Parsing the `Idempotency-Key` header.
//!
//! Two forms are accepted: the IETF draft's Structured Field string (`"abc"`, with
//! `\"` and `\\` unescaped) and the bare token that Stripe's clients send (`abc`).
//! After unquoting, a key is 1 to 255 characters of visible ASCII (0x21..=0x7E).

use std::fmt;

use http::header::GetAll;
use http::HeaderValue;

/// The name of the request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest key accepted, in characters (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// A validated idempotency key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses one header value in either accepted form.
    pub fn parse(raw: &[u8]) -> Result<Self, KeyError> {
        let unquoted = if raw.first() == Some(&b'"') {
            unquote_sf_string(raw)?
        } else {
            raw.to_vec()
        };
        if unquoted.is_empty() {
            return Err(KeyError::Empty);
        }
        if unquoted.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                length: unquoted.len(),
            });
        }
        if let Some(position) = unquoted.iter().position(|b| !(0x21..=0x7e).contains(b)) {
            return Err(KeyError::InvalidCharacter { position });
        }
        // Every byte is visible ASCII, so this cannot fail.
        let text =
            String::from_utf8(unquoted).map_err(|_| KeyError::InvalidCharacter { position: 0 })?;
        Ok(Self(text))
    }

    /// Extracts the key from all `Idempotency-Key` header values of a request:
    /// `Ok(None)` without the header, an error for more than one.
    pub fn from_headers(values: GetAll<'_, HeaderValue>) -> Result<Option<Self>, KeyError> {
        let mut values = values.iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(KeyError::Repeated);
        }
        Self::parse(first.as_bytes()).map(Some)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the key into its text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    // Keys are bearer-like values: they are never printed in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdempotencyKey({})",
            crate::fingerprint::short_hash("", &self.0)
        )
    }
}

fn unquote_sf_string(raw: &[u8]) -> Result<Vec<u8>, KeyError> {
    // raw[0] is the opening quote.
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 1;
    while index < raw.len() {
        match raw[index] {
            b'\\' => {
                match raw.get(index + 1) {
                    Some(&escaped @ (b'"' | b'\\')) => out.push(escaped),
                    _ => return Err(KeyError::BadQuoting),
                }
                index += 2;
            }
            b'"' => {
                // The closing quote must end the value.
                return if index == raw.len() - 1 {
                    Ok(out)
                } else {
                    Err(KeyError::BadQuoting)
                };
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Err(KeyError::BadQuoting)
}

/// Why an `Idempotency-Key` header was rejected. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The request carried the header more than once.
    #[error("the Idempotency-Key header must appear at most once")]
    Repeated,
    /// The key is empty.
    #[error("the Idempotency-Key must be 1 to 255 characters long; it is empty")]
    Empty,
    /// The key is longer than 255 characters.
    #[error("the Idempotency-Key must be 1 to 255 characters long; it has {length}")]
    TooLong {
        /// The length found.
        length: usize,
    },
    /// A character outside visible ASCII (0x21..=0x7E).
    #[error(
        "the Idempotency-Key may contain only visible ASCII characters (0x21-0x7E); \
         character {position} is not one"
    )]
    InvalidCharacter {
        /// Zero-based byte offset of the first offending character (after unquoting).
        position: usize,
    },
    /// A quoted key that is not a valid Structured Field string.
    #[error(
        "a quoted Idempotency-Key must be a Structured Field string: a closing quote \
         at the end, and only \\\" or \\\\ escapes"
    )]
    BadQuoting,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_forms_give_the_same_key() {
        assert_eq!(
            IdempotencyKey::parse(b"abc-123").unwrap().as_str(),
            "abc-123"
        );
        assert_eq!(
            IdempotencyKey::parse(b"\"abc-123\"").unwrap().as_str(),
            "abc-123"
        );
    }

    #[test]
    fn sf_string_escapes_are_unescaped() {
        assert_eq!(
            IdempotencyKey::parse(br#""a\"b\\c""#).unwrap().as_str(),
            r#"a"b\c"#
        );
    }

    #[test]
    fn malformed_quoting_is_rejected() {
        for raw in [&br#""abc"#[..], br#""ab"c""#, br#""a\nb""#, b"\""] {
            assert_eq!(
                IdempotencyKey::parse(raw),
                Err(KeyError::BadQuoting),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn length_limits_are_1_to_255() {
        assert_eq!(IdempotencyKey::parse(b""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse(b"\"\""), Err(KeyError::Empty));
        let max = vec![b'k'; 255];
        assert!(IdempotencyKey::parse(&max).is_ok());
        let over = vec![b'k'; 256];
        assert_eq!(
            IdempotencyKey::parse(&over),
            Err(KeyError::TooLong { length: 256 })
        );
    }

    #[test]
    fn only_visible_ascii_is_allowed() {
        assert_eq!(
            IdempotencyKey::parse(b"ab c"),
            Err(KeyError::InvalidCharacter { position: 2 })
        );
        assert!(matches!(
            IdempotencyKey::parse("caf\u{e9}".as_bytes()),
            Err(KeyError::InvalidCharacter { position: 3 })
        ));
        assert!(IdempotencyKey::parse(b"a\tb").is_err());
        assert!(IdempotencyKey::parse(b"!~").is_ok());
    }

    #[test]
    fn a_repeated_header_is_rejected() {
        let mut headers = http::HeaderMap::new();
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
        assert_eq!(
            IdempotencyKey::from_headers(headers.get_all(IDEMPOTENCY_KEY)),
            Err(KeyError::Repeated)
        );
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = IdempotencyKey::parse(b"secret-looking-key").unwrap();
        assert!(!format!("{key:?}").contains("secret"));
    }
}
