//! The in-memory store passes the shared store conformance suite.

use idempotency::MemoryStore;

async fn fresh_store() -> MemoryStore {
    MemoryStore::default()
}

idempotency::store_conformance_tests!(fresh_store);
