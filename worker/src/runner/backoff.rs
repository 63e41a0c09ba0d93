//! Exponential backoff with a cap, for the receive loop, job retries and the deleter.

use std::time::Duration;

/// Exponential backoff with a cap.
pub(super) struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(super) fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, current: base }
    }
    pub(super) fn next(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }
    pub(super) fn reset(&mut self) {
        self.current = self.base;
    }
}
