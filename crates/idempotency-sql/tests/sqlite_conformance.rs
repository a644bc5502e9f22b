//! `SqliteStore` against the shared conformance suite of `idempotency::testkit`, both
//! in memory and on a database file with one writer and several readers.

#![cfg(feature = "sqlite")]

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use idempotency::{
    ExistingRecord, FencingToken, RecordId, ReserveOutcome, ReserveRequest, Store, StoreError,
    StoredResponse,
};
use idempotency_sql::SqliteStore;
use tempfile::TempDir;

async fn in_memory_store() -> SqliteStore {
    SqliteStore::in_memory()
        .await
        .expect("an in-memory database opens")
}

/// A store on a database file in a temporary directory that lives as long as it does.
struct FileStore {
    store: SqliteStore,
    _dir: TempDir,
}

async fn file_store() -> FileStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("conformance.db"))
        .await
        .expect("the database file opens");
    store.migrate().await.expect("migrations apply");
    FileStore { store, _dir: dir }
}

#[async_trait]
impl Store for FileStore {
    async fn reserve(&self, request: ReserveRequest<'_>) -> Result<ReserveOutcome, StoreError> {
        self.store.reserve(request).await
    }
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.store.complete(id, token, response).await
    }
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), StoreError> {
        self.store.release(id, token).await
    }
    async fn lookup(
        &self,
        id: &RecordId,
        now: SystemTime,
    ) -> Result<Option<ExistingRecord>, StoreError> {
        self.store.lookup(id, now).await
    }
    async fn wait(&self, id: &RecordId, timeout: Duration) -> Result<(), StoreError> {
        self.store.wait(id, timeout).await
    }
    async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.store.purge_expired(now).await
    }
}

mod in_memory {
    idempotency::store_conformance_tests!(super::in_memory_store);
}

mod file {
    idempotency::store_conformance_tests!(super::file_store);
}

/// A file store whose writes each go out alone, without group commit.
async fn file_store_without_group_commit() -> FileStore {
    let FileStore { store, _dir } = file_store().await;
    FileStore {
        store: store.without_group_commit(),
        _dir,
    }
}

mod file_without_group_commit {
    idempotency::store_conformance_tests!(super::file_store_without_group_commit);
}
