//! The fixed-window rate limiter on both backends: Redis (shared by every
//! instance) and in-process (per instance, on the app clock).

use std::time::Duration;

use chrono::TimeDelta;
use redis::aio::ConnectionManager;
use tollgate::{
    error::{AppError, ErrorCode},
    platform::{
        clock::{AdjustableClock, Clock},
        rate_limit::{RateDecision, RateLimiter},
    },
};
use uuid::Uuid;

use crate::harness::services;

const MINUTE: Duration = Duration::from_secs(60);

/// A connection of its own, as a separate app instance would have.
async fn redis_connection() -> ConnectionManager {
    let client = redis::Client::open(services().redis_url.as_str()).expect("Redis URL");
    ConnectionManager::new(client).await.expect("connecting to Redis")
}

/// A prefix no other test uses, so parallel tests share no buckets.
fn unique_prefix() -> String {
    format!("test-{}:", Uuid::new_v4())
}

/// Fires `hits` concurrent hits on one key and returns the decisions.
async fn concurrent_hits(limiter: &RateLimiter, hits: usize, limit: u32, window: Duration) -> Vec<RateDecision> {
    let now = chrono::Utc::now();
    let tasks: Vec<_> = (0..hits)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.hit("login:203.0.113.7", limit, window, now).await })
        })
        .collect();
    let mut decisions = Vec::with_capacity(hits);
    for task in tasks {
        decisions.push(task.await.expect("hit task").expect("hit"));
    }
    decisions
}

/// Exactly `limit` allowed, each `remaining` value once, and every refusal
/// asks to wait between 1 s and the window.
fn assert_exactly_limit_allowed(decisions: &[RateDecision], limit: u32, window: Duration) {
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter_map(|d| match d {
            RateDecision::Allowed { remaining } => Some(*remaining),
            RateDecision::Limited { .. } => None,
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..limit).collect::<Vec<_>>(), "decisions: {decisions:?}");
    for decision in decisions {
        if let RateDecision::Limited { retry_after_secs } = decision {
            assert!(
                (1..=window.as_secs()).contains(retry_after_secs),
                "retry_after {retry_after_secs} outside 1..={}",
                window.as_secs()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_allows_exactly_the_limit_of_concurrent_hits() {
    let limiter = RateLimiter::new(Some(redis_connection().await), unique_prefix());
    assert!(limiter.is_shared());
    let decisions = concurrent_hits(&limiter, 50, 30, MINUTE).await;
    assert_exactly_limit_allowed(&decisions, 30, MINUTE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_allows_exactly_the_limit_of_concurrent_hits() {
    let limiter = RateLimiter::new(None, unique_prefix());
    assert!(!limiter.is_shared());
    let decisions = concurrent_hits(&limiter, 50, 30, MINUTE).await;
    assert_exactly_limit_allowed(&decisions, 30, MINUTE);
}

#[tokio::test]
async fn instances_on_one_redis_prefix_share_their_counts() {
    let prefix = unique_prefix();
    let first = RateLimiter::new(Some(redis_connection().await), prefix.clone());
    let second = RateLimiter::new(Some(redis_connection().await), prefix);
    let now = chrono::Utc::now();

    // Four hits spread over two instances use up one bucket of four.
    for limiter in [&first, &second, &first, &second] {
        limiter.check("register:198.51.100.1", 4, MINUTE, now).await.unwrap();
    }
    for limiter in [&first, &second] {
        match limiter.hit("register:198.51.100.1", 4, MINUTE, now).await.unwrap() {
            RateDecision::Limited { retry_after_secs } => assert!((1..=60).contains(&retry_after_secs)),
            allowed => panic!("expected a shared limit, got {allowed:?}"),
        }
    }

    // Other keys, and other prefixes, are separate buckets.
    second.check("register:198.51.100.2", 4, MINUTE, now).await.unwrap();
    let other_app = RateLimiter::new(Some(redis_connection().await), unique_prefix());
    other_app.check("register:198.51.100.1", 4, MINUTE, now).await.unwrap();
}

#[tokio::test]
async fn local_instances_count_separately() {
    let prefix = unique_prefix();
    let first = RateLimiter::new(None, prefix.clone());
    let second = RateLimiter::new(None, prefix);
    let now = chrono::Utc::now();
    first.check("k", 1, MINUTE, now).await.unwrap();
    second.check("k", 1, MINUTE, now).await.unwrap();
    assert!(first.check("k", 1, MINUTE, now).await.is_err());
}

#[tokio::test]
async fn redis_check_maps_to_rate_limited_and_the_window_ends() {
    let limiter = RateLimiter::new(Some(redis_connection().await), unique_prefix());
    let window = Duration::from_millis(400);
    let now = chrono::Utc::now();
    limiter.check("device:1", 2, window, now).await.unwrap();
    limiter.check("device:1", 2, window, now).await.unwrap();
    let err = limiter.check("device:1", 2, window, now).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited);
    // A sub-second window still asks to wait at least a second.
    assert!(
        matches!(
            err,
            AppError::Client {
                retry_after: Some(1),
                ..
            }
        ),
        "{err:?}"
    );

    // Redis keeps the window's time: once it has passed, hits are allowed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        limiter.hit("device:1", 2, window, now).await.unwrap(),
        RateDecision::Allowed { remaining: 1 }
    );
}

#[tokio::test]
async fn local_windows_follow_the_app_clock() {
    let clock = AdjustableClock::new();
    let limiter = RateLimiter::new(None, unique_prefix());
    for _ in 0..3 {
        limiter.check("password-reset:1", 3, MINUTE, clock.now()).await.unwrap();
    }
    clock.advance(TimeDelta::seconds(45));
    match limiter.hit("password-reset:1", 3, MINUTE, clock.now()).await.unwrap() {
        RateDecision::Limited { retry_after_secs } => {
            assert!((14..=15).contains(&retry_after_secs), "retry_after {retry_after_secs}");
        }
        allowed => panic!("expected a limit, got {allowed:?}"),
    }
    clock.advance(TimeDelta::seconds(16));
    assert_eq!(
        limiter.hit("password-reset:1", 3, MINUTE, clock.now()).await.unwrap(),
        RateDecision::Allowed { remaining: 2 }
    );
}
