//! `PostgresStore` against the shared conformance suite of `idempotency::testkit`,
//! each check on a database of its own (dropped with the store). Without a
//! reachable server the checks print SKIPPED, except under `CI=true`.

#![cfg(feature = "postgres")]

idempotency::store_conformance_tests!(optional: idempotency_sql::pg_test::test_store);
