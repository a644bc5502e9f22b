//! Times as the documents write them: RFC 3339, formatted like Python's
//! `datetime.isoformat()` (`2026-11-28T06:42:10.097345+00:00`, the fraction omitted
//! when the microseconds are zero).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// A point in time with microsecond precision (Python's `datetime`), written as Python's
/// `isoformat()` writes it.
///
/// A timestamp keeps the UTC offset it was parsed with, so a document read and written
/// again keeps its exact text (and its signature). Timestamps this crate creates are UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// `at` in UTC, truncated to whole microseconds.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let truncated = at
            .replace_nanosecond(at.microsecond() * 1_000)
            .expect("a whole number of microseconds is a valid nanosecond value");
        Self(truncated)
    }

    /// The current time (reads the system clock; the library's other functions take
    /// `now` as a parameter instead).
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Parse an RFC 3339 timestamp (which every `isoformat()` of an aware datetime is).
    /// Sub-microsecond digits are dropped.
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        let at = OffsetDateTime::parse(text, &Rfc3339)?;
        let truncated = at
            .replace_nanosecond(at.microsecond() * 1_000)
            .expect("a whole number of microseconds is a valid nanosecond value");
        Ok(Self(truncated))
    }

    /// The instant as a `time` value.
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// This instant plus `days` days of 24 hours (Python's `timedelta(days=…)`), or
    /// `None` past the year 9999.
    pub fn checked_add_days(self, days: u32) -> Option<Self> {
        let later = self.0.checked_add(Duration::days(i64::from(days)))?;
        (later.year() <= 9999).then_some(Self(later))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )?;
        if at.microsecond() != 0 {
            write!(f, ".{:06}", at.microsecond())?;
        }
        let offset = at.offset();
        let (hours, minutes, seconds) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        write!(
            f,
            "{sign}{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        )?;
        if seconds != 0 {
            write!(f, ":{:02}", seconds.unsigned_abs())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(at: OffsetDateTime) -> Self {
        Self::from_datetime(at)
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Format `at` as Python's `datetime.isoformat()` formats it (in `at`'s own offset,
/// truncated to microseconds).
pub fn format_isoformat(at: OffsetDateTime) -> String {
    let truncated = at
        .replace_nanosecond(at.microsecond() * 1_000)
        .expect("a whole number of microseconds is a valid nanosecond value");
    Timestamp(truncated).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_microseconds_like_python_isoformat() {
        let at = Timestamp::from_datetime(datetime!(2026-11-28 06:42:10.097345 UTC));
        assert_eq!(at.to_string(), "2026-11-28T06:42:10.097345+00:00");
    }

    #[test]
    fn omits_the_fraction_when_microseconds_are_zero() {
        let at = Timestamp::from_datetime(datetime!(2026-11-28 06:42:10.000000999 UTC));
        assert_eq!(at.to_string(), "2026-11-28T06:42:10+00:00");
    }

    #[test]
    fn keeps_leading_zeros_of_the_fraction() {
        let at = Timestamp::from_datetime(datetime!(2026-01-02 03:04:05.000070 UTC));
        assert_eq!(at.to_string(), "2026-01-02T03:04:05.000070+00:00");
    }

    #[test]
    fn converts_other_offsets_to_utc() {
        let at = Timestamp::from_datetime(datetime!(2026-01-02 03:04:05 +02:00));
        assert_eq!(at.to_string(), "2026-01-02T01:04:05+00:00");
    }

    #[test]
    fn parsing_and_formatting_round_trip_python_text() {
        for text in [
            "2026-11-28T06:42:10.097345+00:00",
            "2026-11-28T06:42:10+00:00",
            "2026-11-28T06:42:10.5+05:30",
            "2026-11-28T06:42:10-08:00",
        ] {
            let parsed = Timestamp::parse(text).expect("valid timestamp");
            let expected = text.replace(".5+", ".500000+");
            assert_eq!(parsed.to_string(), expected);
        }
        assert_eq!(
            Timestamp::parse("2026-11-28T06:42:10Z")
                .expect("valid timestamp")
                .to_string(),
            "2026-11-28T06:42:10+00:00"
        );
        assert!(Timestamp::parse("2026-11-28T06:42:10").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn adds_whole_days() {
        let at = Timestamp::from_datetime(datetime!(2026-11-28 06:42:10.097345 UTC));
        assert_eq!(
            at.checked_add_days(365).expect("in range").to_string(),
            "2027-11-28T06:42:10.097345+00:00"
        );
        assert!(at.checked_add_days(36500 * 100).is_none());
    }

    #[test]
    fn serde_uses_the_isoformat_text() {
        let at = Timestamp::from_datetime(datetime!(2026-11-28 06:42:10.097345 UTC));
        let json = serde_json::to_string(&at).expect("serialises");
        assert_eq!(json, "\"2026-11-28T06:42:10.097345+00:00\"");
        let back: Timestamp = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, at);
    }
}
