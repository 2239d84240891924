//! The stack's Portal budget as the HTTP adapter spends it: every request to Portal first takes a
//! slot from the shared rate limiter (`ports::rate_limit`) and waits for it to start; a slot
//! further away than `max_wait` is not taken, and the call fails transiently with the wait
//! (`PortalError::Held`), so the message goes back to its queue for that long instead.
//!
//! The waits are counted per process and drained into one metric line per invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ports::portal::PortalError;
use crate::ports::rate_limit::{BudgetMeter, BudgetStats, LimitError, PortalApi, RateLimiter};

/// Counters of one API (index: `PortalApi` order).
#[derive(Debug, Default)]
struct Counters {
    /// Calls that waited for their slot.
    waited: AtomicU64,
    /// Milliseconds waited in all.
    wait_ms: AtomicU64,
    /// Calls held back (no slot within `max_wait`).
    held: AtomicU64,
}

/// The limiter, how long a call may wait for its slot, and the counters.
#[derive(Debug)]
pub struct PortalBudget {
    limiter: Arc<dyn RateLimiter>,
    max_wait: Duration,
    counters: [Counters; 2],
}

/// The API a Portal call belongs to: `/v1/…` is the Enclave MPC API, the rest the client API.
pub fn api_of(call: &str) -> PortalApi {
    if call
        .split_once(' ')
        .is_some_and(|(_, path)| path.starts_with("/v1/"))
    {
        PortalApi::Mpc
    } else {
        PortalApi::Client
    }
}

impl PortalBudget {
    /// Spends `limiter`'s slots, waiting at most `max_wait` for one.
    pub fn new(limiter: Arc<dyn RateLimiter>, max_wait: Duration) -> Self {
        Self {
            limiter,
            max_wait,
            counters: Default::default(),
        }
    }

    fn counters(&self, api: PortalApi) -> &Counters {
        match api {
            PortalApi::Mpc => &self.counters[0],
            PortalApi::Client => &self.counters[1],
        }
    }

    /// Takes a slot for `call` and waits until it starts.
    pub async fn admit(&self, call: &'static str) -> Result<(), PortalError> {
        let api = api_of(call);
        let counters = self.counters(api);
        match self.limiter.reserve(api, self.max_wait).await {
            Ok(wait) => {
                if !wait.is_zero() {
                    counters.waited.fetch_add(1, Ordering::Relaxed);
                    counters
                        .wait_ms
                        .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                    tracing::debug!(
                        call,
                        api = api.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        "waiting for a Portal slot"
                    );
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Err(LimitError::Later { wait, .. }) => {
                counters.held.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    call,
                    api = api.as_str(),
                    wait_ms = wait.as_millis() as u64,
                    "Portal call held back: no slot within the longest wait"
                );
                Err(PortalError::Held { call, wait })
            }
            Err(LimitError::Unavailable { detail }) => Err(PortalError::Limiter { call, detail }),
        }
    }
}

impl BudgetMeter for PortalBudget {
    fn take_stats(&self) -> [(PortalApi, BudgetStats); 2] {
        PortalApi::ALL.map(|api| {
            let c = self.counters(api);
            (
                api,
                BudgetStats {
                    waited: c.waited.swap(0, Ordering::Relaxed),
                    wait_ms: c.wait_ms.swap(0, Ordering::Relaxed),
                    held: c.held.swap(0, Ordering::Relaxed),
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::rate_limit::Reserved;
    use std::sync::Mutex;

    /// Answers the scripted results in order.
    #[derive(Debug, Default)]
    struct Scripted(Mutex<Vec<Result<Duration, LimitError>>>);

    impl RateLimiter for Scripted {
        fn reserve(&self, _api: PortalApi, _max_wait: Duration) -> Reserved<'_> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[test]
    fn calls_belong_to_their_api() {
        assert_eq!(api_of("POST /v1/backup"), PortalApi::Mpc);
        assert_eq!(api_of("POST /v1/recover"), PortalApi::Mpc);
        assert_eq!(
            api_of("PATCH /api/v3/clients/me/backup-share-pairs"),
            PortalApi::Client
        );
        assert_eq!(
            api_of("GET /api/v3/clients/me/wallets/{id}/ejectable-backup-shares"),
            PortalApi::Client
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_its_slot_or_is_held_with_the_wait() {
        let limiter = Scripted(Mutex::new(vec![
            Ok(Duration::ZERO),
            Ok(Duration::from_millis(700)),
            Err(LimitError::Later {
                api: PortalApi::Mpc,
                wait: Duration::from_secs(42),
            }),
            Err(LimitError::Unavailable {
                detail: "throttled".into(),
            }),
        ]));
        let budget = PortalBudget::new(Arc::new(limiter), Duration::from_secs(20));
        budget.admit("POST /v1/backup").await.unwrap();
        let started = tokio::time::Instant::now();
        budget.admit("POST /v1/backup").await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(700),
            "slept until its slot"
        );
        let held = budget.admit("POST /v1/backup").await.unwrap_err();
        assert!(matches!(held, PortalError::Held { wait, .. } if wait == Duration::from_secs(42)));
        assert!(held.is_transient());
        assert_eq!(held.retry_after(), Some(Duration::from_secs(42)));
        let failed = budget
            .admit("PATCH /api/v3/clients/me/backup-share-pairs")
            .await;
        assert!(matches!(failed, Err(PortalError::Limiter { .. })));
        let stats = budget.take_stats();
        assert_eq!(
            stats[0],
            (
                PortalApi::Mpc,
                BudgetStats {
                    waited: 1,
                    wait_ms: 700,
                    held: 1
                }
            )
        );
        assert_eq!(stats[1].1, BudgetStats::default());
        assert_eq!(budget.take_stats()[0].1, BudgetStats::default(), "drained");
    }
}
