//! SQS: decode each record, run the workflow, answer batch item failures.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, info_span};

use super::{Ctx, run_request};
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;
use crate::workflow::backup::BackupService;

/// An SQS batch that cannot be answered record by record.
#[derive(Debug, thiserror::Error)]
#[error(
    "SQS record {index} has no messageId, so its failure cannot be reported alone; failing the whole batch"
)]
pub struct MissingMessageId {
    /// Position of the record in the batch.
    pub index: usize,
}

impl From<MissingMessageId> for lambda_runtime::Diagnostic {
    fn from(e: MissingMessageId) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "MissingMessageId".into(),
            error_message: e.to_string(),
        }
    }
}

/// Processes a batch, at most `concurrency` messages at once; answers exactly the failed ids.
///
/// A FIFO batch (its source ARN ends in `.fifo`) is processed in order, one message at a time;
/// after the first failure every later message is reported failed unprocessed, as SQS FIFO
/// requires to keep each message group in order.
pub async fn handle_sqs<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    concurrency: usize,
    max_receive_count: Option<u32>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, MissingMessageId>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Checkpoints,
{
    // Without an id a failure could not be reported, so the record would be deleted as if it had
    // succeeded: refuse the batch instead (Lambda then retries all of it).
    if let Some(index) = event
        .records
        .iter()
        .position(|r| r.message_id.as_deref().is_none_or(str::is_empty))
    {
        return Err(MissingMessageId { index });
    }
    let fifo = event.records.iter().any(|r| {
        r.event_source_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(".fifo"))
    });
    let failed: Vec<String> = if fifo {
        let mut failed = Vec::new();
        for record in event.records {
            if failed.is_empty() {
                failed.extend(process(service, ctx, max_receive_count, record).await);
            } else {
                failed.extend(record.message_id);
            }
        }
        failed
    } else {
        futures::stream::iter(event.records)
            .map(|record| process(service, ctx, max_receive_count, record))
            .buffer_unordered(concurrency.max(1))
            .filter_map(|failed| async move { failed })
            .collect()
            .await
    };
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = item_identifier;
            f
        })
        .collect();
    Ok(response)
}

/// Runs one record; returns its id if it failed.
async fn process<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    max_receive_count: Option<u32>,
    mut record: SqsMessage,
) -> Option<String>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Checkpoints,
{
    let message_id = record.message_id.take().unwrap_or_default();
    // SQS's last delivery before the DLQ: a failure now is a failure for good.
    let received: Option<u32> = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok());
    let ctx = Ctx {
        final_attempt: matches!((received, max_receive_count), (Some(n), Some(max)) if n >= max),
        first_attempt: received.is_none_or(|n| n <= 1),
        ..ctx
    };
    let span = info_span!("message", message_id = %message_id, client_id = tracing::field::Empty);
    let body = zeroize::Zeroizing::new(record.body.take().unwrap_or_default());
    let result = run_request(service, ctx, body.as_bytes())
        .instrument(span)
        .await;
    drop(body);
    result.is_err().then_some(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FakeEnvelope, FakePortal, FakeStore};
    use aws_lambda_events::event::sqs::SqsMessage;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    fn good(client: &str) -> String {
        serde_json::json!({"clientId": client, "clientApiKey": "k",
            "generateResponse": crate::adapters::memory::fake_generate(
                client, &format!("s-{client}"), &format!("e-{client}"))})
        .to_string()
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported() {
        let store = FakeStore::default();
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            store.clone(),
        );
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m1", &good("c1")),
            record("poison", "{not json"),
            record("m3", &good("c3")),
            record(
                "bad-mode",
                &good("c4").replace("\"k\"", "\"k\",\"backupMode\":\"NOPE\""),
            ),
        ];
        let out = handle_sqs(&svc, crate::entry::test_ctx(), 2, None, event)
            .await
            .unwrap();
        let mut ids: Vec<_> = out
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["bad-mode", "poison"]);
        assert_eq!(
            store.items.lock().unwrap().len(),
            4,
            "two messages, two curves each"
        );
    }

    #[tokio::test]
    async fn a_fifo_batch_stops_at_the_first_failure_and_reports_the_rest() {
        let store = FakeStore::default();
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            store.clone(),
        );
        let mut event = SqsEvent::default();
        event.records = vec![
            record("f1", &good("c1")),
            record("f2", "{poison"),
            record("f3", &good("c3")),
        ];
        for r in &mut event.records {
            r.event_source_arn = Some("arn:aws:sqs:us-east-1:1:backups.fifo".into());
        }
        let out = handle_sqs(&svc, crate::entry::test_ctx(), 10, None, event)
            .await
            .unwrap();
        let ids: Vec<_> = out
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(ids, ["f2", "f3"], "the failure and every later message");
        assert_eq!(
            store.items.lock().unwrap().len(),
            2,
            "only the first message ran; the third waits its turn"
        );
    }

    #[tokio::test]
    async fn a_record_without_id_fails_the_batch() {
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            FakeStore::default(),
        );
        let mut event = SqsEvent::default();
        let mut r = record("x", &good("c1"));
        r.message_id = None;
        event.records = vec![record("m1", &good("c1")), r];
        assert_eq!(
            handle_sqs(&svc, crate::entry::test_ctx(), 4, None, event)
                .await
                .unwrap_err()
                .index,
            1
        );
    }
}
