//! Port: the stack-wide budget of Portal calls per minute, shared by every concurrent invocation.
//!
//! Each Portal call first reserves a slot of its API's budget; the answer is how long to wait
//! before the call may go. Slots are spaced evenly (see `adapters::dynamodb::rate_limit`), so any
//! minute holds at most the configured number of calls, whichever process made them.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Portal's two APIs, each with a rate limit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortalApi {
    /// The Enclave MPC API (`/v1/backup`, `/v1/recover`).
    Mpc,
    /// The client API (`/api/v3/clients/me/…`).
    Client,
}

impl PortalApi {
    /// Both APIs.
    pub const ALL: [PortalApi; 2] = [PortalApi::Mpc, PortalApi::Client];

    /// The name in metrics, logs and the limiter's items.
    pub fn as_str(self) -> &'static str {
        match self {
            PortalApi::Mpc => "mpc",
            PortalApi::Client => "client",
        }
    }
}

/// Why no slot was reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The next free slot is further away than the caller may wait; nothing was reserved.
    #[error(
        "Portal's {} API budget is taken for the next {} ms; transient: try again then",
        api.as_str(),
        wait.as_millis()
    )]
    Later {
        /// The API.
        api: PortalApi,
        /// How long until a slot is likely free.
        wait: Duration,
    },
    /// The limiter's store could not be reached or refused the update.
    #[error("the Portal rate limiter's table could not be updated ({detail}); transient: retry")]
    Unavailable {
        /// What failed (no value).
        detail: String,
    },
}

/// A future the limiter answers: how long from now until the reserved slot starts.
pub type Reserved<'a> = Pin<Box<dyn Future<Output = Result<Duration, LimitError>> + Send + 'a>>;

/// Reserves slots of the stack's Portal budget.
///
/// Object-safe (a boxed future), like the backup queue: the Portal HTTP adapter holds an
/// optional `Arc<dyn RateLimiter>` rather than carry a type parameter through every service.
pub trait RateLimiter: Send + Sync + Debug {
    /// Reserves the next slot of `api` that starts within `max_wait`; answers how long from now
    /// until it starts (zero: call at once). Never reserves a slot it then refuses.
    fn reserve(&self, api: PortalApi, max_wait: Duration) -> Reserved<'_>;
}

/// What the budget did since it was last asked, for one API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Calls that waited for their slot.
    pub waited: u64,
    /// Milliseconds waited in all.
    pub wait_ms: u64,
    /// Calls held back (no slot within the longest wait).
    pub held: u64,
}

/// Counts of the budget's waits, drained once per invocation into metrics.
pub trait BudgetMeter: Send + Sync + Debug {
    /// The counts since the last call, per API (and zeroes them).
    fn take_stats(&self) -> [(PortalApi, BudgetStats); 2];
}
