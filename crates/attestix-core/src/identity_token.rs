//! What a UAIT keeps of the identity token an agent was created from: a masked form
//! and bounded metadata, never the token itself.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::validation::python_strip;

/// The kind of an identity token, as the Python reference's `detect_token_type` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A three-part JWT whose header and payload decode to JSON objects.
    Jwt,
    /// A DID (`did:method:…`).
    Did,
    /// An `http(s)://` URL.
    Url,
    /// A long hex or mixed-case alphanumeric key.
    ApiKey,
    /// Anything else.
    Unknown,
}

impl TokenKind {
    /// The name written into `token_info.token_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::Did => "did",
            Self::Url => "url",
            Self::ApiKey => "api_key",
            Self::Unknown => "unknown",
        }
    }

    /// Classify `token` (surrounding whitespace ignored), checking the kinds in the
    /// reference's order: DID, JWT, URL, API key.
    pub fn detect(token: &str) -> Self {
        let token = python_strip(token);
        if is_did(token) {
            Self::Did
        } else if decode_jwt_header(token).is_some() {
            Self::Jwt
        } else if is_url(token) {
            Self::Url
        } else if is_api_key(token) {
            Self::ApiKey
        } else {
            Self::Unknown
        }
    }
}

/// JWT algorithm names PyJWT knows (`jwt.algorithms.get_default_algorithms()`); only
/// these are copied into `token_info`, so a crafted header cannot smuggle text in.
const KNOWN_JWT_ALGORITHMS: [&str; 16] = [
    "ES256", "ES256K", "ES384", "ES512", "ES521", "EdDSA", "HS256", "HS384", "HS512", "PS256",
    "PS384", "PS512", "RS256", "RS384", "RS512", "none",
];

/// The token as a UAIT stores it: a token longer than 11 characters becomes its first
/// four characters, `...`, and its last four; a shorter non-empty token becomes `***`
/// (four and four of at most eleven would reveal nearly all of it); an empty token
/// stays empty.
pub fn mask_identity_token(token: &str) -> String {
    let length = token.chars().count();
    match length {
        0 => String::new(),
        1..=11 => "***".to_owned(),
        _ => {
            let head: String = token.chars().take(4).collect();
            let tail: String = token.chars().skip(length - 4).collect();
            format!("{head}...{tail}")
        }
    }
}

/// The `token_info` of a UAIT (the Python reference 0.4.3's bounded form): the token's
/// kind and length and, for a JWT, `claims_verified: false` and the header's `alg` when
/// it is a known algorithm. Nothing of the token's content is kept; an empty token
/// gives an empty object.
pub fn describe_identity_token(token: &str) -> Map<String, Value> {
    let mut info = Map::new();
    if token.is_empty() {
        return info;
    }
    let kind = TokenKind::detect(token);
    info.insert("token_type".to_owned(), kind.as_str().into());
    info.insert("token_length".to_owned(), token.chars().count().into());
    if kind == TokenKind::Jwt {
        info.insert("claims_verified".to_owned(), false.into());
        let algorithm = decode_jwt_header(python_strip(token))
            .and_then(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned))
            .filter(|algorithm| KNOWN_JWT_ALGORITHMS.contains(&algorithm.as_str()));
        if let Some(algorithm) = algorithm {
            info.insert("jwt_algorithm".to_owned(), algorithm.into());
        }
    }
    info
}

/// `^did:[a-z0-9]+:.+$`, case-insensitive.
fn is_did(token: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_ascii_case(token, "did:") else {
        return false;
    };
    let Some((method, specific)) = rest.split_once(':') else {
        return false;
    };
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_alphanumeric())
        && !specific.is_empty()
        && !specific.contains('\n')
}

