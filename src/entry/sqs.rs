//! SQS: decode each record, run the workflow, answer batch item failures.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::{Instrument, info_span};

use std::time::Duration;

use zeroize::Zeroizing;

use super::{Ctx, run_request};
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::redelivery::{Deferral, Redelivery};
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
///
/// A message that failed only because Portal's budget had no room for it (the stack's limiter,
/// or Portal's 429) goes back to the queue for the wait (`redelivery`): its visibility timeout
/// is set to the wait, or, on its last receive, it is sent again with that delay and reported
/// done, so that waiting never moves it to the DLQ.
pub async fn handle_sqs<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    concurrency: usize,
    max_receive_count: Option<u32>,
    redelivery: Option<&dyn Redelivery>,
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
    let run = Run {
        ctx,
        max_receive_count,
        // A FIFO queue takes no per-message delay: there a waiting message only waits.
        resends: redelivery.is_some() && !fifo,
    };
    let processed: Vec<Processed> = if fifo {
        let mut processed = Vec::new();
        let mut failed = false;
        for record in event.records {
            if failed {
                processed.push(Processed::Failed(record.message_id.unwrap_or_default()));
            } else {
                let p = process(service, &run, record).await;
                failed = !matches!(p, Processed::Done);
                processed.push(p);
            }
        }
        processed
    } else {
        futures::stream::iter(event.records)
            .map(|record| process(service, &run, record))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    };
    let failed = redeliver(redelivery, processed).await;
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

/// What every record of a batch shares.
struct Run<'a> {
    ctx: Ctx<'a>,
    max_receive_count: Option<u32>,
    /// Whether a waiting message may be sent again (a queue to send to, not FIFO).
    resends: bool,
}

/// How one record ended.
enum Processed {
    /// Backed up (or already was): deleted by Lambda.
    Done,
    /// Failed: reported, SQS delivers it again after its visibility timeout.
    Failed(String),
    /// Failed only for want of a Portal slot: back to the queue for `wait`.
    Wait {
        message_id: String,
        receipt_handle: Option<String>,
        wait: Duration,
        /// The body, kept only when this was the last receive (to send it again).
        resend: Option<Zeroizing<String>>,
    },
}

/// Runs one record.
async fn process<P, E, S>(
    service: &BackupService<P, E, S>,
    run: &Run<'_>,
    mut record: SqsMessage,
) -> Processed
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
    let final_attempt =
        matches!((received, run.max_receive_count), (Some(n), Some(max)) if n >= max);
    let ctx = Ctx {
        final_attempt,
        first_attempt: received.is_none_or(|n| n <= 1),
        resends_waits: final_attempt && run.resends,
        ..run.ctx
    };
    let span = info_span!("message", message_id = %message_id, client_id = tracing::field::Empty);
    let body = Zeroizing::new(record.body.take().unwrap_or_default());
    let result = run_request(service, ctx, body.as_bytes())
        .instrument(span)
        .await;
    match result {
        Ok(_) => Processed::Done,
        Err(err) => match super::portal_wait(&err) {
            Some(wait) => Processed::Wait {
                message_id,
                receipt_handle: record.receipt_handle.take(),
                wait,
                resend: ctx.resends_waits.then_some(body),
            },
            None => Processed::Failed(message_id),
        },
    }
}

