//! Fresh PostgreSQL databases for tests (feature `test-support`).
//!
//! Every test gets a database of its own, with a unique name, created on the server
//! named by `IDEMPOTENCY_TEST_DATABASE_URL` (else `DATABASE_URL`, else
//! [`DEFAULT_SERVER_URL`]) and dropped when the test ends, whether it passed or
//! panicked. When the server cannot be reached the test prints
//! `SKIPPED: PostgreSQL unreachable at …` and passes, except under `CI=true`, where an
//! unreachable server is a failure: CI must never go green by skipping.
//!
//! ```no_run
//! use idempotency_sql::pg_test::with_pg_store;
//!
//! #[tokio::test]
//! async fn the_store_migrates_a_fresh_database() {
//!     with_pg_store(|store| async move {
//!         store.migrate().await.expect("migrations are idempotent");
//!     })
//!     .await;
//! }
//! ```
//!
//! Dropping a database is an async call, so cleanup happens in one of two ways:
//! [`with_pg_store`] and [`TestDatabase::drop_database`] drop it on the test's own
//! runtime; otherwise (a panic, or a [`TestPostgresStore`] going out of scope)
//! [`TestDatabase`]'s `Drop` drops it from a short-lived thread with its own runtime,
//! and waits for that thread, so nothing is left behind when the test returns.

use std::future::Future;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use idempotency::testkit::Guarded;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::PostgresStore;

/// The environment variables consulted for the server URL, in order.
pub const URL_VARIABLES: [&str; 2] = ["IDEMPOTENCY_TEST_DATABASE_URL", "DATABASE_URL"];

/// The server used when no variable of [`URL_VARIABLES`] is set: the local server with
/// trust authentication.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long to wait for the server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in each test database's pool: enough for real contention, few enough
/// that parallel tests stay far below the server's `max_connections`.
const TEST_POOL_CONNECTIONS: u32 = 5;

static DATABASE_SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// The URL of the server on which test databases are created (see [`URL_VARIABLES`]).
pub fn server_url() -> String {
    URL_VARIABLES
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned())
}

