//! Checked inputs of the create requests ("parse, don't validate"): once a value of
//! one of these types exists, it obeys its rule, and the document builders take only
//! these types.
//!
//! ```
//! use attestix_core::validation::{DisplayName, ExpiryDays};
//!
//! let name = DisplayName::parse("  Report Bot\t").unwrap();
//! assert_eq!(name.as_str(), "Report Bot");
//! assert!(DisplayName::parse("   ").is_err());
//! assert_eq!(ExpiryDays::default().get(), 365);
//! assert!(ExpiryDays::parse(0).is_err());
//! ```

use std::fmt;

use serde_json::{Map, Value};

use crate::canonical::{canonical_object_bytes, CanonicalError};
use crate::document::nfc_value;

/// A create request's field that breaks its rule. The message names the field and the
/// rule; [`ValidationError::field`] gives the field alone (for a problem document's
/// list of offending fields).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `display_name` is empty once surrounding whitespace is trimmed.
    #[error("display_name must not be empty or whitespace-only")]
    DisplayNameEmpty,
    /// `display_name` is longer than [`DisplayName::MAX_CHARS`] characters.
    #[error("display_name must be at most 500 characters (got {0})")]
    DisplayNameTooLong(usize),
    /// `display_name` contains a control character other than tab.
    #[error("display_name must not contain control characters other than tab (found U+{0:04X})")]
    DisplayNameControlCharacter(u32),
    /// `display_name` has no visible character: only invisible, formatting or
    /// filler characters (such as U+200B, U+3164, U+FEFF or tag characters), which
    /// display as nothing.
    #[error(
        "display_name is blank: it must contain a visible character, not only invisible or formatting characters (it starts with U+{0:04X})"
    )]
    DisplayNameInvisible(u32),
    /// `display_name` contains a bidirectional embedding, override or isolate
    /// (U+202A..=U+202E, U+2066..=U+2069), which makes text display in another
    /// order than it is stored, so a name can pass for another.
    #[error(
        "display_name is unsafe: it must not contain bidirectional embedding, override or isolate characters, which reorder how it displays (found U+{0:04X})"
    )]
    DisplayNameBidiControl(u32),
    /// `expiry_days` is outside [`ExpiryDays::MIN`]..=[`ExpiryDays::MAX`].
    #[error("expiry_days must be between 1 and 36500 (got {0})")]
    ExpiryDaysOutOfRange(i64),
    /// `claims` is not a JSON object.
    #[error("claims must be a JSON object")]
    ClaimsNotAnObject,
    /// `claims` has a claim named `id`, which would replace the credential subject's id.
    #[error("claims must not contain a claim named \"id\" (the subject is set by subject_id)")]
    ClaimNamedId,
    /// `claims` cannot be signed (keys equal after Unicode normalisation).
    #[error("claims cannot be signed: {0}")]
    ClaimsNotCanonical(#[source] CanonicalError),
    /// `claims` nests deeper than [`Claims::MAX_DEPTH`].
    #[error(
        "claims must nest at most {} levels of objects and arrays (the claims object is \
         the first), so that the credential still verifies inside a presentation",
        Claims::MAX_DEPTH
    )]
    ClaimsTooDeep,
}

impl ValidationError {
    /// The request field that breaks its rule.
    pub fn field(&self) -> &'static str {
        match self {
            Self::DisplayNameEmpty
            | Self::DisplayNameTooLong(_)
            | Self::DisplayNameControlCharacter(_)
            | Self::DisplayNameInvisible(_)
            | Self::DisplayNameBidiControl(_) => "display_name",
            Self::ExpiryDaysOutOfRange(_) => "expiry_days",
            Self::ClaimsNotAnObject
            | Self::ClaimNamedId
            | Self::ClaimsNotCanonical(_)
            | Self::ClaimsTooDeep => "claims",
        }
    }
}

