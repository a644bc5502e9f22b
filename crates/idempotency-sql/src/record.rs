//! What both backends share: the statements (SQLite and PostgreSQL accept the same
//! `$n` placeholders and the same upsert syntax) and the decoding of a stored row.

use crate::codec::{decode_headers, from_unix_millis};
use bytes::Bytes;
use idempotency::{ExistingRecord, Fingerprint, RecordState, StoreError, StoredResponse};

/// The conflict rule of every reservation, single-row ([`RESERVE`]) and batched (the
/// SQLite group commit): replace the existing row only if it has expired, or if it is
/// in flight with an ended lease and the same fingerprint. "Now" is the inserted
/// row's `created_at`, so one text serves one row or many.
macro_rules! reserve_on_conflict {
    () => {
        "ON CONFLICT (scope, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    state = 'in_flight',
    token = excluded.token,
    lease_expires_at = excluded.lease_expires_at,
    expires_at = excluded.expires_at,
    takeovers = CASE
        WHEN idempotency_records.expires_at > excluded.created_at
            THEN idempotency_records.takeovers + 1
        ELSE 0
    END,
    status = NULL,
    headers = NULL,
    body = NULL,
    created_at = excluded.created_at
WHERE idempotency_records.expires_at <= excluded.created_at
   OR (idempotency_records.state = 'in_flight'
       AND idempotency_records.lease_expires_at <= excluded.created_at
       AND idempotency_records.fingerprint = excluded.fingerprint)"
    };
}
pub(crate) use reserve_on_conflict;

/// The atomic reservation: insert, or replace a record that is expired or whose lease
/// ended (same fingerprint only), in one statement.
///
/// Binds: `$1` scope, `$2` key, `$3` fingerprint, `$4` token, `$5` lease end,
/// `$6` record expiry, `$7` now. Returns one row (`takeovers`) when the caller now
/// owns the record, no row when a live record stays as it was.
///
/// `RETURNING` only sees the new row, so the `SET` clause, which can read the old row,
/// records what happened: `takeovers` grows by one when a live in-flight record was
/// reclaimed and restarts at zero when the old record had expired (it is then simply
/// replaced). A fresh insert starts at zero too. So `takeovers > 0` in the returned
/// row means "this reservation took over a dead worker's record".
pub(crate) const RESERVE: &str = concat!(
    "INSERT INTO idempotency_records
    (scope, key, fingerprint, state, token, lease_expires_at, expires_at, takeovers, created_at)
VALUES ($1, $2, $3, 'in_flight', $4, $5, $6, 0, $7)
",
    reserve_on_conflict!(),
    "
RETURNING takeovers"
);

/// Reads a record whatever its expiry; `reserve` checks expiry itself so that it can
/// tell "gone or expired meanwhile, retry" from "live, report it".
/// Binds: `$1` scope, `$2` key.
pub(crate) const SELECT_ANY: &str = "\
SELECT fingerprint, state, lease_expires_at, expires_at, status, headers, body
FROM idempotency_records
WHERE scope = $1 AND key = $2";

/// Reads a live record. Binds: `$1` scope, `$2` key, `$3` now.
pub(crate) const SELECT_LIVE: &str = "\
SELECT fingerprint, state, lease_expires_at, expires_at, status, headers, body
FROM idempotency_records
WHERE scope = $1 AND key = $2 AND expires_at > $3";

/// Stores the response, only for the current owner of an in-flight record.
/// Binds: `$1` scope, `$2` key, `$3` token, `$4` status, `$5` headers, `$6` body.
pub(crate) const COMPLETE: &str = "\
UPDATE idempotency_records
SET state = 'completed', status = $4, headers = $5, body = $6
WHERE scope = $1 AND key = $2 AND token = $3 AND state = 'in_flight'";

/// Deletes an in-flight record, only for its current owner.
/// Binds: `$1` scope, `$2` key, `$3` token.
pub(crate) const RELEASE: &str = "\
DELETE FROM idempotency_records
WHERE scope = $1 AND key = $2 AND token = $3 AND state = 'in_flight'";

/// How many times `reserve`'s slow path (upsert and read in one transaction) is tried.
/// The transaction holds the conflicting record (a row lock in PostgreSQL, the write
/// lock in SQLite), so the read finds it and the first attempt settles the matter; the
/// bound only guards against a database that breaks that promise, or callers whose
/// clocks disagree so much that a record blocks one statement and not the next.
pub(crate) const RESERVE_ATTEMPTS: usize = 3;

/// How many rows one purge statement deletes at most, by default; a purge loops until
/// a batch comes back short, so no single statement holds locks for long.
pub(crate) const DEFAULT_PURGE_BATCH: i64 = 1000;

/// A row as read by [`SELECT_ANY`] or [`SELECT_LIVE`].
#[derive(sqlx::FromRow)]
pub(crate) struct RecordRow {
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) state: String,
    pub(crate) lease_expires_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) status: Option<i32>,
    pub(crate) headers: Option<Vec<u8>>,
    pub(crate) body: Option<Vec<u8>>,
}

impl RecordRow {
    /// Whether the record is still live at `now_millis`.
    pub(crate) fn is_live(&self, now_millis: i64) -> bool {
        self.expires_at > now_millis
    }

    /// Whether `reserve` may answer `Existing` with this record: it is live and the
    /// reservation statement would leave it in place (it is not an in-flight record
    /// with an ended lease and the caller's fingerprint). A record read after the
    /// reservation statement conflicted is reported only then; otherwise it changed in
    /// between and the reservation is tried again.
    pub(crate) fn blocks(&self, fingerprint: &Fingerprint, now_millis: i64) -> bool {
        let reclaimable = self.state == "in_flight"
            && self.lease_expires_at <= now_millis
            && self.fingerprint.as_slice() == fingerprint.as_bytes().as_slice();
        self.is_live(now_millis) && !reclaimable
    }

    /// Decodes the row into the contract's type.
    pub(crate) fn into_existing(self) -> Result<ExistingRecord, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| StoreError::Corrupt("stored fingerprint is not 32 bytes".into()))?;
        let state = match self.state.as_str() {
            "in_flight" => RecordState::InFlight {
                lease_expires_at: from_unix_millis(self.lease_expires_at),
            },
            "completed" => {
                let (Some(status), Some(headers), Some(body)) =
                    (self.status, self.headers, self.body)
                else {
                    return Err(StoreError::Corrupt(
                        "completed record without a stored response".into(),
                    ));
                };
                let status = u16::try_from(status).map_err(|_| {
                    StoreError::Corrupt(format!("stored status {status} is invalid"))
                })?;
                RecordState::Completed(StoredResponse {
                    status,
                    headers: decode_headers(&headers)?,
                    body: Bytes::from(body),
                })
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown record state {other:?}"
                )))
            }
        };
        Ok(ExistingRecord {
            fingerprint,
            state,
            expires_at: from_unix_millis(self.expires_at),
        })
    }
}

/// Maps a database error to the contract's "store unavailable" (the layer answers 503).
pub(crate) fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::unavailable(error)
}

/// The error `reserve` gives up with after [`RESERVE_ATTEMPTS`].
pub(crate) fn too_much_contention() -> StoreError {
    StoreError::Unavailable(
        "idempotency record kept changing under reservation; giving up after retries".into(),
    )
}
