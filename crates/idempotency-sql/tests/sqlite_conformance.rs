//! `SqliteStore` and `ExclusiveSqliteStore` against the shared conformance suite of
//! `idempotency::testkit`: in memory, on a database file with one writer and several
//! readers, and on a file held by one process.

#![cfg(feature = "sqlite")]

use idempotency::testkit::Guarded;
use idempotency_sql::{ExclusiveSqliteStore, SqliteStore};
use tempfile::TempDir;

async fn in_memory_store() -> SqliteStore {
    SqliteStore::in_memory()
        .await
        .expect("an in-memory database opens")
}

/// A store on a database file in a temporary directory that lives as long as it does.
type FileStore = Guarded<SqliteStore, TempDir>;

async fn file_store() -> FileStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("conformance.db"))
        .await
        .expect("the database file opens");
    store.migrate().await.expect("migrations apply");
    Guarded::new(store, dir)
}

mod in_memory {
    idempotency::store_conformance_tests!(super::in_memory_store);
}

mod file {
    idempotency::store_conformance_tests!(super::file_store);
}

/// A file store whose writes each go out alone, without group commit.
async fn file_store_without_group_commit() -> FileStore {
    let (store, dir) = file_store().await.into_parts();
    Guarded::new(store.without_group_commit(), dir)
}

mod file_without_group_commit {
    idempotency::store_conformance_tests!(super::file_store_without_group_commit);
}

/// `ExclusiveSqliteStore`: reservations in memory, completions written behind, on a
/// file in a temporary directory.
type ExclusiveStore = Guarded<ExclusiveSqliteStore, TempDir>;

async fn exclusive_store() -> ExclusiveStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ExclusiveSqliteStore::open(dir.path().join("exclusive.db"))
        .await
        .expect("the database file opens");
    Guarded::new(store, dir)
}

mod exclusive {
    idempotency::store_conformance_tests!(super::exclusive_store);
}
