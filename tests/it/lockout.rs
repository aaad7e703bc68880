//! Login lockout per email: attempts are reserved atomically before any
//! password is checked, locks last a window, and time comes from the app
//! clock.

use std::time::Duration;

use chrono::TimeDelta;
use tollgate::accounts::lockout::{self, Attempt};

use crate::harness::TestApp;

const THRESHOLD: u32 = 5;
const WINDOW: Duration = Duration::from_secs(900);

fn assert_locked(attempt: Attempt) -> u64 {
    match attempt {
        Attempt::Locked { retry_after_secs } => {
            assert!(
                retry_after_secs > 0 && retry_after_secs <= WINDOW.as_secs(),
                "retry_after {retry_after_secs} outside (0, {}]",
                WINDOW.as_secs()
            );
            retry_after_secs
        }
        Attempt::Allowed => panic!("expected the email to be locked"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_attempts_reserve_exactly_the_threshold() {
    let app = TestApp::spawn().await;
    let now = app.state.now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let state = app.state.clone();
            tokio::spawn(async move {
                let mut conn = state.pool().get().await.expect("database connection");
                lockout::take_attempt(&mut conn, "ada@example.com", now, THRESHOLD, WINDOW)
                    .await
                    .expect("take_attempt")
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        match task.await.expect("attempt task") {
            Attempt::Allowed => allowed += 1,
            locked => {
                assert_locked(locked);
            }
        }
    }
    assert_eq!(allowed, THRESHOLD);
}

#[tokio::test]
async fn a_lock_lasts_one_window_then_attempts_are_allowed_again() {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    let email = "nobody-has-this@example.com";
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
    // The lock starts at the first refused attempt and lasts the window.
    let retry_after = assert_locked(
        lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW)
            .await
            .unwrap(),
    );
    assert!(retry_after >= WINDOW.as_secs() - 5, "retry_after {retry_after}");

    // Attempts while locked do not extend the lock.
    app.clock.advance(TimeDelta::seconds(600));
    let retry_after = assert_locked(
        lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW)
            .await
            .unwrap(),
    );
    assert!(retry_after <= 300, "retry_after {retry_after}");

    // Once the lock has run out, counting starts afresh.
    app.clock.advance(TimeDelta::seconds(301));
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
    assert_locked(
        lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW)
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn attempts_spread_beyond_the_window_never_lock() {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    let email = "slow@example.com";
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
    // The window has passed: a new one opens at this attempt.
    app.clock.advance(TimeDelta::seconds(901));
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, email, app.state.now(), THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
}

#[tokio::test]
async fn clear_resets_and_emails_are_independent() {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    let now = app.state.now();
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, "ada@example.com", now, THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
    assert_locked(
        lockout::take_attempt(&mut conn, "ada@example.com", now, THRESHOLD, WINDOW)
            .await
            .unwrap(),
    );
    // Another email is untouched by Ada's lock.
    let attempt = lockout::take_attempt(&mut conn, "grace@example.com", now, THRESHOLD, WINDOW).await;
    assert_eq!(attempt.unwrap(), Attempt::Allowed);

    // A successful login clears the count (here: even a running lock).
    lockout::clear(&mut conn, "ada@example.com").await.unwrap();
    for _ in 0..THRESHOLD {
        let attempt = lockout::take_attempt(&mut conn, "ada@example.com", now, THRESHOLD, WINDOW).await;
        assert_eq!(attempt.unwrap(), Attempt::Allowed);
    }
    // Clearing an email with no attempts is fine.
    lockout::clear(&mut conn, "never-tried@example.com").await.unwrap();
}

#[tokio::test]
async fn prune_deletes_only_rows_that_decide_nothing() {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    let start = app.state.now();
    for _ in 0..=THRESHOLD {
        lockout::take_attempt(&mut conn, "locked@example.com", start, THRESHOLD, WINDOW)
            .await
            .unwrap();
    }
    lockout::take_attempt(&mut conn, "once@example.com", start, THRESHOLD, WINDOW)
        .await
        .unwrap();
    assert_eq!(lockout::prune(&mut conn, start, WINDOW).await.unwrap(), 0);

    // Both windows and the lock are over one window later.
    let later = start + TimeDelta::seconds(900);
    assert_eq!(lockout::prune(&mut conn, later, WINDOW).await.unwrap(), 2);
}
