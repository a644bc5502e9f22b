//! Checkpoints of the SQLite write-ahead log, off the writer's path.
//!
//! SQLite checkpoints by default inside the commit that takes the log past 1,000
//! pages: that commit copies the log into the database and syncs both files while
//! every queued write waits behind it, which made the slowest tenth of writes several
//! times slower than the median (docs/BENCHMARKS.md). So the writer checkpoints only
//! past a far larger log, a safety net, and a task checkpoints `PASSIVE` (never
//! waiting for the writer or the readers) on a reader connection at a short interval.

use std::time::Duration;

use std::sync::Arc;

use super::sqlite_connections::SqliteConnections;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::AbortHandle;

/// How often the task checkpoints.
const INTERVAL: Duration = Duration::from_millis(100);

/// The log size, in pages, at which the writer checkpoints itself (64 MiB of 4 KiB
/// pages): reached only if the task cannot keep up or has stopped.
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

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
    /// Starts checkpointing the database of `reader` every [`INTERVAL`].
    pub fn start(reader: SqliteConnections) -> Self {
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
                    Ok(mut connection) => sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&mut *connection)
                        .await
                        .map(drop),
                    Err(error) => Err(error),
                };
                if let Err(error) = checkpoint {
                    if !reader.is_closed() {
                        tracing::warn!(error = %error, "a write-ahead log checkpoint failed");
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