/// Python's `str.isspace()`, which `str.strip()` trims: Unicode White_Space plus the
/// information separators U+001C..=U+001F.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Trim whitespace at both ends as Python's `str.strip()` does.
pub(crate) fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_whitespace)
}

/// Whether `c` displays as nothing: Unicode's Default_Ignorable_Code_Point set
/// (zero-width and format characters, fillers such as U+3164, variation
/// selectors, tag characters; Unicode 15.1, DerivedCoreProperties.txt), plus
/// U+2800 BRAILLE PATTERN BLANK, which renders as a space without being one.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// Whether `c` is a bidirectional embedding, override or isolate (or their
/// terminators). The marks U+200E, U+200F and U+061C are not: they change no
/// order, and right-to-left names need them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// An agent's display name: trimmed, 1 to 500 characters, no control characters except
/// tab, at least one visible character, and no bidirectional overrides or isolates.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest display name, in characters (Unicode scalar values, as Python's
    /// `len` counts).
    pub const MAX_CHARS: usize = 500;

    /// Trim `raw` (Python's whitespace) and check the rules.
    ///
    /// "Control character" is Unicode's general category Cc (U+0000..=U+001F and
    /// U+007F..=U+009F): the Python reference rejects only those below U+0020; DEL and
    /// the C1 controls break terminals and logs just the same.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = python_strip(raw);
        if trimmed.is_empty() {
            return Err(ValidationError::DisplayNameEmpty);
        }
        let length = trimmed.chars().count();
        if length > Self::MAX_CHARS {
            return Err(ValidationError::DisplayNameTooLong(length));
        }
        if let Some(control) = trimmed.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(ValidationError::DisplayNameControlCharacter(u32::from(
                control,
            )));
        }
        if let Some(bidi) = trimmed.chars().find(|c| is_bidi_control(*c)) {
            return Err(ValidationError::DisplayNameBidiControl(u32::from(bidi)));
        }
        // Invisible characters between visible ones are ordinary text (emoji
        // sequences, Persian's zero-width non-joiner); a name of nothing but them
        // (whitespace aside) displays as nothing, which is blank.
        if trimmed
            .chars()
            .all(|c| is_invisible(c) || is_python_whitespace(c))
        {
            let first = trimmed.chars().find(|c| is_invisible(*c)).unwrap_or(' ');
            return Err(ValidationError::DisplayNameInvisible(u32::from(first)));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for DisplayName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DisplayName({:?})", self.0)
    }
}

/// How many days a document stays valid: 1 to 36500, 365 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpiryDays(u32);

impl ExpiryDays {
    /// The shortest validity.
    pub const MIN: u32 = 1;
    /// The longest validity (about a hundred years).
    pub const MAX: u32 = 36_500;
    /// The validity when a request names none.
    pub const DEFAULT: Self = Self(365);

    /// Check that `days` is in range.
    pub fn parse(days: i64) -> Result<Self, ValidationError> {
        u32::try_from(days)
            .ok()
            .filter(|days| (Self::MIN..=Self::MAX).contains(days))
            .map(Self)
            .ok_or(ValidationError::ExpiryDaysOutOfRange(days))
    }

    /// The request's value, or the default of 365 days when it has none.
    pub fn parse_optional(days: Option<i64>) -> Result<Self, ValidationError> {
        days.map_or(Ok(Self::DEFAULT), Self::parse)
    }

    /// The number of days.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for ExpiryDays {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A credential's claims: a JSON object with no claim named `id`, whose keys stay
/// distinct after Unicode normalisation (so it can be signed), at most
/// [`Claims::MAX_DEPTH`] deep. Every string and key is NFC-normalised (the form that is
/// signed, and the only one verification accepts). Key order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims(Map<String, Value>);

/// Whether `value` holds more than `levels` nested arrays and objects (itself included).
/// Recurses at most `levels + 1` deep, whatever the input.
fn nests_deeper_than(value: &Value, levels: usize) -> bool {
    let mut children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        _ => return false,
    };
    levels == 0 || children.any(|child| nests_deeper_than(child, levels - 1))
}

