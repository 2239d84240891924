//! `recover`, so that a recovery cannot be lost: Portal's `/v1/recover` issues new signing
//! shares and is not idempotent, so each recovery runs under an idempotency key whose record is
//! started before Portal is called, keeps the new shares sealed before they are answered, and
//! hands them to the backup queue at once, so the wallet is backed up again without its caller.
//! A repeat with the same key answers the record and never calls Portal again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Action, ActionAnswer, ActionRequest, RestoreService};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::request::{GenerateResponse, InputError};
use crate::domain::secret::SecretString;
use crate::ports::backup_queue::{BackupQueue, QueuedBackup};
use crate::ports::catalogue::{Catalogue, Recovered, RecoveryStart};
use crate::ports::envelope::Envelope;
use crate::ports::portal::{Portal, PortalError};
use crate::ports::store::BackupStore;
use crate::workflow::error::{BackupError, Cause, Step};

/// How long a started recovery may still be running: past it, a started record is one that was
/// interrupted (the operator function's longest timeout).
const STILL_RUNNING: Duration = Duration::from_secs(15 * 60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The idempotency key a recovery's new shares are backed up under.
fn backup_key(recovery_key: &str) -> String {
    format!("recovered-{recovery_key}")
}

impl<P, E, S> RestoreService<P, E, S> {
    /// Sends recovered shares to the backup queue (the operator function's).
    pub fn with_queue(mut self, queue: Arc<dyn BackupQueue>) -> Self {
        self.queue = Some(queue);
        self
    }
}

impl<P: Portal, E: Envelope, S: BackupStore + Catalogue> RestoreService<P, E, S> {
    /// Starts the recovery under the request's key; `Some` answer when the key's recovery is
    /// already done (from its record, enqueued again if it was not).
    pub(super) async fn start_recovery(
        &self,
        req: &ActionRequest,
    ) -> Result<Option<ActionAnswer>, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Recover, c);
        let key = recovery_key(req)?;
        let now = now_ms();
        match self
            .store
            .start_recovery(&req.client_id, key, now)
            .await
            .map_err(|e| step(e.into()))?
        {
            RecoveryStart::Fresh => Ok(None),
            RecoveryStart::Done(mut done) => {
                tracing::info!(client_id = %req.client_id, idempotency_key = key, "recovery repeated: answered from its record, Portal not called");
                if done.enqueued_message_id.is_none() {
                    done.enqueued_message_id = self.enqueue(req, key, &done).await;
                }
                Ok(Some(answer(req, key, done, true)))
            }
            RecoveryStart::Started(at)
                if now.saturating_sub(at) < STILL_RUNNING.as_millis() as u64 =>
            {
                Err(step(Cause::InProgress))
            }
            RecoveryStart::Started(_) => Err(step(Cause::RecoveryInterrupted(format!(
                "the recovery of client {} under idempotencyKey {key} started and never finished: Portal may have issued signing shares that were not kept; list the client's wallets at Portal, then recover under a new key",
                req.client_id
            )))),
        }
    }

    /// Lets go of a recovery that failed before Portal could have issued anything, so its key
    /// can be used again; a recovery whose Portal call may have run keeps its record.
    pub(super) async fn release_if_portal_untouched(
        &self,
        req: &ActionRequest,
        result: &Result<ActionAnswer, BackupError>,
    ) {
        let Err(err) = result else { return };
        if portal_may_have_issued(err) {
            return;
        }
        if let Some(key) = req.idempotency_key.as_deref()
            && let Err(e) = self.store.release_recovery(&req.client_id, key).await
        {
            tracing::warn!(client_id = %req.client_id, error = %e, "could not release the recovery record; its key stays used");
        }
    }

    /// Portal `POST /v1/recover` with the opened backup; the new signing shares are sealed with
    /// the API key, as a producer seals them, kept in the recovery's record, enqueued for
    /// backup, and only then answered. They never leave in the clear.
    pub(super) async fn recover(
        &self,
        req: &ActionRequest,
        ids: [String; 2],
        backup_response: &SecretString,
    ) -> Result<ActionAnswer, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Recover, c);
        let key = recovery_key(req)?;
        let api_key = req.api_key.as_ref().ok_or_else(|| {
            step(Cause::Input(InputError {
                field: "clientApiKey".into(),
                problem: "is required to recover".into(),
            }))
        })?;
        let recovered = self
            .portal
            .recover(api_key, backup_response)
            .await
            .map_err(|e| step(e.into()))?;
        // Portal answers a generate response: check it before sealing it for a backup.
        let generate = GenerateResponse::parse(recovered, "recover").map_err(|e| {
            step(Cause::Portal(PortalError::Contract {
                call: "POST /v1/recover",
                detail: e.to_string(),
            }))
        })?;
        if !generate.names_only(&req.client_id) {
            return Err(step(Cause::ClientMismatch {
                what: "Portal's new signing shares",
                client_id: req.client_id.clone(),
            }));
        }
        // `{"clientApiKey", "generateResponse"}`: the sealed payload a backup request takes.
        // The key as a JSON string (serde escapes it; a string always serialises), escaped first
        // so that the buffer is sized once and never reallocated, which would leave a copy.
        let quoted_key =
            zeroize::Zeroizing::new(serde_json::to_string(api_key.expose()).unwrap_or_default());
        let mut plaintext = zeroize::Zeroizing::new(String::with_capacity(
            generate.json.expose().len() + quoted_key.len() + 40,
        ));
        plaintext.push_str("{\"clientApiKey\":");
        plaintext.push_str(&quoted_key);
        plaintext.push_str(",\"generateResponse\":");
        plaintext.push_str(generate.json.expose());
        plaintext.push('}');
        let context = EncryptionContext::generate_response(&req.client_id);
        let sealed = self
            .envelope
            .seal(&context, plaintext.as_bytes())
            .await
            .map_err(|e| step(e.into()))?;
        let mut done = Recovered {
            backup_share_pair_ids: ids,
            signing_share_pair_ids: generate.signing_share_pair_ids.clone(),
            sealed_generate_response: sealed,
            enqueued_message_id: None,
        };
        // Kept before answered: an answer lost on the way (a gateway timeout) loses nothing.
        self.store
            .finish_recovery(&req.client_id, key, &done)
            .await
            .map_err(|e| step(e.into()))?;
        done.enqueued_message_id = self.enqueue(req, key, &done).await;
        Ok(answer(req, key, done, false))
    }

    /// Hands the new shares to the backup queue; the message id, or `None` (logged; a repeat of
    /// the recovery tries again).
    async fn enqueue(&self, req: &ActionRequest, key: &str, done: &Recovered) -> Option<String> {
        let queue = self.queue.as_ref()?;
        let backup_key = backup_key(key);
        let sent = queue
            .enqueue(QueuedBackup {
                client_id: &req.client_id,
                idempotency_key: &backup_key,
                sealed_generate_response: &done.sealed_generate_response,
            })
            .await;
        match sent {
            Ok(message_id) => {
                if let Err(e) = self
                    .store
                    .recovery_enqueued(&req.client_id, key, &message_id)
                    .await
                {
                    tracing::warn!(client_id = %req.client_id, error = %e, "recovered shares enqueued, but the record could not say so; a repeat enqueues them again (the backup is idempotent)");
                }
                tracing::info!(client_id = %req.client_id, idempotency_key = key, %message_id, "recovered signing shares enqueued for backup");
                Some(message_id)
            }
            Err(e) => {
                tracing::error!(client_id = %req.client_id, idempotency_key = key, error = %e, "recovered signing shares could not be enqueued for backup: repeat the recovery with the same key");
                None
            }
        }
    }
}

