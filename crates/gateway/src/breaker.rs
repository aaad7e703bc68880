//! A small circuit breaker per provider: one that keeps failing is
//! skipped for a while, then tried again.
//!
//! After [`THRESHOLD`] failures in a row (connection errors, timeouts,
//! 429s and 5xx) a provider is skipped for [`OPEN_FOR`]. Then it is
//! half-open: calls reach it again, and the first failure skips it for
//! another [`OPEN_FOR`] while the first success closes the breaker.
//! Time is the application's clock, so tests can move it.

use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// Failures in a row that open a provider's breaker.
pub const THRESHOLD: u32 = 5;
/// How long an open breaker skips its provider.
pub const OPEN_FOR: TimeDelta = TimeDelta::seconds(30);

/// The breakers of every provider this instance called.
#[derive(Debug, Default)]
pub struct Breakers {
    providers: Mutex<HashMap<String, Health>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
}

/// Whether a provider may be called now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed or half-open: call it.
    Allowed,
    /// Open: skip it until then.
    Skipped {
        /// When it is tried again.
        until: DateTime<Utc>,
    },
}

impl Breakers {
    /// Whether `provider` may be called at `now`.
    pub fn admit(&self, provider: &str, now: DateTime<Utc>) -> Admission {
        match self.lock().get(provider).and_then(|health| health.open_until) {
            Some(until) if now < until => Admission::Skipped { until },
            _ => Admission::Allowed,
        }
    }

    /// `provider` answered: its breaker closes.
    pub fn succeeded(&self, provider: &str) {
        let mut providers = self.lock();
        if providers.contains_key(provider) {
            providers.remove(provider);
        }
    }

    /// `provider` failed at `now`.
    pub fn failed(&self, provider: &str, now: DateTime<Utc>) {
        let mut providers = self.lock();
        let health = providers.entry(provider.to_owned()).or_default();
        health.failures = health.failures.saturating_add(1);
        if health.failures >= THRESHOLD {
            health.open_until = Some(now + OPEN_FOR);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        // A poisoned lock only means a panic mid-update of a counter.
        self.providers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn failures_in_a_row_open_the_breaker_until_it_half_opens() {
        let breakers = Breakers::default();
        for _ in 0..THRESHOLD - 1 {
            breakers.failed("p", at(0));
        }
        assert_eq!(breakers.admit("p", at(0)), Admission::Allowed);
        breakers.failed("p", at(0));
        assert_eq!(breakers.admit("p", at(29)), Admission::Skipped { until: at(30) });
        assert_eq!(breakers.admit("other", at(29)), Admission::Allowed);
        // Half-open: one more failure opens it again at once.
        assert_eq!(breakers.admit("p", at(30)), Admission::Allowed);
        breakers.failed("p", at(31));
        assert_eq!(breakers.admit("p", at(32)), Admission::Skipped { until: at(61) });
        // A success closes it.
        breakers.succeeded("p");
        assert_eq!(breakers.admit("p", at(32)), Admission::Allowed);
        breakers.failed("p", at(33));
        assert_eq!(breakers.admit("p", at(33)), Admission::Allowed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breakers = Breakers::default();
        for _ in 0..THRESHOLD - 1 {
            breakers.failed("p", at(0));
        }
        breakers.succeeded("p");
        breakers.failed("p", at(0));
        assert_eq!(breakers.admit("p", at(0)), Admission::Allowed);
    }
}
