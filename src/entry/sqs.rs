//! SQS: decode each record, run the workflow, answer batch item failures.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, error, info, info_span};

use crate::backup::{BackupService, Outcome};
use crate::envelope::Envelope;
use crate::error::BackupError;
use crate::portal::Portal;
use crate::request::{BackupRequest, RequestPolicy};
use crate::store::BackupStore;

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
pub async fn handle_sqs<P, E, S>(
    service: &BackupService<P, E, S>,
    policy: RequestPolicy,
    concurrency: usize,
    event: SqsEvent,
) -> Result<SqsBatchResponse, MissingMessageId>
where
    P: Portal,
    E: Envelope,
    S: BackupStore,
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
    let failures: Vec<BatchItemFailure> = futures::stream::iter(event.records)
        .map(|record| process(service, policy, record))
        .buffer_unordered(concurrency.max(1))
        .filter_map(|failed| async move { failed })
        .map(|item_identifier| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = item_identifier;
            f
        })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

/// Runs one record; returns its id if it failed.
async fn process<P, E, S>(
    service: &BackupService<P, E, S>,
    policy: RequestPolicy,
    mut record: SqsMessage,
) -> Option<String>
where
    P: Portal,
    E: Envelope,
    S: BackupStore,
{
    let message_id = record.message_id.take().unwrap_or_default();
    let span = info_span!("message", message_id = %message_id, client_id = tracing::field::Empty);
    let body = record.body.take().unwrap_or_default();
    let result = async {
        let body = zeroize::Zeroizing::new(body);
        let request = BackupRequest::parse(body.as_bytes(), policy)?;
        drop(body);
        tracing::Span::current().record("client_id", request.client_id.as_str());
        service.back_up(&request).await
    }
    .instrument(span.clone())
    .await;
    let _enter = span.enter();
    match result {
        Ok(outcome) => {
            log_success(&outcome);
            None
        }
        Err(err) => {
            log_failure(&err);
            Some(message_id)
        }
    }
}

fn log_success(outcome: &Outcome) {
    info!(
        client_id = %outcome.client_id,
        backup_mode = outcome.backup_mode,
        secp256k1_backup_share_pair_id = %outcome.backup_share_pair_ids[0],
        ed25519_backup_share_pair_id = %outcome.backup_share_pair_ids[1],
        "backup completed"
    );
}

/// One structured line per failure: step, kind, field at fault; the error text names no secret.
pub fn log_failure(err: &BackupError) {
    error!(
        step = err.step.as_str(),
        kind = err.kind(),
        field = err.field(),
        error = %err,
        "backup failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::tests::{FakeEnvelope, FakePortal, FakeStore};
    use crate::model::BackupMode;
    use aws_lambda_events::event::sqs::SqsMessage;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    fn good(client: &str) -> String {
        serde_json::json!({"clientId": client, "clientApiKey": "k",
            "generateResponse": {"SECP256K1": {"share": "a", "id": format!("s-{client}")},
                                 "ED25519": {"share": "b", "id": format!("e-{client}")}}})
        .to_string()
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported() {
        let store = FakeStore::default();
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            Some(store.clone()),
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
        let out = handle_sqs(&svc, RequestPolicy::new(BackupMode::SelfManaged), 2, event)
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
    async fn a_record_without_id_fails_the_batch() {
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            Some(FakeStore::default()),
        );
        let mut event = SqsEvent::default();
        let mut r = record("x", &good("c1"));
        r.message_id = None;
        event.records = vec![record("m1", &good("c1")), r];
        assert_eq!(
            handle_sqs(&svc, RequestPolicy::new(BackupMode::SelfManaged), 4, event)
                .await
                .unwrap_err()
                .index,
            1
        );
    }
}
