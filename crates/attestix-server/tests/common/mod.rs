//! Runs one storage test against a fresh database of each backend.
//!
//! SQLite: a new file in a temporary directory, opened with `SqliteStorage::open`.
//! PostgreSQL: a new, uniquely named database (made by `idempotency_sql::pg_test`) on
//! the server named by `ATTESTIX_TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! [`DEFAULT_SERVER_URL`], dropped when the test ends, passed or panicked. When that
//! server cannot be reached the test prints `SKIPPED: PostgreSQL unreachable at …` and
//! passes, except under `CI=true`, where it fails: CI must never go green by skipping.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use attestix_server::storage::{PostgresStorage, SqliteStorage, Storage};
use idempotency_sql::pg_test::{TestDatabase, TestDatabaseError};

/// The storage under test, shareable with spawned tasks.
pub type SharedStorage = Arc<dyn Storage>;

/// The environment variables consulted for the PostgreSQL server, in order.
pub const URL_VARIABLES: [&str; 2] = ["ATTESTIX_TEST_DATABASE_URL", "DATABASE_URL"];

/// The server used when no variable of [`URL_VARIABLES`] is set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server on which test databases are created.
pub fn postgres_server_url() -> String {
    URL_VARIABLES
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned())
}

/// A fresh SQLite database file, open and migrated, and the directory holding it
/// (removed when dropped).
pub async fn sqlite_storage() -> (SqliteStorage, tempfile::TempDir) {
    let directory = tempfile::tempdir().expect("a temporary directory can be made");
    let storage = SqliteStorage::open(&directory.path().join("attestix.db"))
        .await
        .expect("a new database file opens");
    storage
        .migrate()
        .await
        .expect("the migrations apply to an empty database");
    (storage, directory)
}

/// Runs `test` on a fresh SQLite database file.
pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(SharedStorage) -> Fut,
    Fut: Future<Output = ()>,
{
    let (storage, _directory) = sqlite_storage().await;
    test(Arc::new(storage.clone())).await;
    storage.close().await;
}

/// A fresh PostgreSQL database, or `None` after printing `SKIPPED: …` when the server
/// is unreachable.
///
/// # Panics
/// When the server is unreachable and `CI=true`, and when it answers but the database
/// cannot be created.
pub async fn postgres_database() -> Option<TestDatabase> {
    let url = postgres_server_url();
    match TestDatabase::try_create(&url).await {
        Ok(database) => Some(database),
        Err(error @ TestDatabaseError::Unreachable { .. }) => {
            if std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true")) {
                panic!("{error} (CI=true: a test database is required)");
            }
            // Straight to the stderr handle: libtest captures `eprintln!`, and a skip
            // must show in a normal `cargo test` run.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {error}");
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// Runs `test` on a fresh, migrated PostgreSQL database, then drops the database
/// (if `test` panics, unwinding drops it). Returns without running `test` when the
/// server is unreachable (see [`postgres_database`]).
pub async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(SharedStorage) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(database) = postgres_database().await else {
        return;
    };
    let storage = PostgresStorage::from_pool(database.pool().clone());
    storage
        .migrate()
        .await
        .expect("the migrations apply to an empty database");
    test(Arc::new(storage)).await;
    if let Err(error) = database.drop_database().await {
        let _ = writeln!(
            std::io::stderr(),
            "warning: test database not dropped: {error}"
        );
    }
}
