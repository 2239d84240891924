//! Outcome events: what `run_request` tells the producer about each backup.

use super::failure;
use crate::ports::outcome_events::{OutcomeEvent, OutcomeEvents};
use crate::workflow::backup::Outcome;
use crate::workflow::error::BackupError;

/// Tells the outcome, when it is one: completed, or failed for good: permanent (told on its first
/// delivery only, not on each redelivery before the DLQ), or transient on SQS's last delivery. A
/// publish that fails is logged and counted, never the backup's failure.
pub async fn publish(
    events: &dyn OutcomeEvents,
    first_attempt: bool,
    final_attempt: bool,
    body: &[u8],
    result: &Result<Outcome, BackupError>,
) {
    let event = match result {
        Ok(o) => OutcomeEvent {
            detail_type: "Backup Completed",
            client_id: Some(o.client_id.clone()),
            idempotency_key: Some(o.idempotency_key.clone()),
            backup_share_pair_ids: Some(o.backup_share_pair_ids.clone()),
            mode: Some(o.backup_mode),
            error_code: None,
            moved_to_dlq: false,
            stack: String::new(),
        },
        Err(e) if (!e.is_transient() && first_attempt) || (e.is_transient() && final_attempt) => {
            let named = crate::domain::request_ids::named_ids(body);
            OutcomeEvent {
                detail_type: "Backup Failed",
                client_id: named.client_id,
                idempotency_key: named.idempotency_key,
                backup_share_pair_ids: None,
                mode: None,
                error_code: Some(failure(e).code),
                moved_to_dlq: e.is_transient(),
                stack: String::new(),
            }
        }
        Err(_) => return,
    };
    let published = events.publish(&event).await;
    if let Err(e) = &published {
        tracing::error!(error = %e, detail_type = event.detail_type, "outcome event not published");
    }
    crate::entry::metrics::emit_outcome_event(published.is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request::InputError;
    use crate::ports::outcome_events::{PublishError, Published};
    use crate::ports::portal::PortalError;
    use crate::workflow::error::Step;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Recorder {
        events: Mutex<Vec<OutcomeEvent>>,
        fail: bool,
    }

    impl OutcomeEvents for Recorder {
        fn publish<'a>(&'a self, event: &'a OutcomeEvent) -> Published<'a> {
            Box::pin(async move {
                self.events.lock().unwrap().push(event.clone());
                if self.fail {
                    return Err(PublishError {
                        bus: "default".into(),
                        detail: "throttled".into(),
                    });
                }
                Ok(())
            })
        }
    }

    fn transient() -> BackupError {
        BackupError::new(
            Step::Backup,
            PortalError::Status {
                call: "POST /v1/backup",
                status: 503,
                error_id: None,
                retry_after: None,
            },
        )
    }

    const BODY: &[u8] = br#"{"clientId":"c1","idempotencyKey":"k1","clientApiKey":"secret-key"}"#;

    #[tokio::test]
    async fn completed_and_failed_for_good_are_told_and_a_retry_is_not() {
        let r = Recorder::default();
        let done = Outcome {
            client_id: "c1".into(),
            backup_mode: "SELF_MANAGED",
            backup_share_pair_ids: ["b1".into(), "b2".into()],
            idempotency_key: "k1".into(),
            status: "COMPLETED",
        };
        publish(&r, true, false, BODY, &Ok(done)).await;
        let bad = BackupError::from(InputError {
            field: "generateResponse".into(),
            problem: "is required".into(),
        });
        publish(&r, true, false, BODY, &Err(bad)).await;
        // A redelivery of the same permanent failure is not told again.
        let again = BackupError::from(InputError {
            field: "generateResponse".into(),
            problem: "is required".into(),
        });
        publish(&r, false, false, BODY, &Err(again)).await;
        publish(&r, true, false, BODY, &Err(transient())).await;
        publish(&r, false, true, BODY, &Err(transient())).await;
        let events = r.events.lock().unwrap();
        let told: Vec<_> = events
            .iter()
            .map(|e| (e.detail_type, e.error_code, e.moved_to_dlq))
            .collect();
        assert_eq!(
            told,
            [
                ("Backup Completed", None, false),
                ("Backup Failed", Some("INVALID_INPUT"), false),
                ("Backup Failed", Some("PORTAL_UNAVAILABLE"), true),
            ]
        );
        assert_eq!(events[1].idempotency_key.as_deref(), Some("k1"));
        let detail = serde_json::to_string(&*events).unwrap();
        assert!(!detail.contains("secret-key"), "{detail}");
    }

    #[tokio::test]
    async fn a_publish_that_fails_never_fails_the_backup() {
        let r = Recorder {
            fail: true,
            ..Recorder::default()
        };
        // Returns (): the caller's result is untouched; the failure is logged and counted.
        publish(
            &r,
            true,
            false,
            b"{poison",
            &Err(BackupError::from(InputError {
                field: "body".into(),
                problem: "is not valid JSON".into(),
            })),
        )
        .await;
        let events = r.events.lock().unwrap();
        assert_eq!(events[0].client_id, None);
    }
}
