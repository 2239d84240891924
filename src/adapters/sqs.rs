//! Adapter: the backup queue over SQS (the operator function sends a recovered wallet's new
//! signing shares there, sealed, for the backup function).

use aws_sdk_sqs::types::MessageAttributeValue;

use crate::adapters::aws_error::{describe, is_transient};
use crate::ports::backup_queue::{BackupQueue, Enqueued, QueueError, QueuedBackup};

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
            let out = send.send().await.map_err(|e| QueueError {
                transient: is_transient(&e),
                detail: describe(&e),
            })?;
            Ok(out.message_id.unwrap_or_default())
        })
    }
}
