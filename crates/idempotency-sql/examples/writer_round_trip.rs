//! What one statement costs on the SQLite writer, alone (no contention): a bare
//! `SELECT 1` (the hand-off to sqlx's worker thread and back) and a one-row insert.
//! docs/BENCHMARKS.md quotes it to explain why batching writes pays.
//!
//! `cargo run --release -p idempotency-sql --example writer_round_trip`

use std::time::Instant;

use idempotency_sql::SqliteStore;

const WARM_UP: u32 = 200;
const MEASURED: u32 = 2_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("round-trip.db")).await?;
    store.migrate().await?;
    let mut writer = store.writer().acquire().await?;
    let statements = [
        ("SELECT 1", "SELECT 1"),
        (
            "one-row insert",
            "INSERT INTO idempotency_records
                 (scope, key, fingerprint, state, token, lease_expires_at, expires_at, created_at)
             VALUES ('probe', hex(randomblob(16)), randomblob(32), 'in_flight', 1, 1, 1, 1)",
        ),
    ];
    for (label, sql) in statements {
        for _ in 0..WARM_UP {
            sqlx::query(sql).execute(&mut *writer).await?;
        }
        let started = Instant::now();
        for _ in 0..MEASURED {
            sqlx::query(sql).execute(&mut *writer).await?;
        }
        println!(
            "{label:<16} {:?} per statement",
            started.elapsed() / MEASURED
        );
    }
    Ok(())
}
