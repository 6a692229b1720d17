//! Supervision: stopping a backend's partition workers within a time limit.

use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Partition workers being stopped together (on a revoke, a rebalance or at shutdown), each
/// with a label naming it (its partition) and the token it stops on.
///
/// [`WorkerSet::cancel`] tells every worker to stop: it finishes the message in hand and its
/// publishes, and stores its offsets. [`WorkerSet::stop`] then waits up to a timeout and aborts
/// those still running, whose unfinished records stay uncommitted and are delivered again.
///
/// ```
/// use faststream_core::broker::WorkerSet;
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut workers = WorkerSet::new();
/// let stop = CancellationToken::new();
/// let token = stop.clone();
/// workers.push("t[0]", stop, tokio::spawn(async move { token.cancelled().await }));
/// workers.push("t[1]", CancellationToken::new(), tokio::spawn(std::future::pending()));
/// let aborted = workers.stop(Duration::from_millis(10)).await;
/// assert_eq!(aborted, ["t[1]"], "the one that ignored its token");
/// # }
/// ```
#[derive(Debug)]
pub struct WorkerSet<L> {
    workers: Vec<(L, CancellationToken, JoinHandle<()>)>,
}

impl<L> Default for WorkerSet<L> {
    fn default() -> Self {
        Self {
            workers: Vec::new(),
        }
    }
}

impl<L> WorkerSet<L> {
    /// No workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the worker `task`, named `label`, which stops when `stop` fires.
    pub fn push(&mut self, label: L, stop: CancellationToken, task: JoinHandle<()>) {
        self.workers.push((label, stop, task));
    }

    /// How many workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Tells every worker to stop, without waiting. Dropping the set afterwards lets them
    /// finish on their own (for a caller that cannot wait).
    pub fn cancel(&self) {
        for (_, stop, _) in &self.workers {
            stop.cancel();
        }
    }

    /// Tells every worker to stop and waits up to `timeout` for all of them; then aborts those
    /// still running. Returns the labels of the aborted ones, in the order they were added.
    pub async fn stop(mut self, timeout: Duration) -> Vec<L> {
        if self.workers.is_empty() {
            return Vec::new();
        }
        self.cancel();
        let joins = futures::future::join_all(self.workers.iter_mut().map(|(_, _, task)| task));
        if tokio::time::timeout(timeout, joins).await.is_ok() {
            return Vec::new();
        }
        let mut aborted = Vec::new();
        for (label, _, task) in self.workers {
            if !task.is_finished() {
                task.abort();
                aborted.push(label);
            }
        }
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn workers_that_stop_in_time_are_not_aborted() {
        let mut set = WorkerSet::new();
        let finished = Arc::new(AtomicBool::new(false));
        for partition in 0..3 {
            let stop = CancellationToken::new();
            let (token, finished) = (stop.clone(), Arc::clone(&finished));
            set.push(
                partition,
                stop,
                tokio::spawn(async move {
                    token.cancelled().await;
                    // Finishing the message in hand.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    finished.store(true, Ordering::Relaxed);
                }),
            );
        }
        assert_eq!(set.len(), 3);
        let aborted = set.stop(Duration::from_secs(5)).await;
        assert!(aborted.is_empty());
        assert!(finished.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_does_not_finish_in_time_is_aborted_and_reported() {
        let mut set = WorkerSet::new();
        let quick = CancellationToken::new();
        let token = quick.clone();
        set.push(
            "quick",
            quick,
            tokio::spawn(async move { token.cancelled().await }),
        );
        let stuck = tokio::spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
        let stuck_abort = stuck.abort_handle();
        set.push("stuck", CancellationToken::new(), stuck);
        let started = tokio::time::Instant::now();
        let aborted = set.stop(Duration::from_secs(2)).await;
        assert_eq!(aborted, ["stuck"]);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "waited the timeout"
        );
        tokio::task::yield_now().await;
        assert!(stuck_abort.is_finished(), "the stuck worker was aborted");
    }

    #[tokio::test]
    async fn cancel_only_signals() {
        let mut set = WorkerSet::<()>::new();
        assert!(set.is_empty());
        assert!(set.stop(Duration::ZERO).await.is_empty());
        set = WorkerSet::new();
        let stop = CancellationToken::new();
        set.push((), stop.clone(), tokio::spawn(async {}));
        set.cancel();
        assert!(stop.is_cancelled());
    }
}
