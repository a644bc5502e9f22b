//! Compares the two ways a `SqliteStore` can write: through one writer connection
//! (`SqliteStore::open`) or through a shared pool of several connections that wait on
//! SQLite's busy timeout (`SqliteStore::from_pool`).
//!
//! `cargo run --release -p idempotency-sql --example sqlite_write_modes`
//!
//! Two loads per set-up: 16 tasks each doing 300 reserve + complete + lookup on fresh
//! keys (throughput and latency per triple), and 64 tasks each making 50
//! reserve-then-release attempts on one hot key (errors must stay at zero).

use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use idempotency::{
    FencingToken, Fingerprint, RecordId, ReserveOutcome, ReserveRequest, Store, StoredResponse,
};
use idempotency_sql::SqliteStore;
use sqlx::sqlite::SqlitePoolOptions;

const LEASE: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(86_400);

fn request<'a>(
    id: &'a RecordId,
    fingerprint: &'a Fingerprint,
    token: FencingToken,
) -> ReserveRequest<'a> {
    ReserveRequest {
        id,
        fingerprint,
        token,
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        lease: LEASE,
        retention: RETENTION,
    }
}

async fn measure(label: &str, store: SqliteStore) {
    let fingerprint = Fingerprint::from_bytes([1; 32]);
    let response = StoredResponse {
        status: 201,
        headers: vec![(
            "content-type".into(),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from(vec![b'x'; 600]),
    };
    let now = request(
        &RecordId::new("", ""),
        &fingerprint,
        FencingToken::generate(),
    )
    .now;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (store, response) = (store.clone(), response.clone());
        tasks.push(tokio::spawn(async move {
            let (mut errors, mut latencies) = (0, Vec::new());
            for round in 0..300 {
                let begun = Instant::now();
                let id = RecordId::new("scope", format!("key-{task}-{round}"));
                let token = FencingToken::generate();
                match store.reserve(request(&id, &fingerprint, token)).await {
                    Ok(ReserveOutcome::Reserved { .. }) => {
                        errors += usize::from(store.complete(&id, token, &response).await.is_err());
                    }
                    _ => errors += 1,
                }
                errors += usize::from(store.lookup(&id, now).await.is_err());
                latencies.push(begun.elapsed());
            }
            (errors, latencies)
        }));
    }
    let (mut errors, mut latencies) = (0, Vec::new());
    for task in tasks {
        let (task_errors, task_latencies) = task.await.expect("no task panics");
        errors += task_errors;
        latencies.extend(task_latencies);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: usize| latencies[latencies.len() * p / 100];

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = RecordId::new("scope", "hot");
            let mut errors = 0;
            for _ in 0..50 {
                let token = FencingToken::generate();
                match store.reserve(request(&id, &fingerprint, token)).await {
                    Ok(ReserveOutcome::Reserved { .. }) => {
                        errors += usize::from(store.release(&id, token).await.is_err());
                    }
                    Ok(ReserveOutcome::Existing(_)) => {}
                    Err(_) => errors += 1,
                }
            }
            errors
        }));
    }
    let mut hot_errors = 0;
    for task in tasks {
        hot_errors += task.await.expect("no task panics");
    }
    println!(
        "{label:<24} {:>6.0} triples/s  p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}  errors {errors}  | hot key {:>9.2?} errors {hot_errors}",
        4800.0 / elapsed.as_secs_f64(),
        percentile(50),
        percentile(99),
        latencies[latencies.len() - 1],
        started.elapsed(),
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    for readers in [1, 4] {
        let options = SqliteStore::connect_options(dir.path().join(format!("writer-{readers}.db")));
        let store = SqliteStore::open_with(options, readers).await?;
        store.migrate().await?;
        measure(&format!("1 writer + {readers} readers"), store).await;
    }
    let options = SqliteStore::connect_options(dir.path().join("no-group-commit.db"));
    let store = SqliteStore::open_with(options, 4)
        .await?
        .without_group_commit();
    store.migrate().await?;
    measure("1 writer + 4, no batching", store).await;
    for connections in [2, 4, 8] {
        let options =
            SqliteStore::connect_options(dir.path().join(format!("shared-{connections}.db")));
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?;
        let store = SqliteStore::from_pool(pool);
        store.migrate().await?;
        measure(&format!("shared pool of {connections}"), store).await;
    }
    Ok(())
}
