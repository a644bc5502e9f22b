//! SQLite and PostgreSQL stores for the [`idempotency`] layer.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use idempotency::{FencingToken, Fingerprint, RecordId, ReserveOutcome, ReserveRequest, Store};
//! use idempotency_sql::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::in_memory().await?; // a file: `SqliteStore::open(path)`, then `migrate()`
//! let id = RecordId::new("principal-42", "order-2024-0001");
//! let fingerprint = Fingerprint::from_bytes([7; 32]);
//! let request = ReserveRequest {
//!     id: &id,
//!     fingerprint: &fingerprint,
//!     token: FencingToken::generate(),
//!     now: SystemTime::now(),
//!     lease: Duration::from_secs(60),
//!     retention: Duration::from_secs(24 * 60 * 60),
//! };
//! assert_eq!(store.reserve(request.clone()).await?, ReserveOutcome::Reserved { took_over: false });
//! // A second request with the same key finds the first one in flight.
//! let again = ReserveRequest { token: FencingToken::generate(), ..request };
//! assert!(matches!(store.reserve(again).await?, ReserveOutcome::Existing(_)));
//! # Ok(())
//! # }
//! ```
//!
//! With PostgreSQL, shared by every instance of a server:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = idempotency_sql::PostgresStore::connect("postgres://app@db.internal/app").await?;
//! store.migrate().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A process that is the only user of its SQLite file can use
//! [`ExclusiveSqliteStore`] instead: it locks the file for itself, reserves in memory
//! and writes completed records behind, so a fresh key costs no I/O on the request's
//! path (its module docs say what a crash can lose, and why that is safe with
//! recovery points).
//!
//! # Features
//! - `sqlite` (default): [`SqliteStore`] and [`ExclusiveSqliteStore`].
//! - `postgres` (default): [`PostgresStore`].
//! - `test-support`: the `pg_test` module, a fresh PostgreSQL database per test.
//!
//! # Schema
//! [`SqliteStore`] and [`PostgresStore`] use one table, `idempotency_records`, keyed
//! by `(scope, key)`, with an index on
//! `expires_at` for the sweeper. Instants are Unix milliseconds chosen by the caller
//! (`now`), never the database's clock, so every decision of one request uses one
//! instant and tests can move time without sleeping. Headers are kept in one column in
//! the format of [`idempotency::StoredResponse::encode_headers`].
//!
//! Each backend's [`migrate`](SqliteStore::migrate) applies the embedded migrations
//! and records them in its own ledger table, not in sqlx's `_sqlx_migrations`, so the
//! host application can run its own sqlx migrations on the same database (see
//! [`migrations`]).
//!
//! # Atomicity
//! [`Store::reserve`](idempotency::Store::reserve) is one statement on both backends:
//!
//! ```sql
//! INSERT INTO idempotency_records (…) VALUES (…)
//! ON CONFLICT (scope, key) DO UPDATE SET …
//! WHERE <the existing record expired>
//!    OR (<it is in flight> AND <its lease ended> AND <same fingerprint>)
//! RETURNING takeovers
//! ```
//!
//! A returned row means the caller owns the record. No row means a live record stayed
//! as it was; it is then read and reported. Should it have changed in between
//! (released or purged by another worker, say), the statement is repeated inside a
//! transaction that holds the record once the statement conflicts (PostgreSQL's
//! `ON CONFLICT DO UPDATE` locks the row even when its `WHERE` is false; SQLite's
//! `BEGIN IMMEDIATE` holds the write lock), so the record read back is the one that
//! blocked. Check-then-insert never happens.
//!
//! `RETURNING` cannot see the replaced row, so the `SET` clause, which can, records the
//! difference in the `takeovers` column: one more than before when a live in-flight
//! record was reclaimed, zero for a fresh record or one replaced after it expired.
//! `takeovers > 0` is reported as `took_over: true`.
//!
//! `complete` and `release` are conditional on `(scope, key, token, state =
//! 'in_flight')`; when no row matches they fail with
//! [`StoreError::NotOwner`](idempotency::StoreError::NotOwner). Database errors are
//! [`StoreError::Unavailable`](idempotency::StoreError::Unavailable), which the layer
//! answers with 503.
//!
//! # SQLite: one writer, group commit
//! A SQLite file has one writer at a time, and through sqlx every statement on a
//! connection is a round trip to that connection's worker thread. So [`SqliteStore`]
//! writes through a [`SqliteWriter`] (one dedicated connection; share it with the
//! host's own writes via [`SqliteStore::from_writer`] so they queue instead of racing
//! for the file lock) and, by default, batches the reservations and completions of
//! concurrent requests: each writer turn runs one multi-row form of the reservation
//! upsert (each row keeps its own atomic `ON CONFLICT … WHERE`) and one of the fenced
//! completion, with a per-row fallback if a batched statement fails.
//! [`SqliteStore::group_commit_stats`] tells how well it batches;
//! [`SqliteStore::without_group_commit`] turns it off. On a 2-core machine this took
//! a server's keyed creates from 2,046/s to 4,033/s before the host batched its own
//! inserts too (docs/BENCHMARKS.md of the Attestix repository).
//!
//! # Clocks and costs
//! Leases and expiry compare instants from the callers' clocks, so server instances
//! sharing a PostgreSQL database should keep their clocks in sync (NTP): a skew of
//! *s* shifts lease and expiry decisions by *s*.
//!
//! A new key costs one statement. A replay or in-flight answer costs the (no-op)
//! reservation statement plus one read; a host with many replays can try
//! [`Store::lookup`](idempotency::Store::lookup) first (a read only) and reserve
//! when it finds nothing, or keep completed records in a cache: they are immutable
//! until they expire.

#[cfg(feature = "sqlite")]
pub mod exclusive;
#[cfg(feature = "sqlite")]
mod group_commit;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod record;
#[cfg(feature = "sqlite")]
mod writer;

pub mod migrations;
#[cfg(feature = "test-support")]
pub mod pg_test;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "sqlite")]
pub use exclusive::{ExclusiveConfig, ExclusiveOpenError, ExclusiveSqliteStore, ImportedRecord};
pub use migrations::MIGRATIONS_TABLE;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{GroupCommitStats, SqliteStore};
#[cfg(feature = "sqlite")]
pub use writer::{BatchQueue, SqliteWriter, WriterBatch, WriterConnection};