/// Whether this is a CI run (`CI=true`), where an unreachable server fails the test.
pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Why a test database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestDatabaseError {
    /// The server did not answer or refused the connection.
    #[error("PostgreSQL unreachable at {url}: {reason}")]
    Unreachable {
        /// The server URL, password masked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered but the database could not be created or prepared.
    #[error("could not prepare a test database: {0}")]
    Failed(#[from] sqlx::Error),
    /// The store's migrations failed on the fresh database.
    #[error("could not migrate the test database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A uniquely named database that exists for one test.
///
/// Dropped from the server by [`TestDatabase::drop_database`] or, failing that, when
/// the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: PgConnectOptions,
    pool: PgPool,
    dropped: bool,
}

impl TestDatabase {
    /// Creates a database on [`server_url`], or returns `None` after printing
    /// `SKIPPED: …` when the server is unreachable.
    ///
    /// # Panics
    /// When the server is unreachable and `CI=true`, and when the server answers but
    /// the database cannot be created.
    pub async fn create() -> Option<Self> {
        match Self::try_create(&server_url()).await {
            Ok(database) => Some(database),
            Err(error @ TestDatabaseError::Unreachable { .. }) => {
                if running_in_ci() {
                    panic!("{error} (CI=true: a test database is required)");
                }
                // Straight to the stderr handle: libtest captures `eprintln!`, and a
                // skip must be visible in a normal `cargo test` run.
                let _ = writeln!(std::io::stderr(), "SKIPPED: {error}");
                None
            }
            Err(error) => panic!("{error}"),
        }
    }

    /// Creates a database on the server at `server_url`.
    pub async fn try_create(server_url: &str) -> Result<Self, TestDatabaseError> {
        let unreachable = |reason: String| TestDatabaseError::Unreachable {
            url: mask_password(server_url),
            reason,
        };
        let admin =
            PgConnectOptions::from_str(server_url).map_err(|e| unreachable(e.to_string()))?;
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, admin.connect())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;

        let name = unique_name();
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut connection)
            .await?;
        let _ = connection.close().await;

        let database = admin.clone().database(&name);
        let pool = match PgPoolOptions::new()
            .max_connections(TEST_POOL_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(database)
            .await
        {
            Ok(pool) => pool,
            Err(error) => {
                let _ = drop_database(&admin, &name).await;
                return Err(error.into());
            }
        };
        Ok(Self {
            url: url_with_database(server_url, &name),
            name,
            admin,
            pool,
            dropped: false,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for the database, for code under test that connects by itself.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool of connections to the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops the database now, on the caller's runtime.
    pub async fn drop_database(mut self) -> Result<(), sqlx::Error> {
        // Give idle connections a moment to close politely; FORCE ends any others.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pool.close()).await;
        self.dropped = true;
        drop_database(&self.admin, &self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop can't await, and the test's runtime may be blocked in this very call, so
        // a thread with its own runtime does the work while this one waits for it.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&admin, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(_) => "the cleanup thread panicked".to_owned(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "warning: test database {} was not dropped: {failure}",
            self.name
        );
    }
}

/// Runs `test` with a migrated [`PostgresStore`] on a fresh database, then drops the
/// database. Prints `SKIPPED: …` and returns without running `test` when the server
/// is unreachable (panics instead under `CI=true`).
pub async fn with_pg_store<F, Fut>(test: F)
where
    F: FnOnce(PostgresStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = PostgresStore::from_pool(database.pool().clone());
    store
        .migrate()
        .await
        .expect("the store's migrations apply to an empty database");
    // If `test` panics, unwinding drops `database`, whose Drop removes it.
    test(store).await;
    if let Err(error) = database.drop_database().await {
        let _ = writeln!(
            std::io::stderr(),
            "warning: test database not dropped: {error}"
        );
    }
}

/// Creates a migrated [`TestPostgresStore`] on a fresh database, or `None` (after
/// printing `SKIPPED: …`) when the server is unreachable.
///
/// # Panics
/// Under `CI=true` when the server is unreachable, and whenever the database cannot be
/// created or migrated.
pub async fn test_store() -> Option<TestPostgresStore> {
    let database = TestDatabase::create().await?;
    let store = PostgresStore::from_pool(database.pool().clone());
    store
        .migrate()
        .await
        .expect("the store's migrations apply to an empty database");
    Some(Guarded::new(store, Arc::new(database)))
}

/// As [`test_store`], with reservations that commit without waiting for their
/// flush ([`PostgresStore::with_reservations_flushed_by_later_commits`]).
///
/// # Panics
/// As [`test_store`].
pub async fn test_store_flushed_by_later_commits() -> Option<TestPostgresStore> {
    let database = TestDatabase::create().await?;
    let store = PostgresStore::from_pool(database.pool().clone())
        .with_reservations_flushed_by_later_commits();
    store
        .migrate()
        .await
        .expect("the store's migrations apply to an empty database");
    Some(Guarded::new(store, Arc::new(database)))
}

/// A [`PostgresStore`] that owns its test database: when the last clone is dropped,
/// the database is dropped from the server. Suits factories that must return a store,
/// such as the `idempotency` conformance suite's; [`Guarded::guard`] is the database.
pub type TestPostgresStore = Guarded<PostgresStore, Arc<TestDatabase>>;

/// Drops `name` from the server, ending any sessions still connected to it.
async fn drop_database(admin: &PgConnectOptions, name: &str) -> Result<(), sqlx::Error> {
    let mut connection = admin.connect().await?;
    let forced = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut connection)
        .await;
    if forced.is_err() {
        // `WITH (FORCE)` needs PostgreSQL 13; older servers need the sessions ended first.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut connection)
            .await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .execute(&mut connection)
            .await?;
    }
    let _ = connection.close().await;
    Ok(())
}

/// A database name no other test, in this process or another, is using: lower case,
/// digits and underscores, well under PostgreSQL's 63-byte limit.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let sequence = DATABASE_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("idem_test_{}_{nanos}_{sequence}", std::process::id())
}

/// `url` with its database path replaced by `name`, query string kept.
fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` with any password replaced by `***`, for messages.
fn mask_password(url: &str) -> String {
    let Some(authority_start) = url.find("://").map(|index| index + 3) else {
        return url.to_owned();
    };
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..authority_start], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            url_with_database("postgres://u:p@host/db?sslmode=disable", "t2"),
            "postgres://u:p@host/t2?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://host:5432", "t3"),
            "postgres://host:5432/t3"
        );
    }

    #[test]
    fn passwords_are_masked_in_messages() {
        assert_eq!(
            mask_password("postgres://user:secret@host:5432/db"),
            "postgres://user:***@host:5432/db"
        );
        assert_eq!(
            mask_password("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn database_names_are_unique_and_valid_identifiers() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.len() < 63);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    }
}