/// Sends waiting messages back to the queue; answers the ids to report failed.
async fn redeliver(redelivery: Option<&dyn Redelivery>, processed: Vec<Processed>) -> Vec<String> {
    let mut failed = Vec::new();
    let mut deferrals = Vec::new();
    let mut resent = 0u64;
    for p in processed {
        match p {
            Processed::Done => {}
            Processed::Failed(id) => failed.push(id),
            Processed::Wait {
                message_id,
                receipt_handle,
                wait,
                resend,
            } => match (redelivery, resend) {
                (Some(queue), Some(body)) => match queue.resend(&body, wait).await {
                    // The copy carries the same request (and idempotency key): the original is
                    // done with, and its delete cannot lose the backup.
                    Ok(()) => resent += 1,
                    Err(e) => {
                        tracing::error!(%message_id, error = %e, "a waiting message could not be sent again; it goes to the DLQ");
                        failed.push(message_id);
                    }
                },
                (Some(_), None) => {
                    if let Some(receipt_handle) = receipt_handle {
                        deferrals.push(Deferral {
                            receipt_handle,
                            wait,
                        });
                    }
                    failed.push(message_id);
                }
                (None, _) => failed.push(message_id),
            },
        }
    }
    if let (Some(queue), false) = (redelivery, deferrals.is_empty()) {
        if let Err(e) = queue.defer(&deferrals).await {
            // The messages still come back, after the queue's own visibility timeout.
            tracing::warn!(messages = deferrals.len(), error = %e, "waiting messages keep the queue's visibility timeout");
        }
    }
    let deferred = deferrals.len() as u64 + resent;
    if deferred > 0 {
        tracing::info!(
            deferred,
            resent,
            "messages sent back to the queue to wait for Portal's budget"
        );
        crate::entry::metrics::emit_deferred(deferred);
    }
    failed
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
        let out = handle_sqs(&svc, crate::entry::test_ctx(), 2, None, None, event)
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
        let out = handle_sqs(&svc, crate::entry::test_ctx(), 10, None, None, event)
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
            handle_sqs(&svc, crate::entry::test_ctx(), 4, None, None, event)
                .await
                .unwrap_err()
                .index,
            1
        );
    }

    /// Records what goes back to the queue.
    #[derive(Debug, Default)]
    struct FakeQueue {
        deferred: std::sync::Mutex<Vec<(String, Duration)>>,
        resent: std::sync::Mutex<Vec<(String, Duration)>>,
    }

    impl Redelivery for FakeQueue {
        fn defer<'a>(
            &'a self,
            messages: &'a [Deferral],
        ) -> crate::ports::redelivery::Redelivered<'a> {
            let mut deferred = self.deferred.lock().unwrap();
            deferred.extend(messages.iter().map(|m| (m.receipt_handle.clone(), m.wait)));
            Box::pin(async { Ok(()) })
        }

        fn resend<'a>(
            &'a self,
            body: &'a str,
            delay: Duration,
        ) -> crate::ports::redelivery::Redelivered<'a> {
            self.resent.lock().unwrap().push((body.to_owned(), delay));
            Box::pin(async { Ok(()) })
        }
    }

    fn received(id: &str, body: &str, count: u32) -> SqsMessage {
        let mut m = record(id, body);
        m.receipt_handle = Some(format!("rh-{id}"));
        m.attributes
            .insert("ApproximateReceiveCount".into(), count.to_string());
        m
    }

    #[tokio::test]
    async fn a_message_that_waits_for_portal_goes_back_to_the_queue_never_to_the_dlq() {
        let portal = FakePortal {
            fail_backup: Some(429),
            ..FakePortal::default()
        };
        let svc = BackupService::new(portal, FakeEnvelope::default(), FakeStore::default());
        let queue = FakeQueue::default();
        let mut event = SqsEvent::default();
        let last = good("c2");
        event.records = vec![
            received("w1", &good("c1"), 1),
            received("w2", &last, 3),
            received("poison", "{", 3),
        ];
        let out = handle_sqs(
            &svc,
            crate::entry::test_ctx(),
            4,
            Some(3),
            Some(&queue),
            event,
        )
        .await
        .unwrap();
        let mut ids: Vec<_> = out
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        // w1 waits by its visibility; w2, on its last receive, was sent again and is done with.
        assert_eq!(ids, ["poison", "w1"]);
        let minute = Duration::from_secs(60);
        assert_eq!(
            *queue.deferred.lock().unwrap(),
            [("rh-w1".to_owned(), minute)]
        );
        assert_eq!(*queue.resent.lock().unwrap(), [(last, minute)]);
    }

    #[tokio::test]
    async fn without_a_queue_or_on_fifo_a_waiting_message_is_not_sent_again() {
        let portal = FakePortal {
            fail_backup: Some(429),
            ..FakePortal::default()
        };
        let svc = BackupService::new(portal, FakeEnvelope::default(), FakeStore::default());
        let event = || {
            let mut event = SqsEvent::default();
            event.records = vec![received("w1", &good("c1"), 3)];
            event
        };
        let out = handle_sqs(&svc, crate::entry::test_ctx(), 4, Some(3), None, event())
            .await
            .unwrap();
        assert_eq!(
            out.batch_item_failures.len(),
            1,
            "no queue: failed as before"
        );
        let queue = FakeQueue::default();
        let mut fifo = event();
        fifo.records[0].event_source_arn = Some("arn:aws:sqs:us-east-1:1:b.fifo".into());
        let out = handle_sqs(
            &svc,
            crate::entry::test_ctx(),
            4,
            Some(3),
            Some(&queue),
            fifo,
        )
        .await
        .unwrap();
        assert_eq!(
            out.batch_item_failures.len(),
            1,
            "FIFO takes no delay: it waits"
        );
        assert!(queue.resent.lock().unwrap().is_empty());
        assert_eq!(queue.deferred.lock().unwrap().len(), 1);
    }
}
