//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints by default inside the commit that takes the log past 1,000
//! pages: that commit copies the log into the database and syncs both files while
//! every queued write waits behind it, which made the slowest tenth of writes several
//! times slower than the median (docs/BENCHMARKS.md). So a task checkpoints `PASSIVE`
//! (never waiting for the writer or the readers) on a reader connection at a short
//! interval, and the writer checkpoints only past a far larger log, a safety net.
//!
//! Under a steady stream of writes the task's passes never leave the log fully
//! copied (the writer appends during each of them), and SQLite starts the log over
//! only when a write begins on a fully copied log. So once the log is long
//! ([`CATCH_UP_PAGES`]) the task asks the writer ([`CatchUpRequest`]) to copy, before
//! its next turn, the few frames appended during the task's last pass. That pauses
//! the writer for as long as its two syncs take (milliseconds, more on a busy disk),
//! rarely because the log is long, and the log starts over after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::sqlite_connections::SqliteConnections;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::AbortHandle;

/// How often the task checkpoints.
const INTERVAL: Duration = Duration::from_millis(100);

/// The log size, in pages, past which the task asks the writer to catch up (128 MiB
/// of 4 KiB pages): each catch-up pauses the writer, so the longer the log may grow,
/// the fewer writes meet one.
pub const CATCH_UP_PAGES: i64 = 32_768;

/// The log size, in pages, at which the writer checkpoints itself inside a commit
/// (256 MiB): reached only if the task and the catch-ups cannot keep up or have
/// stopped.
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// The task's request that the writer checkpoint before its next turn, set when a
/// pass leaves a long log behind ([`CATCH_UP_PAGES`]).
#[derive(Debug, Default)]
pub struct CatchUpRequest(AtomicBool);

impl CatchUpRequest {
    /// Asks for a catch-up before the writer's next turn.
    pub(crate) fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a catch-up was requested since the last call (which clears it).
    pub fn take(&self) -> bool {
        // The load first: a turn that finds nothing to do writes nothing shared.
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::AcqRel)
    }
}

/// The checkpointing task; stops when the last clone of its storage is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    task: AbortHandle,
    /// Held by the task during each checkpoint and by [`Checkpointer::pause`]: SQLite
    /// refuses a checkpoint at once (`SQLITE_BUSY`, no busy handler) while another
    /// connection runs one.
    running: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database of `reader` every [`INTERVAL`], asking the
    /// writer through `catch_up` when the log stays long.
    pub fn start(reader: SqliteConnections, catch_up: Arc<CatchUpRequest>) -> Self {
        let running = Arc::new(Mutex::new(()));
        let lock = running.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !reader.is_closed() {
                ticks.tick().await;
                let _running = lock.lock().await;
                // A failed checkpoint leaves the log as it was; the next tick retries
                // and the writer's own checkpoint bounds the log meanwhile.
                let checkpoint = match reader.acquire().await {
                    Ok(mut connection) => {
                        sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                            .fetch_one(&mut *connection)
                            .await
                    }
                    Err(error) => Err(error),
                };
                match checkpoint {
                    Ok((_busy, log_pages, _copied)) if log_pages >= CATCH_UP_PAGES => {
                        catch_up.request();
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if !reader.is_closed() {
                            tracing::warn!(error = %error, "a write-ahead log checkpoint failed");
                        }
                    }
                }
            }
        });
        Self {
            task: task.abort_handle(),
            running,
        }
    }

    /// Waits for a running checkpoint to end and keeps the task from starting
    /// another until the guard is dropped (for a checkpoint of the caller's own).
    pub async fn pause(&self) -> OwnedMutexGuard<()> {
        self.running.clone().lock_owned().await
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    use super::*;
    use crate::storage::job_batch::TurnConnection;
    use crate::storage::records::Stmt;

    /// One write turn on the writer, as the batch queues run it.
    async fn one_turn(writer: &SqliteConnections, n: i64) {
        let mut checkout = writer.acquire().await.expect("writer");
        let mut tx = checkout.tx().await.expect("lent");
        tx.execute(Stmt::new("BEGIN IMMEDIATE"))
            .await
            .expect("begin");
        tx.execute(Stmt::new("INSERT INTO t (n) VALUES (").bind(n).sql(")"))
            .await
            .expect("insert");
        tx.execute(Stmt::new("COMMIT")).await.expect("commit");
    }

    fn log_file_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).expect("the log file").len()
    }

    // The log file never shrinks; it stops growing once writes start it over. Both
    // kinds of turn handle: the writer's own connection and the lent sqlx handle.
    #[tokio::test]
    async fn a_requested_catch_up_lets_the_writers_next_turn_start_the_log_over() {
        for own_turn_connection in [true, false] {
            catch_up_starts_the_log_over(own_turn_connection).await;
        }
    }

    async fn catch_up_starts_the_log_over(own_turn_connection: bool) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // No checkpoint of the writer's own, and no task: only a catch-up copies.
            .pragma("wal_autocheckpoint", "0");
        let writer = if own_turn_connection {
            SqliteConnections::connect_writer(&options).await
        } else {
            SqliteConnections::connect(&options, 1).await
        }
        .expect("writer");
        assert_eq!(
            writer
                .acquire()
                .await
                .expect("writer")
                .turn_connection()
                .is_some(),
            own_turn_connection
        );
        sqlx::query("CREATE TABLE t (n INTEGER, pad TEXT DEFAULT (hex(randomblob(2000))))")
            .execute(&mut *writer.acquire().await.expect("writer"))
            .await
            .expect("create");
        let log = dir.path().join("db-wal");
        for n in 0..50 {
            one_turn(&writer, n).await;
        }
        let after_first = log_file_bytes(&log);
        for n in 0..50 {
            one_turn(&writer, n).await;
        }
        let after_second = log_file_bytes(&log);
        assert!(
            after_second > after_first + 50 * 4096,
            "without a catch-up the log grows: {after_first} then {after_second} bytes"
        );

        let catch_up = writer.catch_up_request().expect("dedicated connections");
        catch_up.request();
        for n in 0..100 {
            one_turn(&writer, n).await;
        }
        assert!(!catch_up.take(), "a turn took the request");
        assert_eq!(
            log_file_bytes(&log),
            after_second,
            "after the catch-up the turns wrote over the log's start"
        );
    }
}
