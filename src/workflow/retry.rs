//! Retries inside an invocation, and the invocation's deadline.
//!
//! Transient failures (429, 5xx, timeouts, connection errors) are retried with exponential
//! backoff and full jitter, waiting at least as long as Portal's `Retry-After`, and never past the
//! point where the invocation could not finish. Permanent failures are not retried.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::workflow::error::{BackupError, Cause, Step};

/// Time kept back from the deadline for answering Lambda and releasing leases.
pub const RESERVE: Duration = Duration::from_millis(1500);

/// When the invocation must have answered.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// No deadline (tests, tools).
    pub fn none() -> Self {
        Self { at: None }
    }

    /// `remaining` from now.
    pub fn after(remaining: Duration) -> Self {
        Self {
            at: Some(Instant::now() + remaining),
        }
    }

    /// From Lambda's `Lambda-Runtime-Deadline-Ms` (milliseconds since the epoch; 0 = none).
    pub fn from_epoch_ms(ms: u64) -> Self {
        if ms == 0 {
            return Self::none();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::after(Duration::from_millis(ms.saturating_sub(now)))
    }

    /// Time left, if there is a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether `needed` still fits before the deadline, keeping the reserve.
    pub fn allows(&self, needed: Duration) -> bool {
        self.remaining().is_none_or(|left| left >= needed + RESERVE)
    }

    /// The deadline as milliseconds since the epoch (for leases); `fallback` from now if none.
    pub fn epoch_ms(&self, fallback: Duration) -> u64 {
        let left = self.remaining().unwrap_or(fallback);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (now + left).as_millis() as u64
    }

    /// Fails with a transient error if `needed` does not fit: work that cannot finish is not started.
    pub fn check(&self, step: Step, needed: Duration) -> Result<(), BackupError> {
        if self.allows(needed) {
            Ok(())
        } else {
            Err(BackupError::new(
                step,
                Cause::Deadline(self.remaining().unwrap_or_default()),
            ))
        }
    }
}

/// How often and how long to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt (doubles each time, before jitter).
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(cap, base × 2^(attempt-1))].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let mut bytes = [0u8; 8];
        // A failed RNG read only removes the jitter.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction)
    }

    /// Runs `call` until it succeeds, fails permanently, runs out of attempts, or the next wait
    /// would not fit before the deadline. `retries` counts the retries made.
    ///
    /// Each attempt is also cut off where the invocation's reserve begins, so a stalled call
    /// fails (transiently, at `step`) in time for the function to answer and release its lease.
    ///
    /// This form answers the result and the retries it took, for calls that run side by side.
    pub async fn counted<T, F, Fut>(
        &self,
        step: Step,
        deadline: &Deadline,
        call: F,
    ) -> (Result<T, BackupError>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackupError>>,
    {
        let mut retries = 0;
        let result = self.run(step, deadline, &mut retries, call).await;
        (result, retries)
    }

    /// As [`RetryPolicy::counted`], adding the retries to `retries`.
    pub async fn run<T, F, Fut>(
        &self,
        step: Step,
        deadline: &Deadline,
        retries: &mut u32,
        mut call: F,
    ) -> Result<T, BackupError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackupError>>,
    {
        let mut attempt = 1;
        loop {
            let outcome = match deadline.remaining() {
                None => call().await,
                Some(left) => {
                    let budget = left.saturating_sub(RESERVE);
                    tokio::time::timeout(budget, call())
                        .await
                        .unwrap_or_else(|_| Err(BackupError::new(step, Cause::Deadline(RESERVE))))
                }
            };
            let err = match outcome {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.is_transient() || attempt >= self.max_attempts {
                return Err(err);
            }
            let wait = self
                .backoff(attempt)
                .max(retry_after(&err).unwrap_or_default());
            if !deadline.allows(wait) {
                return Err(err);
            }
            tracing::warn!(
                step = err.step.as_str(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "transient failure; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
            *retries += 1;
        }
    }
}

/// Portal's `Retry-After`, when it sent one, or the wait for the stack's next Portal slot.
pub fn retry_after(err: &BackupError) -> Option<Duration> {
    match &err.cause {
        Cause::Portal(e) => e.retry_after(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::portal::PortalError;
    use crate::workflow::error::Mismatch;

    fn transient(retry_after: Option<Duration>) -> BackupError {
        BackupError::new(
            Step::Backup,
            PortalError::Status {
                call: "c",
                status: 503,
                error_id: None,
                retry_after,
            },
        )
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (p.base * 2u32.pow(attempt - 1)).min(p.cap);
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= ceiling);
            }
        }
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(distinct.len() > 1, "jitter varies");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let p = RetryPolicy::default();
        let mut calls = 0;
        let mut retries = 0;
        let r: Result<(), _> = p
            .run(Step::Backup, &Deadline::none(), &mut retries, || {
                calls += 1;
                async { Err(transient(None)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!((calls, retries), (3, 2));

        let mut calls = 0;
        let r: Result<(), _> = p
            .run(Step::Backup, &Deadline::none(), &mut retries, || {
                calls += 1;
                async {
                    Err(BackupError::new(
                        Step::Backup,
                        Cause::Mismatch(Mismatch::Differs("x".into())),
                    ))
                }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "permanent: no retry");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_the_deadline_respected() {
        let p = RetryPolicy::default();
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let mut retries = 0;
        let r = p
            .run(Step::Backup, &Deadline::none(), &mut retries, || {
                n += 1;
                let fail = n == 1;
                async move {
                    if fail {
                        Err(transient(Some(Duration::from_secs(7))))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "waited for Retry-After"
        );

        // 7 s of Retry-After does not fit in 3 s: give up at once rather than overrun.
        let mut calls = 0;
        let r: Result<(), _> = p
            .run(
                Step::Backup,
                &Deadline::after(Duration::from_secs(3)),
                &mut retries,
                || {
                    calls += 1;
                    async { Err(transient(Some(Duration::from_secs(7)))) }
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn deadline_checks_keep_a_reserve() {
        assert!(Deadline::none().allows(Duration::from_secs(3600)));
        let d = Deadline::after(Duration::from_secs(3));
        assert!(d.allows(Duration::from_secs(1)));
        assert!(!d.allows(Duration::from_secs(2)));
        let e = d.check(Step::Backup, Duration::from_secs(5)).unwrap_err();
        assert!(e.is_transient());
        assert!(Deadline::from_epoch_ms(0).remaining().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_outlives_the_invocation_is_cut_off_before_the_reserve() {
        let p = RetryPolicy::default();
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        let r: Result<(), _> = p
            .run(
                Step::MarkStored,
                &Deadline::after(Duration::from_secs(10)),
                &mut retries,
                || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                },
            )
            .await;
        let err = r.unwrap_err();
        assert_eq!(err.step, Step::MarkStored);
        assert!(matches!(err.cause, Cause::Deadline(_)) && err.is_transient());
        assert!(started.elapsed() <= Duration::from_secs(10) - RESERVE + Duration::from_millis(10));
    }
}
