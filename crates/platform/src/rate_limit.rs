//! Fixed-window rate limits: shared by every instance through Redis when it
//! is configured, counted in this process otherwise.
//!
//! A window opens with the first hit on a key and lasts `window`; every hit
//! inside it counts, refused ones too, so a client hammering a limited key
//! gains nothing, but refused hits do not push the window's end out either
//! (a fixed window always ends, so a client that backs off gets back in).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};

use tollgate_core::error::AppError;

/// One atomic round trip: count the hit, start the window on the first one,
/// and report the count and the milliseconds left. A key found without an
/// expiry (PTTL -1, e.g. written by something else) gets one as well, so
/// no bucket can stay closed forever.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// Local buckets are swept once the map has grown past this many entries
/// (and then past twice what survived the last sweep), so sweeping costs
/// amortised O(1) per hit and memory stays within twice the live buckets.
const MIN_SWEEP_AT: usize = 1024;

/// What a hit on a bucket decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit.
    Allowed {
        /// Hits still allowed in the current window.
        remaining: u32,
    },
    /// Over the limit until the window ends.
    Limited {
        /// Seconds until the window ends: at least 1, at most the window
        /// (rounded up to whole seconds).
        retry_after_secs: u64,
    },
}

/// Counts hits per key in fixed windows. Cheap to clone; clones share
/// their counts.
#[derive(Clone)]
pub struct RateLimiter {
    backend: Backend,
    key_prefix: String,
}

#[derive(Clone)]
enum Backend {
    /// Counts live in Redis, so every instance sees the same buckets. The
    /// window runs on Redis's clock (one clock for all instances).
    Redis(redis::aio::ConnectionManager),
    /// Counts live in this process; windows run on the clock passed in.
    Local(Arc<Mutex<LocalBuckets>>),
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Local(_) => "local",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &backend)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RateLimiter {
    /// A limiter on Redis when it is given, in this process otherwise.
    /// Keys are stored as `{key_prefix}rl:{key}`, so apps (and tests)
    /// sharing a Redis keep their buckets apart by prefix.
    pub fn new(redis: Option<redis::aio::ConnectionManager>, key_prefix: String) -> Self {
        let backend = match redis {
            Some(manager) => Backend::Redis(manager),
            None => Backend::Local(Arc::new(Mutex::new(LocalBuckets::default()))),
        };
        Self { backend, key_prefix }
    }

    /// Whether counts are shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Counts one hit on `key` and decides it: the first `limit` hits of a
    /// window are allowed, the rest are limited until the window ends.
    /// `now` is the application clock's time (used by the local backend;
    /// Redis keeps time itself). A zero `window` is treated as 1 ms.
    pub async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, AppError> {
        let window = window.max(Duration::from_millis(1));
        let key = format!("{}rl:{key}", self.key_prefix);
        let (count, remaining_ms) = match &self.backend {
            Backend::Redis(manager) => redis_hit(manager.clone(), &key, window).await?,
            Backend::Local(buckets) => {
                // A poisoned lock only means another hit panicked mid-way;
                // the counts are still usable.
                let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
                buckets.hit(key, window, now)
            }
        };
        Ok(decide(count, remaining_ms, limit, window))
    }

    /// [`hit`](Self::hit), with a limited hit turned into RATE_LIMITED
    /// carrying `retryAfter`.
    pub async fn check(&self, key: &str, limit: u32, window: Duration, now: DateTime<Utc>) -> Result<(), AppError> {
        match self.hit(key, limit, window, now).await? {
            RateDecision::Allowed { .. } => Ok(()),
            RateDecision::Limited { retry_after_secs } => Err(AppError::rate_limited(retry_after_secs)),
        }
    }
}

/// Runs [`HIT_SCRIPT`]: returns the window's count and milliseconds left.
///
/// Sent with EVAL rather than `redis::Script` (EVALSHA) because the crate's
/// `script` feature is not enabled; Redis caches the compiled script either
/// way, and EVAL cannot fail with NOSCRIPT after a Redis restart.
async fn redis_hit(
    mut manager: redis::aio::ConnectionManager,
    key: &str,
    window: Duration,
) -> Result<(u64, u64), AppError> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let (count, ttl_ms): (i64, i64) = redis::cmd("EVAL")
        .arg(HIT_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(window_ms)
        .query_async(&mut manager)
        .await?;
    // Both are positive by the script's construction; clamp rather than trust.
    Ok((count.max(1).unsigned_abs(), ttl_ms.max(0).unsigned_abs()))
}

/// Turns a window's count and time left into a decision.
fn decide(count: u64, remaining_ms: u64, limit: u32, window: Duration) -> RateDecision {
    if count <= u64::from(limit) {
        // count <= limit, so the difference fits in u32.
        let remaining = u32::try_from(u64::from(limit) - count).unwrap_or(0);
        return RateDecision::Allowed { remaining };
    }
    let window_secs = window.as_millis().div_ceil(1000).max(1);
    let window_secs = u64::try_from(window_secs).unwrap_or(u64::MAX);
    RateDecision::Limited {
        retry_after_secs: remaining_ms.div_ceil(1000).clamp(1, window_secs),
    }
}

