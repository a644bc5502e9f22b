//! The group commit of PostgreSQL inserts: a queue whose items are executed
//! together, one multi-row statement (and one commit) for the inserts of many
//! concurrent requests.
//!
//! (The idempotency store's group commit in `idempotency-sql` has the same queue;
//! neither crate makes it public API.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

/// How many batched statements of one kind may run at once (each on its own pooled
/// connection); inserts arriving meanwhile queue for the next.
pub(crate) const RUNNING_BATCHES: usize = 2;

type RunBatch<Op, C> =
    Box<dyn Fn(Vec<Op>, Option<C>) -> BoxFuture<'static, Option<C>> + Send + Sync>;

/// A queue whose items are executed together, each batch on a connection of the
/// batcher's own: whoever submits while fewer than [`RUNNING_BATCHES`] batches run
/// starts a task that drains the queue, one batch (at most `max_batch` items) at a
/// time, until it is empty. No item waits for a timer: a lone item runs at once,
/// and items pile up only while batches run.
///
/// The connections (`C`) are kept between batches by the batcher itself, not a
/// pool: sqlx pings a pooled connection when it returns to the pool (a round trip
/// and a spawned task per checkout), which for one-statement checkouts doubled the
/// round trips. A draining task takes an idle connection (or `None`, and `run`
/// connects) and hands it back when the queue is empty; `run` returns the
/// connection it used, or `None` when it failed and must be replaced.
pub(crate) struct Batcher<Op, C> {
    shared: Arc<BatcherShared<Op, C>>,
}

struct BatcherShared<Op, C> {
    queue: Mutex<BatchQueue<Op, C>>,
    max_batch: usize,
    run: RunBatch<Op, C>,
}

struct BatchQueue<Op, C> {
    items: VecDeque<Op>,
    running: usize,
    idle: Vec<C>,
}

impl<Op: Send + 'static, C: Send + 'static> Batcher<Op, C> {
    pub(crate) fn new(
        max_batch: usize,
        run: impl Fn(Vec<Op>, Option<C>) -> BoxFuture<'static, Option<C>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(BatcherShared {
                queue: Mutex::new(BatchQueue {
                    items: VecDeque::new(),
                    running: 0,
                    idle: Vec::new(),
                }),
                max_batch: max_batch.max(1),
                run: Box::new(run),
            }),
        }
    }

    /// Queues `op` (which carries its own reply channel), starting a draining task
    /// if a slot is free.
    pub(crate) fn submit(&self, op: Op) {
        let start = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.items.push_back(op);
            let start = queue.running < RUNNING_BATCHES;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(drain(self.shared.clone()));
        }
    }
}

/// Hands a draining task's slot on if it ends by a panic.
struct Running<Op: Send + 'static, C: Send + 'static> {
    shared: Arc<BatcherShared<Op, C>>,
    armed: bool,
}

impl<Op: Send + 'static, C: Send + 'static> Drop for Running<Op, C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.items.is_empty() {
            queue.running -= 1;
        } else {
            drop(queue);
            tokio::spawn(drain(self.shared.clone()));
        }
    }
}

async fn drain<Op: Send + 'static, C: Send + 'static>(shared: Arc<BatcherShared<Op, C>>) {
    let mut running = Running {
        shared: shared.clone(),
        armed: true,
    };
    let mut connection = {
        let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.idle.pop()
    };
    loop {
        let batch: Vec<Op> = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.items.is_empty() {
                // Counted out under the lock that found the queue empty, so that a
                // racing submit sees either the slot free or its item taken here.
                queue.running -= 1;
                queue.idle.extend(connection);
                running.armed = false;
                return;
            }
            let take = queue.items.len().min(shared.max_batch);
            queue.items.drain(..take).collect()
        };
        connection = (shared.run)(batch, connection.take()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_is_answered_and_concurrent_items_share_batches() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let opened = connections.clone();
        let batcher = Arc::new(Batcher::new(
            8,
            move |ops: Vec<(u32, oneshot::Sender<u32>)>, connection: Option<usize>| {
                counted.fetch_add(1, Ordering::Relaxed);
                let opened = opened.clone();
                Box::pin(async move {
                    let connection =
                        connection.unwrap_or_else(|| opened.fetch_add(1, Ordering::Relaxed));
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    for (n, reply) in ops {
                        let _ = reply.send(n * 2);
                    }
                    Some(connection)
                })
            },
        ));
        let mut answers = Vec::new();
        for n in 0..100u32 {
            let (reply, answer) = oneshot::channel();
            batcher.submit((n, reply));
            answers.push((n, answer));
        }
        for (n, answer) in answers {
            assert_eq!(answer.await.unwrap(), n * 2);
        }
        let used = batches.load(Ordering::Relaxed);
        assert!(
            (100 / 8..100).contains(&used),
            "{used} batches for 100 items"
        );
        // Connections are kept between batches: one per running slot at most.
        assert!(connections.load(Ordering::Relaxed) <= RUNNING_BATCHES);
        // Idle again: a later item runs at once.
        let (reply, answer) = oneshot::channel();
        batcher.submit((7, reply));
        assert_eq!(answer.await.unwrap(), 14);
    }
}
