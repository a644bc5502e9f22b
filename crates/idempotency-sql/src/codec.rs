//! How the SQL stores write instants and header lists into columns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use idempotency::StoreError;

/// Milliseconds since the Unix epoch, the form instants are stored in.
pub fn unix_millis(instant: SystemTime) -> i64 {
    match instant.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`unix_millis`].
pub fn from_unix_millis(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

/// Serialises a response's header list into one compact byte string, for one
/// column. Format: for each header, a u16 big-endian name length, the name, a u32
/// big-endian value length, the value.
pub fn encode_headers(headers: &[(String, Bytes)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum());
    for (name, value) in headers {
        // Header names are bounded by hyper far below u16::MAX; values by the
        // response size limit far below u32::MAX.
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Parses the output of [`encode_headers`].
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are truncated or a name is not UTF-8.
pub fn decode_headers(mut encoded: &[u8]) -> Result<Vec<(String, Bytes)>, StoreError> {
    let corrupt = || StoreError::Corrupt("stored header list is truncated or invalid".into());
    let mut headers = Vec::new();
    while !encoded.is_empty() {
        let (len, rest) = encoded.split_first_chunk::<2>().ok_or_else(corrupt)?;
        let len = u16::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        let (name, rest) = rest.split_at(len);
        let name = std::str::from_utf8(name).map_err(|_| corrupt())?.to_owned();
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        let (value, rest) = rest.split_at(len);
        headers.push((name, Bytes::copy_from_slice(value)));
        encoded = rest;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_order_with_repeats_and_raw_bytes() {
        let headers = vec![
            ("set-thing".to_owned(), Bytes::from_static(b"one")),
            ("x-binary".to_owned(), Bytes::from_static(b"\x80\xff")),
            ("set-thing".to_owned(), Bytes::from_static(b"two")),
            ("x-empty".to_owned(), Bytes::new()),
        ];
        let encoded = encode_headers(&headers);
        assert_eq!(decode_headers(&encoded).unwrap(), headers);
        assert!(decode_headers(&encoded[..encoded.len() - 1]).is_err());
    }

    #[test]
    fn instants_round_trip_on_both_sides_of_the_epoch() {
        for millis in [-1_500, 0, 1_700_000_000_123] {
            assert_eq!(unix_millis(from_unix_millis(millis)), millis);
        }
    }
}
