//! "Never hold one pooled connection while waiting for another", checked
//! by the pool itself.
//!
//! A request that holds a connection and asks the pool for a second one
//! deadlocks as soon as the pool is full of such requests: each waits for
//! a connection that only another waiter could give back. Reviews miss
//! such paths (a helper that takes `app` and opens its own connection,
//! called while the caller's is still in scope), so the pool refuses them
//! instead: every piece of work that may take connections runs in a
//! [`scoped`] future, the pool counts the connections each scope holds,
//! and asking for one while the scope (or a scope it runs inside) holds
//! one is refused at once: a panic in debug builds, so a test that walks
//! the path fails loudly; INTERNAL in release builds, never a stall.
//!
//! Scopes follow futures, not tasks: GraphQL resolves sibling fields
//! concurrently inside one task, and two siblings that each hold one
//! connection wait for nothing of each other's, so each field resolves in
//! a scope of its own (the GraphQL layer), and so does each
//! subscription of a websocket ([`ScopedStream`]). Asking a per-request
//! loader while holding a connection is the same deadlock one task
//! removed (its batch runs in a spawned task that asks the pool), so the
//! loaders check [`ensure_free`] too. Work outside any scope (start-up,
//! one-shot commands, tests' own queries) is not tracked.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

/// Connections held by one piece of work, and the work it runs inside.
#[derive(Debug, Default)]
pub struct Scope {
    held: AtomicUsize,
    parent: Option<Arc<Scope>>,
}

impl Scope {
    /// A scope inside the current one (or a root outside any).
    fn child_of_current() -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            parent: SCOPE.try_with(Arc::clone).ok(),
        })
    }

    /// Whether this scope or one it runs inside holds a connection: the
    /// enclosing work is then suspended while holding it.
    fn holds(&self) -> bool {
        let mut scope = Some(self);
        while let Some(current) = scope {
            if current.held.load(Ordering::SeqCst) > 0 {
                return true;
            }
            scope = current.parent.as_deref();
        }
        false
    }
}

/// Runs `future` in a scope of its own, inside the one current when it is
/// first polled.
pub fn scoped<F: Future>(future: F) -> Scoped<F> {
    Scoped { scope: None, future }
}

pin_project_lite::pin_project! {
    /// A future run in a scope of its own ([`scoped`]). A type rather than
    /// an `async fn`: that stored `future` twice, as its argument and
    /// inside the scope's future, and a websocket connection's future,
    /// kept for the socket's whole life, was 2.5 times its size.
    pub struct Scoped<F> {
        scope: Option<Arc<Scope>>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let scope = Arc::clone(this.scope.get_or_insert_with(Scope::child_of_current));
        let future = this.future;
        SCOPE.sync_scope(scope, || future.poll(cx))
    }
}

/// A stream whose every poll runs in one scope of its own (made inside
/// the scope current when the stream was wrapped), so streams polled
/// together by one task are told apart.
pub struct ScopedStream<S> {
    scope: Arc<Scope>,
    inner: S,
}

impl<S> ScopedStream<S> {
    /// Wraps `inner` in a new scope inside the current one.
    pub fn new(inner: S) -> Self {
        Self {
            scope: Scope::child_of_current(),
            inner,
        }
    }
}

impl<S: Stream + Unpin> Stream for ScopedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        let scope = Arc::clone(&this.scope);
        SCOPE.sync_scope(scope, || Pin::new(&mut this.inner).poll_next(cx))
    }
}

/// A connection counted against the scope that took it, until dropped.
#[derive(Debug)]
pub struct Hold(Option<Arc<Scope>>);

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(scope) = &self.0 {
            scope.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The current work asked for a connection (or a loader) while holding one.
#[derive(Debug, thiserror::Error)]
#[error("{0} while this task holds a pooled connection (that deadlocks the pool under load)")]
pub struct SecondConnection(pub &'static str);

/// Counts a connection about to be taken against the current scope;
/// refused when the scope already holds one.
pub fn claim() -> Result<Hold, SecondConnection> {
    let Ok(scope) = SCOPE.try_with(Arc::clone) else {
        return Ok(Hold(None));
    };
    if scope.holds() {
        return Err(refuse("asked the pool for a second connection"));
    }
    scope.held.fetch_add(1, Ordering::SeqCst);
    Ok(Hold(Some(scope)))
}

/// Refuses `what` when the current scope holds a connection: for work that
/// waits on other tasks which take connections (per-request loaders).
pub fn ensure_free(what: &'static str) -> Result<(), SecondConnection> {
    match SCOPE.try_with(|scope| scope.holds()) {
        Ok(true) => Err(refuse(what)),
        _ => Ok(()),
    }
}

/// Logs the refusal; in debug builds (every test run) it panics, so the
/// path that does it cannot go unnoticed.
fn refuse(what: &'static str) -> SecondConnection {
    let refused = SecondConnection(what);
    tracing::error!(error = %refused, "refused a second database connection");
    if cfg!(debug_assertions) {
        panic!("{refused}");
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_holds() -> bool {
        SCOPE.try_with(|scope| scope.holds()).unwrap_or(false)
    }

    #[tokio::test]
    async fn siblings_hold_one_each_and_nested_work_sees_its_parents_hold() {
        scoped(async {
            let first = scoped(async { claim().unwrap() }).await;
            // A sibling's connection is not one this work waits on.
            let second = scoped(async { claim().unwrap() }).await;
            assert!(!current_holds());
            drop((first, second));
            let held = claim().unwrap();
            assert!(current_holds());
            assert!(scoped(async { current_holds() }).await);
            drop(held);
            assert!(!current_holds());
            assert!(ensure_free("loading").is_ok());
        })
        .await;
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "second connection")]
    async fn a_second_connection_is_refused_loudly() {
        scoped(async {
            let _held = claim().unwrap();
            let _second = claim();
        })
        .await;
    }

    #[tokio::test]
    async fn work_outside_any_scope_is_not_tracked() {
        let first = claim().unwrap();
        assert!(claim().is_ok());
        drop(first);
    }

    #[tokio::test]
    async fn a_scoped_stream_polls_in_its_own_scope() {
        use futures_util::StreamExt;
        let mut stream = ScopedStream::new(futures_util::stream::poll_fn(|_| Poll::Ready(Some(current_holds()))));
        let held = scoped(async {
            let _held = claim().unwrap();
            stream.next().await
        })
        .await;
        // Made outside that scope, the stream does not see its hold.
        assert_eq!(held, Some(false));
    }
}
