//! Durable stores for the [`idempotency`] layer: a SQLite log for one process, and
//! PostgreSQL for many.
//!
//! A host picks one of three stores, and the code has one of each thing:
//!
//! | store | for | what it is |
//! |---|---|---|
//! | [`idempotency::MemoryStore`] | one process, records lost at exit | the engine: reservations, leases, takeovers, fencing, in memory |
//! | embedded: [`idempotency::MemoryStore::with_log`] + [`SqliteLog`] | one process, records survive restarts | the same engine, its completions written behind to a SQLite file it locks for itself |
//! | [`PostgresStore`] | many instances sharing a database | every reservation an atomic statement in PostgreSQL |
//!
//! ```
//! use std::sync::Arc;
//!
//! use idempotency::{MemoryStore, MemoryStoreConfig, Store};
//! use idempotency_sql::SqliteLog;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = SqliteLog::open(dir.path().join("idempotency.db")).await?;
//! let store = MemoryStore::with_log(MemoryStoreConfig::default(), Arc::new(log.clone()));
//! // ... serve; at shutdown, write what is queued:
//! store.flush().await?;
//! log.close().await;
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
//! # Features
//! - `sqlite` (default): [`SqliteLog`].
//! - `postgres` (default): [`PostgresStore`].
//! - `test-support`: the `pg_test` module, a fresh PostgreSQL database per test.
//!
//! # Schema
//! Instants are Unix milliseconds chosen by the caller (`now`), never the database's
//! clock, so every decision of one request uses one instant and tests can move time
//! without sleeping. Headers are kept in one column in the format of
//! [`codec::encode_headers`]. Each backend applies its embedded
//! migrations and records them in its own ledger table, not in sqlx's
//! `_sqlx_migrations`, so the host application can run its own sqlx migrations on the
//! same database (see [`migrations`]).
//!
//! # Clocks
//! Leases and expiry compare instants from the callers' clocks, so server instances
//! sharing a PostgreSQL database should keep their clocks in sync (NTP): a skew of
//! *s* shifts lease and expiry decisions by *s*.

pub mod codec;
#[cfg(feature = "postgres")]
mod record;
#[cfg(feature = "sqlite")]
pub mod sqlite_log;

pub mod migrations;
#[cfg(feature = "test-support")]
pub mod pg_test;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use migrations::MIGRATIONS_TABLE;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite_log::{OpenError, SqliteLog};
