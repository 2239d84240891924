//! Adapter: outcome events on an EventBridge bus, `source: portal-backup`, `detail-type`
//! `Backup Completed` or `Backup Failed`. A failed entry is retried twice; what still fails is
//! the caller's to count (it never fails a backup).

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::ports::outcome_events::{OutcomeEvent, OutcomeEvents, PublishError, Published};

/// The events' `source`.
pub const SOURCE: &str = "portal-backup";

/// Attempts per event.
const ATTEMPTS: u32 = 3;

/// Publishes to one bus, naming the stack in every event.
#[derive(Debug, Clone)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    stack: String,
}

impl EventBus {
    /// Events on `bus` (a name or ARN; `default` is the account's default bus) from `stack`.
    pub fn new(
        client: aws_sdk_eventbridge::Client,
        bus: impl Into<String>,
        stack: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bus: bus.into(),
            stack: stack.into(),
        }
    }
}

impl OutcomeEvents for EventBus {
    fn publish<'a>(&'a self, event: &'a OutcomeEvent) -> Published<'a> {
        Box::pin(async move {
            let mut detail = event.clone();
            detail.stack.clone_from(&self.stack);
            let fail = |detail: String| PublishError {
                bus: self.bus.clone(),
                detail,
            };
            let body = serde_json::to_string(&detail).map_err(|e| fail(e.to_string()))?;
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(SOURCE)
                .detail_type(event.detail_type)
                .detail(body)
                .build();
            let mut last = String::new();
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                match self.client.put_events().entries(entry.clone()).send().await {
                    Ok(out) if out.failed_entry_count() == 0 => return Ok(()),
                    Ok(out) => {
                        last = out
                            .entries()
                            .iter()
                            .find_map(|e| e.error_code().map(str::to_owned))
                            .unwrap_or_else(|| "a failed entry".into());
                    }
                    Err(e) => {
                        last = crate::adapters::aws_error::describe(&e);
                        if !crate::adapters::aws_error::is_transient(&e) {
                            break;
                        }
                    }
                }
            }
            Err(fail(last))
        })
    }
}
