//! The one source of "now" for business rules.
//!
//! Lockouts, grace periods, device polling and quota periods all read the
//! time from a [`Clock`] so tests can move it; SQL `now()` is never used in
//! a rule.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests can move: it runs with real time, shifted by an offset
/// that `advance` and `set` change.
#[derive(Debug, Default)]
pub struct AdjustableClock {
    offset: Mutex<Duration>,
}

impl AdjustableClock {
    /// A clock that starts at the real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset += by;
    }

    /// Makes the clock read `at` now (and run on from there).
    pub fn set(&self, at: DateTime<Utc>) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset = at - Utc::now();
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The clock shared by the whole application.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustable_clock_moves_when_told() {
        let clock = AdjustableClock::new();
        let before = clock.now();
        clock.advance(Duration::hours(2));
        let moved = clock.now() - before;
        assert!(moved >= Duration::hours(2) && moved < Duration::hours(2) + Duration::seconds(5));

        let target = DateTime::parse_from_rfc3339("2030-01-31T23:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        clock.set(target);
        assert!((clock.now() - target).num_seconds().abs() <= 1);
    }
}
