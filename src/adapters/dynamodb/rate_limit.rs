//! The Portal rate limiter in a table of its own: one item per Portal API, `pk` =
//! `PORTAL_RATE#<api>`, `sk` = `NEXT`, holding `nextAt`, the earliest moment (milliseconds since
//! the epoch) the next call may start.
//!
//! Slots are spaced evenly, `spacing` = (60 s + a guard) ÷ the rate per minute, and each reserve
//! is one conditional `UpdateItem`:
//! - idle (`nextAt` ≤ now): `nextAt = now + spacing`, the call goes at once;
//! - busy (now < `nextAt` ≤ now + the caller's longest wait): `nextAt = nextAt + spacing`, the
//!   call waits until the old `nextAt`;
//! - further away: nothing is written; the caller is told how long the queue of slots is.
//!
//! The process remembers the last `nextAt` it saw to pick the likely case, and a failed condition
//! answers the item as it was (`ReturnValuesOnConditionCheckFailure`), so a wrong guess costs one
//! more call, never a read. Any 60 s then holds at most `rate` slot starts, and the guard absorbs
//! up to a second of difference between when calls start and when Portal counts them (network,
//! wake-ups, clocks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::adapters::dynamodb::item_key;
use crate::ports::rate_limit::{LimitError, PortalApi, RateLimiter, Reserved};

/// What each slot adds to a minute, so that delays between reserving and arriving at Portal
/// never put `rate + 1` calls in one minute.
pub const GUARD: Duration = Duration::from_secs(1);

/// How long an unused item stays (DynamoDB's TTL on `expiresAt` removes it).
const ITEM_TTL: Duration = Duration::from_secs(24 * 3600);

/// Wrong guesses before the limiter gives up (each one means another process just moved the
/// item; a handful in a row means heavy contention, which the caller's retry absorbs).
const MAX_ROUNDS: usize = 4;

/// Rates of both APIs, in calls per minute (0: that API is not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalRates {
    /// The Enclave MPC API.
    pub mpc_per_minute: u32,
    /// The client API.
    pub client_per_minute: u32,
}

impl PortalRates {
    /// The rate of `api`.
    pub fn per_minute(&self, api: PortalApi) -> u32 {
        match api {
            PortalApi::Mpc => self.mpc_per_minute,
            PortalApi::Client => self.client_per_minute,
        }
    }

    /// The time between two slots of `api` (`None`: not limited).
    pub fn spacing(&self, api: PortalApi) -> Option<Duration> {
        match self.per_minute(api) {
            0 => None,
            rate => {
                let window = (Duration::from_secs(60) + GUARD).as_millis() as u64;
                Some(Duration::from_millis(window.div_ceil(u64::from(rate))))
            }
        }
    }
}

/// The limiter over aws-sdk-dynamodb.
#[derive(Debug)]
pub struct DynamoRateLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
    rates: PortalRates,
    /// The last `nextAt` seen per API (index: `PortalApi` order), to guess idle or busy.
    seen: [AtomicU64; 2],
}

/// The case a reserve tries.
#[derive(Debug, Clone, Copy)]
enum Guess {
    Idle,
    Busy,
}

impl DynamoRateLimiter {
    /// Uses `table` (string keys `pk`, `sk`), which nothing else writes.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        rates: PortalRates,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            rates,
            seen: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn seen(&self, api: PortalApi) -> &AtomicU64 {
        match api {
            PortalApi::Mpc => &self.seen[0],
            PortalApi::Client => &self.seen[1],
        }
    }

