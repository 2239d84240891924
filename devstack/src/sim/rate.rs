//! Portal's rate limits as the simulator enforces them (off until set through `/_sim/config`):
//! at most `n` requests in any 60 s per API, the Enclave MPC API (`/v1/…`) and the client API
//! (`/api/v3/…`) apart. A sliding window, the strictest reading of "n requests a minute": a
//! request that would be the window's `n + 1`-th is answered 429 with `Retry-After` and counted
//! as over the limit; only answered requests fill the window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The window Portal's limits are counted over.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The API a route belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// `/v1/generate`, `/v1/backup`, `/v1/recover`.
    Mpc,
    /// `/api/v3/…`.
    Client,
}

/// One API's limit and what it saw.
#[derive(Debug, Default)]
pub(crate) struct Limit {
    /// Requests per 60 s (`None`: not limited).
    pub per_minute: Option<u32>,
    /// Start times of the answered requests of the last 60 s (kept while a limit is set).
    window: VecDeque<Instant>,
    /// Requests refused for the limit.
    pub over: u64,
    /// The most requests answered within any 60 s since the limit was set.
    pub peak: usize,
}

impl Limit {
    /// Sets (or clears, with 0) the limit; the window starts empty.
    pub(crate) fn set(&mut self, per_minute: u32) {
        *self = Limit {
            per_minute: (per_minute > 0).then_some(per_minute),
            ..Limit::default()
        };
    }

    /// Admits a request arriving `now`, or answers the seconds until one may (`Retry-After`).
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.per_minute else {
            return Ok(());
        };
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.window.pop_front();
        }
        if self.window.len() >= limit as usize {
            self.over += 1;
            let oldest = self.window.front().copied().unwrap_or(now);
            let left = WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        self.window.push_back(now);
        self.peak = self.peak.max(self.window.len());
        Ok(())
    }

    /// As the admin API shows it.
    pub(crate) fn to_json(&self) -> Value {
        json!({"perMinute": self.per_minute, "overLimit": self.over, "peakPerMinute": self.peak})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_minute_holds_the_limit_and_counts_the_rest() {
        let mut limit = Limit::default();
        let start = Instant::now();
        assert_eq!(limit.admit(start), Ok(()), "no limit set");
        limit.set(3);
        for ms in [0, 10, 20] {
            assert_eq!(limit.admit(start + Duration::from_millis(ms)), Ok(()));
        }
        // The fourth within 60 s of the first is refused until the first leaves the window.
        assert_eq!(limit.admit(start + Duration::from_secs(30)), Err(30));
        assert_eq!(limit.admit(start + Duration::from_millis(59_999)), Err(1));
        assert_eq!(limit.admit(start + Duration::from_secs(60)), Ok(()));
        assert_eq!((limit.over, limit.peak), (2, 3));
        limit.set(0);
        assert_eq!(limit.admit(start), Ok(()));
        assert_eq!(limit.over, 0);
    }
}