impl Claims {
    /// The deepest claims object, in nested objects and arrays, the object itself
    /// counting as one (`{"a":{"b":1}}` is 2 deep).
    ///
    /// Everything the server issues it must be able to verify, and the deepest place a
    /// credential travels is `POST /v1/presentations/verify`: body → `presentation` →
    /// `verifiableCredential` → credential → `credentialSubject` (the claims object),
    /// four levels around the claims. serde_json refuses a 128th level (its recursion
    /// limit, which bounds the stack every request may use), so 127 − 4 = 123.
    pub const MAX_DEPTH: usize = 123;

    /// Check a request's `claims` value.
    pub fn parse(value: Value) -> Result<Self, ValidationError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(ValidationError::ClaimsNotAnObject),
        }
    }

    /// Check a claims object, and normalise its strings and keys to NFC.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, ValidationError> {
        if map.contains_key("id") {
            return Err(ValidationError::ClaimNamedId);
        }
        if map
            .values()
            .any(|value| nests_deeper_than(value, Self::MAX_DEPTH - 1))
        {
            return Err(ValidationError::ClaimsTooDeep);
        }
        // `credentialSubject` is `{"id": …, ...claims}`: since "id" is absent, the claims
        // can be signed exactly when the object can.
        canonical_object_bytes(&map).map_err(ValidationError::ClaimsNotCanonical)?;
        // No two keys collide after NFC (checked just above), so none is lost.
        match nfc_value(Value::Object(map)) {
            Value::Object(map) => Ok(Self(map)),
            _ => unreachable!("NFC normalisation keeps an object an object"),
        }
    }

    /// The claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The claims, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl Default for Claims {
    fn default() -> Self {
        Self(Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_name_is_trimmed_of_python_whitespace() {
        let name = DisplayName::parse("\u{1f} \u{a0}Report\tBot \n").expect("valid");
        assert_eq!(name.as_str(), "Report\tBot");
    }

    #[test]
    fn display_name_must_not_be_blank() {
        for blank in ["", "   ", "\t\n\u{3000}"] {
            let error = DisplayName::parse(blank).unwrap_err();
            assert_eq!(error, ValidationError::DisplayNameEmpty);
            assert_eq!(error.field(), "display_name");
        }
    }

    #[test]
    fn display_name_allows_500_characters_not_501() {
        let ok = "é".repeat(500);
        assert_eq!(
            DisplayName::parse(&ok).expect("500 is allowed").as_str(),
            ok
        );
        let error = DisplayName::parse(&"é".repeat(501)).unwrap_err();
        assert_eq!(error, ValidationError::DisplayNameTooLong(501));
        assert_eq!(
            error.to_string(),
            "display_name must be at most 500 characters (got 501)"
        );
    }

    #[test]
    fn display_name_rejects_control_characters_but_tab() {
        for (name, code) in [
            ("a\nb", 0x0a),
            ("a\u{0}b", 0),
            ("a\u{7f}", 0x7f),
            ("a\u{85}b", 0x85),
        ] {
            assert_eq!(
                DisplayName::parse(name),
                Err(ValidationError::DisplayNameControlCharacter(code)),
                "{name:?}"
            );
        }
        assert!(DisplayName::parse("a\tb").is_ok());
    }

    #[test]
    fn display_name_must_have_a_visible_character() {
        for (name, first) in [
            ("\u{200b}", 0x200b),
            ("\u{3164}", 0x3164),
            ("\u{feff}", 0xfeff),
            ("\u{e0041}\u{e007f}", 0xe0041),
            ("\u{200b} \u{2060}", 0x200b),
            ("\u{2800}", 0x2800),
        ] {
            let error = DisplayName::parse(name).unwrap_err();
            assert_eq!(
                error,
                ValidationError::DisplayNameInvisible(first),
                "{name:?}"
            );
            assert_eq!(error.field(), "display_name");
            assert!(error.to_string().contains("blank"), "{error}");
        }
        // Among visible characters they are ordinary text.
        for name in ["\u{200b}Bot", "a\u{200d}b", "\u{1f3f4}\u{e0067}\u{e007f}"] {
            assert!(DisplayName::parse(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn display_name_rejects_bidirectional_overrides_and_isolates() {
        for code in (0x202a..=0x202e).chain(0x2066..=0x2069) {
            let c = char::from_u32(code).expect("a scalar value");
            let error = DisplayName::parse(&format!("Bot{c}x")).unwrap_err();
            assert_eq!(error, ValidationError::DisplayNameBidiControl(code));
            assert!(error.to_string().contains("unsafe"), "{error}");
        }
        // The marks change no order and right-to-left names need them.
        assert!(DisplayName::parse("\u{5d0}\u{200f}Bot").is_ok());
    }

    #[test]
    fn expiry_days_range_and_default() {
        assert_eq!(ExpiryDays::parse(1).expect("min").get(), 1);
        assert_eq!(ExpiryDays::parse(36_500).expect("max").get(), 36_500);
        for bad in [0, -1, 36_501, i64::MAX, i64::MIN] {
            let error = ExpiryDays::parse(bad).unwrap_err();
            assert_eq!(error, ValidationError::ExpiryDaysOutOfRange(bad));
            assert_eq!(error.field(), "expiry_days");
        }
        assert_eq!(
            ExpiryDays::parse_optional(None).expect("default").get(),
            365
        );
        assert_eq!(ExpiryDays::parse_optional(Some(30)).expect("30").get(), 30);
    }

    #[test]
    fn claims_reject_id_non_objects_and_unsignable_keys() {
        assert_eq!(
            Claims::parse(json!({"id": "x", "role": "r"})),
            Err(ValidationError::ClaimNamedId)
        );
        assert_eq!(
            Claims::parse(json!([1])),
            Err(ValidationError::ClaimsNotAnObject)
        );
        let colliding = Claims::parse(json!({"n": {"caf\u{e9}": 1, "cafe\u{301}": 2}}));
        assert!(matches!(
            colliding,
            Err(ValidationError::ClaimsNotCanonical(_))
        ));
        assert_eq!(colliding.unwrap_err().field(), "claims");
    }

    /// `{"a":{"a":…1}}`, `depth` objects deep.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn claims_nest_at_most_max_depth_levels() {
        assert!(Claims::parse(nested(Claims::MAX_DEPTH)).is_ok());
        // Arrays count as levels too.
        let arrays = |depth: usize| (0..depth).fold(json!(1), |inner, _| json!([inner]));
        assert!(Claims::parse(json!({ "a": arrays(Claims::MAX_DEPTH - 1) })).is_ok());
        assert_eq!(
            Claims::parse(json!({ "a": arrays(Claims::MAX_DEPTH) })),
            Err(ValidationError::ClaimsTooDeep)
        );
        let error = Claims::parse(nested(Claims::MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(error, ValidationError::ClaimsTooDeep);
        assert_eq!(error.field(), "claims");
        assert!(error.to_string().contains("123"), "{error}");
    }

    #[test]
    fn claims_are_normalised_to_nfc() {
        let claims = Claims::parse(json!({"\u{212b}": ["\u{212a}elvin"]})).expect("valid");
        assert_eq!(
            claims.as_map(),
            json!({"\u{c5}": ["Kelvin"]}).as_object().unwrap()
        );
    }

    #[test]
    fn claims_keep_their_order() {
        let claims =
            Claims::parse(json!({"role": "reporter", "level": 2, "a": true})).expect("valid");
        let keys: Vec<&str> = claims.as_map().keys().map(String::as_str).collect();
        assert_eq!(keys, ["role", "level", "a"]);
    }
}
