//! Adapter: the backup queue over SQS (the operator function sends a recovered wallet's new
//! signing shares there, sealed, for the backup function; the backup function sends a message
//! back there to wait for Portal's budget).

use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue};

use crate::adapters::aws_error::{describe, is_transient};
use crate::ports::backup_queue::{BackupQueue, Enqueued, QueueError, QueuedBackup};
use crate::ports::redelivery::{Deferral, Redelivered, Redelivery};

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// SQS's longest message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// The queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url` (a FIFO queue's name ends in `.fifo`).
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

impl BackupQueue for SqsQueue {
    fn enqueue<'a>(&'a self, backup: QueuedBackup<'a>) -> Enqueued<'a> {
        Box::pin(async move {
            let body = serde_json::json!({
                "clientId": backup.client_id,
                "idempotencyKey": backup.idempotency_key,
                "sealedGenerateResponse": backup.sealed_generate_response,
            })
            .to_string();
            let mut send = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .message_attributes(
                    "source",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("portal-backup-recover")
                        .build()
                        .map_err(|e| QueueError {
                            transient: false,
                            detail: e.to_string(),
                        })?,
                );
            if self.url.ends_with(".fifo") {
                // One group per client (its backups in order); the key makes a resend one message.
                send = send
                    .message_group_id(backup.client_id)
                    .message_deduplication_id(crate::domain::secret::sha256_hex(
                        backup.idempotency_key.as_bytes(),
                    ));
            }
            let out = send.send().await.map_err(|e| queue_error(&e))?;
            Ok(out.message_id.unwrap_or_default())
        })
    }
}

/// An SQS call's failure as the queue ports report it (the operation's error text, no body).
fn queue_error<E>(
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    QueueError {
        transient: is_transient(e),
        detail: describe(e),
    }
}

/// Whole seconds, rounded up (a wait of 0.2 s is 1 s, never 0), at most `cap`.
fn seconds(wait: Duration, cap: Duration) -> i32 {
    wait.min(cap).as_secs_f64().ceil().max(1.0) as i32
}

impl Redelivery for SqsQueue {
    fn defer<'a>(&'a self, messages: &'a [Deferral]) -> Redelivered<'a> {
        Box::pin(async move {
            for chunk in messages.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&m.receipt_handle)
                            .visibility_timeout(seconds(m.wait, MAX_VISIBILITY))
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| QueueError {
                        transient: false,
                        detail: e.to_string(),
                    })?;
                let out = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| queue_error(&e))?;
                if let Some(failed) = out.failed().first() {
                    return Err(QueueError {
                        transient: !failed.sender_fault(),
                        detail: format!(
                            "{} of {} visibility changes failed ({})",
                            out.failed().len(),
                            chunk.len(),
                            failed.code()
                        ),
                    });
                }
            }
            Ok(())
        })
    }

    fn resend<'a>(&'a self, body: &'a str, delay: Duration) -> Redelivered<'a> {
        Box::pin(async move {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .delay_seconds(seconds(delay, MAX_DELAY))
                .send()
                .await
                .map_err(|e| queue_error(&e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds_within_sqs_caps() {
        assert_eq!(seconds(Duration::from_millis(200), MAX_DELAY), 1);
        assert_eq!(seconds(Duration::ZERO, MAX_DELAY), 1);
        assert_eq!(seconds(Duration::from_millis(61_220), MAX_DELAY), 62);
        assert_eq!(seconds(Duration::from_secs(3600), MAX_DELAY), 900);
        assert_eq!(seconds(Duration::from_secs(86_400), MAX_VISIBILITY), 43_200);
    }
}