    /// One conditional update for `guess`; `Ok(Ok(new nextAt))` when it held, `Ok(Err(old
    /// nextAt))` when the item was not in the guessed state.
    async fn attempt(
        &self,
        api: PortalApi,
        guess: Guess,
        now: u64,
        latest: u64,
        spacing: u64,
    ) -> Result<Result<u64, u64>, LimitError> {
        let expires = (now + spacing + ITEM_TTL.as_millis() as u64) / 1000;
        let n = |v: u64| AttributeValue::N(v.to_string());
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                format!("PORTAL_RATE#{}", api.as_str()),
                "NEXT".to_owned(),
            )))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(expires))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match guess {
            Guess::Idle => request
                .update_expression("SET nextAt = :next, expiresAt = :expires")
                .condition_expression("attribute_not_exists(nextAt) OR nextAt <= :now")
                .expression_attribute_values(":next", n(now + spacing)),
            Guess::Busy => request
                .update_expression("SET nextAt = nextAt + :spacing, expiresAt = :expires")
                .condition_expression("nextAt > :now AND nextAt <= :latest")
                .expression_attribute_values(":spacing", n(spacing))
                .expression_attribute_values(":latest", n(latest)),
        };
        match request.send().await {
            Ok(out) => out
                .attributes()
                .and_then(|a| next_at(Some(a)))
                .map(Ok)
                .ok_or_else(|| LimitError::Unavailable {
                    detail: "UpdateItem answered no nextAt".into(),
                }),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    // No item can only fail the busy condition: it is then idle.
                    Ok(Err(next_at(e.item()).unwrap_or(0)))
                }
                _ => Err(LimitError::Unavailable {
                    detail: crate::adapters::aws_error::describe(&err),
                }),
            },
        }
    }
}

/// `nextAt` of an item.
fn next_at(item: Option<&std::collections::HashMap<String, AttributeValue>>) -> Option<u64> {
    item?.get("nextAt")?.as_n().ok()?.parse().ok()
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RateLimiter for DynamoRateLimiter {
    fn reserve(&self, api: PortalApi, max_wait: Duration) -> Reserved<'_> {
        Box::pin(self.reserve_slot(api, max_wait))
    }
}

impl DynamoRateLimiter {
    async fn reserve_slot(
        &self,
        api: PortalApi,
        max_wait: Duration,
    ) -> Result<Duration, LimitError> {
        let Some(spacing) = self.rates.spacing(api) else {
            return Ok(Duration::ZERO);
        };
        let spacing = spacing.as_millis() as u64;
        let now = now_ms();
        let latest = now + max_wait.as_millis() as u64;
        let mut guess = if self.seen(api).load(Ordering::Relaxed) > now {
            Guess::Busy
        } else {
            Guess::Idle
        };
        for _ in 0..MAX_ROUNDS {
            match self.attempt(api, guess, now, latest, spacing).await? {
                Ok(next) => {
                    self.seen(api).fetch_max(next, Ordering::Relaxed);
                    // The slot reserved starts one spacing before the new nextAt.
                    let start = next.saturating_sub(spacing);
                    return Ok(Duration::from_millis(start.saturating_sub(now)));
                }
                Err(old) => {
                    self.seen(api).fetch_max(old, Ordering::Relaxed);
                    if old <= now {
                        guess = Guess::Idle;
                    } else if old > latest {
                        return Err(LimitError::Later {
                            api,
                            wait: Duration::from_millis(old - now),
                        });
                    } else {
                        guess = Guess::Busy;
                    }
                }
            }
        }
        Err(LimitError::Unavailable {
            detail: format!(
                "the {} API's slot moved {MAX_ROUNDS} times in a row",
                api.as_str()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_keeps_a_minute_under_the_rate() {
        let rates = PortalRates {
            mpc_per_minute: 50,
            client_per_minute: 200,
        };
        assert_eq!(
            rates.spacing(PortalApi::Mpc),
            Some(Duration::from_millis(1220))
        );
        assert_eq!(
            rates.spacing(PortalApi::Client),
            Some(Duration::from_millis(305))
        );
        for api in PortalApi::ALL {
            let spacing = rates.spacing(api).unwrap();
            // rate slots, each a spacing apart, span more than a minute and the guard.
            assert!(spacing * rates.per_minute(api) >= Duration::from_secs(61));
        }
        let off = PortalRates {
            mpc_per_minute: 0,
            client_per_minute: 1,
        };
        assert_eq!(off.spacing(PortalApi::Mpc), None);
        assert_eq!(
            off.spacing(PortalApi::Client),
            Some(Duration::from_secs(61))
        );
    }
}
