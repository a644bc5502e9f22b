//! `PostgresStore` against the shared conformance suite of `idempotency::testkit`,
//! each check on a database of its own (dropped with the store). Without a
//! reachable server the checks print SKIPPED, except under `CI=true`.

#![cfg(feature = "postgres")]

idempotency::store_conformance_tests!(optional: idempotency_sql::pg_test::test_store);

/// The same suite with reservations committed without a flush wait: the option
/// changes durability at a database crash, never what callers see.
mod reservations_flushed_by_later_commits {
    idempotency::store_conformance_tests!(
        optional: idempotency_sql::pg_test::test_store_flushed_by_later_commits
    );
}