/// Whether Portal may have issued new signing shares before `err`: it answered (a body that
/// broke its contract, shares of another client, then sealing or recording failed), or its
/// answer never arrived (transport, 408, 5xx). Only a refusal Portal answered (4xx but 408), or
/// a failure before the call, leaves nothing behind.
fn portal_may_have_issued(err: &BackupError) -> bool {
    if err.step != Step::Recover {
        return false;
    }
    match &err.cause {
        Cause::Portal(PortalError::Status { status, .. }) => *status == 408 || *status >= 500,
        Cause::Input(_) => false,
        _ => true,
    }
}

/// The request's key (required by the parser for `recover`).
fn recovery_key(req: &ActionRequest) -> Result<&str, BackupError> {
    debug_assert_eq!(req.action, Action::Recover);
    req.idempotency_key.as_deref().ok_or_else(|| {
        BackupError::new(
            Step::Recover,
            InputError {
                field: "idempotencyKey".into(),
                problem: "is required to recover".into(),
            },
        )
    })
}

fn answer(req: &ActionRequest, key: &str, done: Recovered, repeated: bool) -> ActionAnswer {
    ActionAnswer::Recover {
        client_id: req.client_id.clone(),
        backup_share_pair_ids: done.backup_share_pair_ids,
        signing_share_pair_ids: done.signing_share_pair_ids,
        sealed_generate_response: done.sealed_generate_response,
        idempotency_key: key.to_owned(),
        backup_message_id: done.enqueued_message_id,
        repeated,
    }
}