/// `^https?://.+$`, case-insensitive.
fn is_url(token: &str) -> bool {
    let rest = strip_prefix_ignore_ascii_case(token, "https://")
        .or_else(|| strip_prefix_ignore_ascii_case(token, "http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.contains('\n'))
}

/// `^[A-Fa-f0-9]{32,}$` or `^(?=.*[A-Z])(?=.*[a-z0-9])[A-Za-z0-9_-]{32,}$`.
fn is_api_key(token: &str) -> bool {
    let bytes = token.as_bytes();
    if bytes.len() < 32 {
        return false;
    }
    let hex = bytes.iter().all(u8::is_ascii_hexdigit);
    let mixed = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && bytes.iter().any(u8::is_ascii_uppercase)
        && bytes
            .iter()
            .any(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    hex || mixed
}

fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The header of `token` if it is shaped like a JWT that PyJWT decodes without
/// verification: three base64url segments, header and payload JSON objects.
fn decode_jwt_header(token: &str) -> Option<Map<String, Value>> {
    // Python's base64 decoder is lenient about padding and leftover bits.
    const LENIENT_BASE64URL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut segments = token.split('.');
    let (header, payload, signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None;
    }
    let is_segment = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !(is_segment(header) && is_segment(payload) && is_segment(signature)) {
        return None;
    }
    let header: Value = serde_json::from_slice(&LENIENT_BASE64URL.decode(header).ok()?).ok()?;
    let payload: Value = serde_json::from_slice(&LENIENT_BASE64URL.decode(payload).ok()?).ok()?;
    LENIENT_BASE64URL.decode(signature).ok()?;
    match (header, payload) {
        (Value::Object(header), Value::Object(_)) => Some(header),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // header {"alg":"HS256","typ":"JWT"}, payload {"sub":"1234567890","name":"John Doe","iat":1516239022}
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn long_tokens_keep_four_characters_at_each_end() {
        assert_eq!(
            mask_identity_token("sk-abcdefghijklmnop1234"),
            "sk-a...1234"
        );
        assert_eq!(mask_identity_token("123456789012"), "1234...9012");
        assert_eq!(mask_identity_token("ééééééééééééxyz"), "éééé...éxyz");
    }

    #[test]
    fn short_tokens_are_fully_hidden_and_empty_stays_empty() {
        assert_eq!(mask_identity_token("12345678901"), "***");
        assert_eq!(mask_identity_token("x"), "***");
        assert_eq!(mask_identity_token(""), "");
    }

    #[test]
    fn token_kinds_are_detected_in_the_reference_order() {
        assert_eq!(TokenKind::detect(JWT), TokenKind::Jwt);
        assert_eq!(TokenKind::detect(" did:web:example.com "), TokenKind::Did);
        assert_eq!(TokenKind::detect("DID:KEY:z6Mk"), TokenKind::Did);
        assert_eq!(
            TokenKind::detect("https://agent.example/card"),
            TokenKind::Url
        );
        assert_eq!(TokenKind::detect(&"ab12".repeat(8)), TokenKind::ApiKey);
        assert_eq!(TokenKind::detect(&"Ab_-".repeat(8)), TokenKind::ApiKey);
        assert_eq!(TokenKind::detect(&"ab_-".repeat(8)), TokenKind::Unknown);
        assert_eq!(TokenKind::detect("a.b.c"), TokenKind::Unknown);
        assert_eq!(TokenKind::detect("did:key:"), TokenKind::Unknown);
        assert_eq!(TokenKind::detect("https://"), TokenKind::Unknown);
    }

    #[test]
    fn token_info_holds_metadata_only() {
        assert_eq!(
            Value::Object(describe_identity_token(JWT)),
            json!({"token_type": "jwt", "token_length": JWT.len(), "claims_verified": false, "jwt_algorithm": "HS256"})
        );
        let key = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
        let info = Value::Object(describe_identity_token(key));
        assert_eq!(
            info,
            json!({"token_type": "api_key", "token_length": key.len()})
        );
        assert!(describe_identity_token("").is_empty());
    }

    #[test]
    fn unknown_jwt_algorithms_are_not_copied() {
        // header {"alg":"<script>"}
        let header =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"<script>"}"#);
        let token = format!("{header}.e30.c2ln");
        let info = describe_identity_token(&token);
        assert_eq!(info.get("token_type"), Some(&json!("jwt")));
        assert!(!info.contains_key("jwt_algorithm"));
    }
}