/// The local backend's buckets.
#[derive(Debug, Default)]
struct LocalBuckets {
    buckets: HashMap<String, Bucket>,
    /// Sweep expired buckets when the map grows past this.
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    count: u64,
    ends_at: DateTime<Utc>,
}

impl LocalBuckets {
    /// Counts a hit; returns the window's count and milliseconds left.
    fn hit(&mut self, key: String, window: Duration, now: DateTime<Utc>) -> (u64, u64) {
        if self.buckets.len() >= self.sweep_at.max(MIN_SWEEP_AT) {
            self.buckets.retain(|_, bucket| bucket.ends_at > now);
            self.sweep_at = self.buckets.len().saturating_mul(2);
        }
        let length = TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
        let bucket = self.buckets.entry(key).or_insert(Bucket { count: 0, ends_at: now });
        if bucket.ends_at <= now {
            // The window is over (or this is the first hit): a new one opens
            // at this hit.
            *bucket = Bucket {
                count: 0,
                ends_at: now.checked_add_signed(length).unwrap_or(DateTime::<Utc>::MAX_UTC),
            };
        }
        bucket.count = bucket.count.saturating_add(1);
        let left = (bucket.ends_at - now).num_milliseconds().max(0).unsigned_abs();
        (bucket.count, left)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn local() -> RateLimiter {
        RateLimiter::new(None, "test:".to_owned())
    }

    #[tokio::test]
    async fn allows_the_limit_then_limits_until_the_window_ends() {
        let limiter = local();
        let start = Utc::now();
        for expected in (0..3).rev() {
            assert_eq!(
                limiter.hit("login:1.2.3.4", 3, MINUTE, start).await.unwrap(),
                RateDecision::Allowed { remaining: expected }
            );
        }
        let later = start + TimeDelta::seconds(20);
        assert_eq!(
            limiter.hit("login:1.2.3.4", 3, MINUTE, later).await.unwrap(),
            RateDecision::Limited { retry_after_secs: 40 }
        );
        // Refused hits do not move the window's end.
        let near_end = start + TimeDelta::milliseconds(59_500);
        assert_eq!(
            limiter.hit("login:1.2.3.4", 3, MINUTE, near_end).await.unwrap(),
            RateDecision::Limited { retry_after_secs: 1 }
        );
        // A new window opens at the first hit after the old one ended.
        let next = start + MINUTE;
        assert_eq!(
            limiter.hit("login:1.2.3.4", 3, MINUTE, next).await.unwrap(),
            RateDecision::Allowed { remaining: 2 }
        );
    }

    #[tokio::test]
    async fn keys_are_independent_and_check_maps_to_rate_limited() {
        let limiter = local();
        let now = Utc::now();
        limiter.check("a", 1, MINUTE, now).await.unwrap();
        limiter.check("b", 1, MINUTE, now).await.unwrap();
        let err = limiter.check("a", 1, MINUTE, now).await.unwrap_err();
        assert_eq!(err.code(), tollgate_core::error::ErrorCode::RateLimited);
        match err {
            AppError::Client { retry_after, .. } => assert_eq!(retry_after, Some(60)),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[tokio::test]
    async fn clones_share_counts_and_a_zero_limit_refuses_everything() {
        let limiter = local();
        let clone = limiter.clone();
        let now = Utc::now();
        limiter.check("k", 1, MINUTE, now).await.unwrap();
        assert!(clone.check("k", 1, MINUTE, now).await.is_err());
        assert!(matches!(
            limiter.hit("zero", 0, MINUTE, now).await.unwrap(),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn retry_after_stays_within_one_second_and_the_window() {
        assert_eq!(decide(5, 0, 1, MINUTE), RateDecision::Limited { retry_after_secs: 1 });
        assert_eq!(
            decide(5, 10 * 60_000, 1, MINUTE),
            RateDecision::Limited { retry_after_secs: 60 }
        );
        assert_eq!(
            decide(5, 1_001, 1, MINUTE),
            RateDecision::Limited { retry_after_secs: 2 }
        );
        // Sub-second windows still ask for at least a second.
        assert_eq!(
            decide(5, 300, 1, Duration::from_millis(500)),
            RateDecision::Limited { retry_after_secs: 1 }
        );
    }

    #[test]
    fn expired_buckets_are_swept() {
        let mut buckets = LocalBuckets::default();
        let start = Utc::now();
        for i in 0..MIN_SWEEP_AT {
            buckets.hit(format!("k{i}"), MINUTE, start);
        }
        assert_eq!(buckets.len(), MIN_SWEEP_AT);
        // Once every window is over, the next hit sweeps them all away.
        buckets.hit("fresh".to_owned(), MINUTE, start + MINUTE);
        assert_eq!(buckets.len(), 1);
        // Live buckets survive a sweep.
        let later = start + MINUTE;
        for i in 0..(2 * MIN_SWEEP_AT) {
            buckets.hit(format!("live{i}"), MINUTE, later);
        }
        assert_eq!(buckets.len(), 2 * MIN_SWEEP_AT + 1);
    }
}
