//! Group commit's queueing, shared by the usage writer, the reservation
//! writer and the context reader (one queue each per application): the
//! first job of an idle queue is written at once, so an idle server adds
//! no latency; jobs that arrive while a write is in flight wait and form
//! the next group, written as soon as that write is done. One writer per
//! queue at a time, started by whoever found the queue idle.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Mutex, MutexGuard, PoisonError},
};

use tokio::sync::oneshot;
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

/// Queues of waiting jobs by key. A key is present only while its writer
/// is at work.
pub(crate) struct Coalescer<K, J> {
    queues: Mutex<HashMap<K, Vec<J>>>,
}

impl<K: Eq + Hash + Copy, J> Default for Coalescer<K, J> {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Copy, J> Coalescer<K, J> {
    fn queues(&self) -> MutexGuard<'_, HashMap<K, Vec<J>>> {
        // The lock guards plain pushes and takes: a panic cannot leave the
        // map half changed.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` behind `key`'s writer; when no writer is at work,
    /// marks `key` busy and hands the job back: the caller then starts the
    /// writer with [`Coalescer::drain`].
    pub(crate) fn join(&self, key: K, job: J) -> Option<J> {
        let mut queues = self.queues();
        match queues.get_mut(&key) {
            Some(waiting) => {
                waiting.push(job);
                None
            }
            None => {
                queues.insert(key, Vec::new());
                Some(job)
            }
        }
    }

    /// The writer of `key`: writes `first`, then each next group (what
    /// `take` takes of the waiting jobs, in arrival order) until nobody
    /// waits. Should it die (a panic), `key` is freed and the jobs waiting
    /// are dropped, so their callers hear of it instead of waiting forever.
    pub(crate) async fn drain<W, F>(&self, key: K, first: Vec<J>, take: fn(&mut Vec<J>) -> Vec<J>, mut write: W)
    where
        W: FnMut(Vec<J>) -> F,
        F: Future<Output = ()>,
    {
        let mut busy = Busy {
            coalescer: self,
            key,
            done: false,
        };
        let mut group = first;
        loop {
            write(group).await;
            let mut queues = self.queues();
            let waiting = queues.entry(key).or_default();
            if waiting.is_empty() {
                queues.remove(&key);
                busy.done = true;
                return;
            }
            group = take(waiting);
        }
    }
}

impl<J: Send + 'static> Coalescer<usize, J> {
    /// Hands a job to the application's writer (two apps in one process,
    /// as in tests, have their own databases) and waits for its answer.
    /// `job` makes the job around where its answer goes; when no writer is
    /// at work, one starts as a task of the application, writing each
    /// group with `write`. `what` names the job in refusals and errors.
    pub(crate) async fn ask<T, W, F>(
        &'static self,
        app: &AppState,
        what: &'static str,
        job: impl FnOnce(oneshot::Sender<AppResult<T>>) -> J,
        take: fn(&mut Vec<J>) -> Vec<J>,
        write: W,
    ) -> AppResult<T>
    where
        W: Fn(AppState, Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        // Waiting for a writer while holding a connection would deadlock a
        // full pool, as asking for a second connection would.
        tollgate_db::hold::ensure_free(what).map_err(AppError::internal)?;
        let (reply, answer) = oneshot::channel();
        let key = std::ptr::from_ref(app.pool()) as usize;
        if let Some(first) = self.join(key, job(reply)) {
            let app = app.clone();
            app.tasks().clone().spawn(tollgate_db::hold::scoped(async move {
                self.drain(key, vec![first], take, |group| write(app.clone(), group))
                    .await;
            }));
        }
        answer
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("the writer of {what} stopped before answering")))?
    }
}

/// Marks a key busy while its writer runs (see [`Coalescer::drain`]).
struct Busy<'a, K: Eq + Hash + Copy, J> {
    coalescer: &'a Coalescer<K, J>,
    key: K,
    done: bool,
}

impl<K: Eq + Hash + Copy, J> Drop for Busy<'_, K, J> {
    fn drop(&mut self) {
        if !self.done {
            self.coalescer.queues().remove(&self.key);
        }
    }
}
