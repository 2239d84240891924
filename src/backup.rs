//! The backup workflow: Portal's "Back up a wallet" steps over the `Portal`, `Envelope`,
//! `BackupStore` and `Checkpoints` ports. No AWS, HTTP or Lambda types here.
//!
//! Each backup runs under a checkpoint lease (see `idempotency`): a redelivered message resumes
//! where the last attempt stopped, and a completed one answers with its earlier result.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::try_join;
use serde::Serialize;

use crate::envelope::{EncryptionContext, Envelope};
use crate::error::{BackupError, Cause, Step};
use crate::idempotency::{Acquired, BackupKey, Checkpoints, Progress, SealedRecord, Status};
use crate::model::BackupMode;
use crate::portal::{BackupShare, Portal};
use crate::request::{BackupRequest, GenerateInput, GenerateResponse, InputError};
use crate::retry::{Deadline, RetryPolicy};
use crate::secret::SecretString;
use crate::store::{BackupStore, StoreError, StoredShare};

/// Time a message needs to be worth starting.
pub const START_BUDGET: Duration = Duration::from_secs(3);
/// Time a step needs to be worth starting.
pub const STEP_BUDGET: Duration = Duration::from_secs(1);
/// Lease length when the invocation has no deadline (tools, tests).
const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// What a completed backup answers (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Portal client id.
    pub client_id: String,
    /// Where the ciphertexts went.
    pub backup_mode: &'static str,
    /// Backup share pair ids, SECP256K1 then ED25519.
    pub backup_share_pair_ids: [String; 2],
    /// Always `COMPLETED`: an outcome exists only once Portal was told the shares are stored.
    pub status: &'static str,
}

/// What one run did beyond its outcome, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Retries of transient failures.
    pub retries: u32,
    /// The checkpoint this run resumed from (`None`: a fresh backup).
    pub resumed_from: Option<Status>,
    /// Whether `/v1/backup` was called.
    pub called_backup: bool,
    /// Wall time of each step that ran, in milliseconds.
    pub step_ms: Vec<(Step, u64)>,
}

impl RunStats {
    /// Records the wall time of `step`, which started at `started`.
    fn timed(&mut self, step: Step, started: std::time::Instant) {
        self.step_ms
            .push((step, started.elapsed().as_millis() as u64));
    }
}

/// The invocation a backup runs in.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// When the invocation must have answered.
    pub deadline: Deadline,
    /// Unique id of this attempt: the lease owner.
    pub owner: String,
}

impl Invocation {
    /// An attempt within the Lambda request `request_id`.
    pub fn new(deadline: Deadline, request_id: &str) -> Self {
        let mut nonce = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut nonce);
        let suffix: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            deadline,
            owner: format!("{request_id}/{suffix}"),
        }
    }
}

/// A client backup share after sealing: what is stored, and what it must decrypt to (unknown
/// when resuming from a checkpoint).
struct SealedShare {
    record: SealedRecord,
    context: EncryptionContext,
    plaintext: Option<SecretString>,
}

/// The workflow, over its ports. `store` is `None` when no table is configured: Portal-managed
/// backups then run without checkpoints.
#[derive(Debug, Clone)]
pub struct BackupService<P, E, S> {
    portal: P,
    envelope: E,
    store: Option<S>,
    retry: RetryPolicy,
}

impl<P: Portal, E: Envelope, S: BackupStore + Checkpoints> BackupService<P, E, S> {
    /// Wires the workflow to its adapters.
    pub fn new(portal: P, envelope: E, store: Option<S>) -> Self {
        Self {
            portal,
            envelope,
            store,
            retry: RetryPolicy::default(),
        }
    }

    /// The Portal adapter.
    pub(crate) fn portal(&self) -> &P {
        &self.portal
    }

    /// The envelope adapter.
    pub(crate) fn envelope(&self) -> &E {
        &self.envelope
    }

    /// The store, when a table is configured.
    pub(crate) fn table(&self) -> Option<&S> {
        self.store.as_ref()
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Backs up one wallet with no deadline (tools and tests).
    pub async fn back_up(&self, req: &BackupRequest) -> Result<Outcome, BackupError> {
        let inv = Invocation::new(Deadline::none(), "local");
        self.run(req, &inv, &mut RunStats::default()).await
    }

    /// Backs up one wallet: backup → seal → checkpoint → store → verify → mark → checkpoint.
    ///
    /// Portal is told the backup is stored only after both ciphertexts were read back from where
    /// they were stored and decrypted to the shares Portal returned.
    pub async fn run(
        &self,
        req: &BackupRequest,
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<Outcome, BackupError> {
        // Refuse before calling Portal: a backup that cannot be stored must not be created.
        if req.mode == BackupMode::SelfManaged && self.store.is_none() {
            return Err(InputError {
                field: "backupMode".into(),
                problem: "is SELF_MANAGED but this deployment has no BACKUP_TABLE_NAME".into(),
            }
            .into());
        }
        inv.deadline.check(Step::Input, START_BUDGET)?;
        let opened;
        let generate = match &req.generate {
            GenerateInput::Plain(g) => g,
            GenerateInput::Sealed(ciphertext) => {
                opened = self.unseal(req, ciphertext).await?;
                &opened
            }
        };
        let fresh = Progress {
            status: Status::InProgress,
            backup_mode: req.mode,
            signing_share_pair_ids: generate.signing_share_pair_ids.clone(),
            shares: None,
        };
        let Some(store) = &self.store else {
            return self.resume(req, generate, None, fresh, inv, stats).await;
        };
        let key = BackupKey::new(
            &req.client_id,
            req.idempotency_key.as_deref(),
            &generate.signing_share_pair_ids,
        );
        let lease_until = inv.deadline.epoch_ms(DEFAULT_LEASE);
        let acquired = store
            .acquire(&key, &inv.owner, lease_until, &fresh)
            .await
            .map_err(|e| BackupError::new(Step::Checkpoint, e))?;
        let progress = match acquired {
            Acquired::Completed(done) => {
                stats.resumed_from = Some(Status::Completed);
                return outcome(req, &done);
            }
            Acquired::Busy => return Err(BackupError::new(Step::Checkpoint, Cause::InProgress)),
            Acquired::Run(progress) => progress,
        };
        stats.resumed_from = (progress.status != Status::InProgress).then_some(progress.status);
        let result = self
            .resume(req, generate, Some((store, &key)), progress, inv, stats)
            .await;
        if result.is_err() {
            // Never delete: the checkpoint may hold shares Portal already created. Only let go.
            if let Err(e) = store.release(&key, &inv.owner).await {
                tracing::warn!(error = %e, "could not release the backup lease; it expires with the invocation");
            }
        }
        result
    }

    /// Runs the steps left after `progress`, checkpointing after each durable effect.
    async fn resume(
        &self,
        req: &BackupRequest,
        generate: &GenerateResponse,
        checkpoints: Option<(&S, &BackupKey)>,
        mut progress: Progress,
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<Outcome, BackupError> {
        let advance = |from: Status, to: Progress| async move {
            if let Some((store, key)) = checkpoints {
                store
                    .advance(key, &inv.owner, from, &to)
                    .await
                    .map_err(|e| BackupError::new(Step::Checkpoint, e))?;
            }
            Ok::<Progress, BackupError>(to)
        };
        let mode = progress.backup_mode;
        let mut sealed: Option<[SealedShare; 2]> = None;
        // Whether the ciphertexts were written together with the BACKED_UP checkpoint.
        let mut stored = false;
        if progress.status == Status::InProgress {
            inv.deadline.check(Step::Backup, STEP_BUDGET)?;
            stats.called_backup = true;
            let started = std::time::Instant::now();
            let shares = self
                .retry
                .run(Step::Backup, &inv.deadline, &mut stats.retries, || async {
                    self.portal
                        .backup(&req.api_key, &generate.json)
                        .await
                        .map_err(|e| BackupError::new(Step::Backup, e))
                })
                .await?;
            stats.timed(Step::Backup, started);
            let started = std::time::Instant::now();
            let [a, b] = &shares;
            let (a, b) = try_join(self.seal(req, a), self.seal(req, b)).await?;
            stats.timed(Step::Seal, started);
            let records = [a.record.clone(), b.record.clone()];
            let pair = [a, b];
            let to = Progress {
                status: Status::BackedUp,
                shares: Some(records),
                ..progress
            };
            progress = match (checkpoints, mode) {
                // No deadline check before this write: like the checkpoint it replaces, it must
                // be tried, or the shares Portal just created would be lost with the invocation.
                (Some((store, key)), BackupMode::SelfManaged) => {
                    let started = std::time::Instant::now();
                    let items = self.items(req, &to.signing_share_pair_ids, &pair);
                    match store
                        .advance_storing(key, &inv.owner, Status::InProgress, &to, &items)
                        .await
                    {
                        Ok(()) => stored = true,
                        Err(e @ StoreError::LeaseLost(_)) => {
                            return Err(BackupError::new(Step::Checkpoint, e));
                        }
                        Err(e) => {
                            // Portal created these shares: checkpoint them on their own, as a
                            // separate write would have, so the retry stores them rather than
                            // asking Portal for new ones.
                            tracing::warn!(error = %e, "storing with the checkpoint failed; checkpointing the shares alone");
                            advance(Status::InProgress, to).await?;
                            return Err(BackupError::new(Step::Store, Cause::Store(e)));
                        }
                    }
                    stats.timed(Step::Store, started);
                    to
                }
                _ => advance(Status::InProgress, to).await?,
            };
            sealed = Some(pair);
        }
        let records = progress.shares.clone().ok_or_else(|| {
            BackupError::new(
                Step::Checkpoint,
                Cause::Mismatch("checkpoint lacks its shares".into()),
            )
        })?;
        let sealed = sealed.unwrap_or_else(|| {
            records.clone().map(|record| SealedShare {
                context: EncryptionContext::backup_share(&req.client_id, &record.id, record.curve),
                record,
                plaintext: None,
            })
        });
        let ids = records.map(|r| r.id);
        let mark = || async {
            self.portal
                .mark_stored(&req.api_key, &ids)
                .await
                .map_err(|e| BackupError::new(Step::MarkStored, e))
        };
        if progress.status == Status::BackedUp {
            if !stored {
                inv.deadline.check(Step::Store, STEP_BUDGET)?;
                let started = std::time::Instant::now();
                self.store(
                    req,
                    mode,
                    &progress.signing_share_pair_ids,
                    &sealed,
                    inv,
                    stats,
                )
                .await?;
                stats.timed(Step::Store, started);
            }
            let started = std::time::Instant::now();
            self.verify(req, mode, &sealed, inv, stats).await?;
            stats.timed(Step::Verify, started);
            // Proven durable and decryptable: Portal may be told. Marking and storing are both
            // safe to repeat, so the STORED checkpoint (a retry then only marks) is written only
            // when the mark fails: a backup that marks at once costs one write less, and one
            // whose invocation dies mid-mark resumes from BACKED_UP, storing and proving again.
            inv.deadline.check(Step::MarkStored, STEP_BUDGET)?;
            let started = std::time::Instant::now();
            let marked = self
                .retry
                .run(Step::MarkStored, &inv.deadline, &mut stats.retries, mark)
                .await;
            if let Err(e) = marked {
                let stored = Progress {
                    status: Status::Stored,
                    ..progress
                };
                if let Err(c) = advance(Status::BackedUp, stored).await {
                    tracing::warn!(error = %c, "could not checkpoint STORED after the mark failed; the retry stores and proves again");
                }
                return Err(e);
            }
            stats.timed(Step::MarkStored, started);
        } else if progress.status == Status::Stored {
            inv.deadline.check(Step::MarkStored, STEP_BUDGET)?;
            let started = std::time::Instant::now();
            self.retry
                .run(Step::MarkStored, &inv.deadline, &mut stats.retries, mark)
                .await?;
            stats.timed(Step::MarkStored, started);
        }
        // Marked: from BACKED_UP (marked at once) or STORED (a retry that only marked).
        if matches!(progress.status, Status::BackedUp | Status::Stored) {
            advance(
                progress.status,
                Progress {
                    status: Status::Completed,
                    ..progress
                },
            )
            .await?;
        }
        Ok(Outcome {
            client_id: req.client_id.clone(),
            backup_mode: mode.as_str(),
            backup_share_pair_ids: ids,
            status: "COMPLETED",
        })
    }

    /// Opens a sealed generate response (bound to this client) and validates it.
    async fn unseal(
        &self,
        req: &BackupRequest,
        ciphertext: &str,
    ) -> Result<GenerateResponse, BackupError> {
        let context = EncryptionContext::generate_response(&req.client_id);
        let opened = self
            .envelope
            .open(&context, ciphertext)
            .await
            .map_err(|e| BackupError::new(Step::Unseal, e))?;
        let text = String::from_utf8(opened.expose().to_vec()).map_err(|_| InputError {
            field: "sealedGenerateResponse".into(),
            problem: "does not decrypt to UTF-8 text".into(),
        })?;
        Ok(GenerateResponse::parse(
            SecretString::new(text),
            "sealedGenerateResponse",
        )?)
    }

    /// Seals `{"share", "id"}` — the entry `/v1/recover` needs back — under the share's context.
    async fn seal(
        &self,
        req: &BackupRequest,
        share: &BackupShare,
    ) -> Result<SealedShare, BackupError> {
        let plaintext = share_plaintext(share);
        let context = EncryptionContext::backup_share(&req.client_id, &share.id, share.curve);
        let cipher_text = self
            .envelope
            .seal(&context, plaintext.as_bytes_for_seal())
            .await
            .map_err(|e| BackupError::new(Step::Seal, e))?;
        Ok(SealedShare {
            record: SealedRecord {
                curve: share.curve,
                id: share.id.clone(),
                cipher_text,
            },
            context,
            plaintext: Some(plaintext),
        })
    }

    /// Writes both ciphertexts where `mode` keeps them; both writes are safe to repeat.
    async fn store(
        &self,
        req: &BackupRequest,
        mode: BackupMode,
        signing_share_pair_ids: &[String; 2],
        sealed: &[SealedShare; 2],
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Store, c);
        match (&self.store, mode) {
            (Some(store), BackupMode::SelfManaged) => {
                let [a, b] = self.items(req, signing_share_pair_ids, sealed);
                try_join(store.put(&a), store.put(&b))
                    .await
                    .map_err(|e| step(Cause::Store(e)))?;
            }
            _ => {
                // Each curve retries on its own: one share's failure does not resend the other.
                let ((ra, na), (rb, nb)) = futures::future::join(
                    self.retried(Step::Store, &inv.deadline, || {
                        self.store_with_portal(req, &sealed[0])
                    }),
                    self.retried(Step::Store, &inv.deadline, || {
                        self.store_with_portal(req, &sealed[1])
                    }),
                )
                .await;
                stats.retries += na + nb;
                ra?;
                rb?;
            }
        }
        Ok(())
    }

    /// The table items of both sealed shares.
    fn items(
        &self,
        req: &BackupRequest,
        signing_share_pair_ids: &[String; 2],
        sealed: &[SealedShare; 2],
    ) -> [StoredShare; 2] {
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let item = |s: &SealedShare, signing: &String| StoredShare {
            client_id: req.client_id.clone(),
            backup_share_pair_id: s.record.id.clone(),
            curve: s.record.curve,
            signing_share_pair_id: signing.clone(),
            cipher_text: s.record.cipher_text.clone(),
            created_at,
        };
        [
            item(&sealed[0], &signing_share_pair_ids[0]),
            item(&sealed[1], &signing_share_pair_ids[1]),
        ]
    }

    /// Reads each ciphertext back from where it was stored and proves it opens to the share.
    async fn verify(
        &self,
        req: &BackupRequest,
        mode: BackupMode,
        sealed: &[SealedShare; 2],
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let stored = match (&self.store, mode) {
            // Both items in one strongly consistent read.
            (Some(store), BackupMode::SelfManaged) => {
                let ids = [sealed[0].record.id.as_str(), sealed[1].record.id.as_str()];
                let (read, n) = self
                    .retried(Step::Verify, &inv.deadline, || async {
                        store
                            .cipher_texts(&req.client_id, ids)
                            .await
                            .map_err(|e| step(e.into()))
                    })
                    .await;
                stats.retries += n;
                read?
            }
            _ => {
                let read = |i: usize| {
                    self.retried(Step::Verify, &inv.deadline, move || async move {
                        self.portal
                            .cipher_text(&req.api_key, &sealed[i].record.id)
                            .await
                            .map(Some)
                            .map_err(|e| step(e.into()))
                    })
                };
                let ((ra, na), (rb, nb)) = futures::future::join(read(0), read(1)).await;
                stats.retries += na + nb;
                [ra?, rb?]
            }
        };
        let [a, b] = stored;
        let ((ra, na), (rb, nb)) = futures::future::join(
            self.retried(Step::Verify, &inv.deadline, || {
                self.check_opens(&sealed[0], a.as_deref())
            }),
            self.retried(Step::Verify, &inv.deadline, || {
                self.check_opens(&sealed[1], b.as_deref())
            }),
        )
        .await;
        stats.retries += na + nb;
        ra.and(rb)
    }

    /// Sends one ciphertext to Portal (Portal-managed backups).
    async fn store_with_portal(
        &self,
        req: &BackupRequest,
        s: &SealedShare,
    ) -> Result<(), BackupError> {
        self.portal
            .store_cipher_text(&req.api_key, &s.record.id, &s.record.cipher_text)
            .await
            .map_err(|e| BackupError::new(Step::Store, e))
    }

    /// Runs `call` under the retry policy; answers its result and the retries it took.
    async fn retried<T, F, Fut>(
        &self,
        step: Step,
        deadline: &Deadline,
        call: F,
    ) -> (Result<T, BackupError>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackupError>>,
    {
        let mut retries = 0;
        let result = self.retry.run(step, deadline, &mut retries, call).await;
        (result, retries)
    }

    /// Proves that `stored`, the ciphertext read back, is the one sealed and opens to its share.
    async fn check_opens(
        &self,
        sealed: &SealedShare,
        stored: Option<&str>,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let id = &sealed.record.id;
        let Some(stored) = stored else {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} is not found after it was stored"
            ))));
        };
        if stored != sealed.record.cipher_text {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} read back differs from the one stored"
            ))));
        }
        let opened = self
            .envelope
            .open(&sealed.context, stored)
            .await
            .map_err(|e| step(e.into()))?;
        let matches = match &sealed.plaintext {
            Some(plain) => opened.expose() == plain.as_bytes_for_seal(),
            // Resumed from a checkpoint: the share is no longer in memory; check what it names.
            None => names_pair(opened.expose(), id),
        };
        if !matches {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} does not decrypt to its share"
            ))));
        }
        Ok(())
    }
}

/// The outcome of a backup completed earlier, rebuilt from its checkpoint.
fn outcome(req: &BackupRequest, done: &Progress) -> Result<Outcome, BackupError> {
    let shares = done.shares.as_ref().ok_or_else(|| {
        BackupError::new(
            Step::Checkpoint,
            Cause::Mismatch("completed checkpoint lacks its shares".into()),
        )
    })?;
    Ok(Outcome {
        client_id: req.client_id.clone(),
        backup_mode: done.backup_mode.as_str(),
        backup_share_pair_ids: [shares[0].id.clone(), shares[1].id.clone()],
        status: "COMPLETED",
    })
}

/// Whether opened `{"share","id"}` JSON names `id`, both as its `id` and inside its share.
pub(crate) fn names_pair(plaintext: &[u8], id: &str) -> bool {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(plaintext) else {
        return false;
    };
    let ok = doc.get("id").and_then(|v| v.as_str()) == Some(id)
        && doc
            .get("share")
            .and_then(|v| v.as_str())
            .and_then(crate::portal::embedded_pair_id)
            .is_some_and(|embedded| embedded.is_none() || embedded.as_deref() == Some(id));
    crate::secret::wipe_json(&mut doc);
    ok
}

/// The sealed plaintext: `{"share":"…","id":"…"}`, in a buffer sized up front so no partial copy
/// of the share is left behind by reallocation.
fn share_plaintext(share: &BackupShare) -> SecretString {
    #[derive(Serialize)]
    struct Plain<'a> {
        share: &'a str,
        id: &'a str,
    }
    let plain = Plain {
        share: share.share.expose(),
        id: &share.id,
    };
    let mut buf = Vec::with_capacity(share.share.expose().len() * 2 + share.id.len() * 2 + 32);
    // Writing strings into a Vec cannot fail, and serde_json only writes valid UTF-8.
    let _ = serde_json::to_writer(&mut buf, &plain);
    SecretString::new(String::from_utf8(buf).unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    //! The workflow against in-memory fakes.

    use super::*;
    use crate::envelope::EnvelopeError;
    use crate::model::Curve;
    use crate::portal::PortalError;
    use crate::secret::{ClientApiKey, SecretBytes};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Records every port call, in order.
    #[derive(Clone, Default)]
    pub(crate) struct Log(pub Arc<Mutex<Vec<String>>>);
    impl Log {
        fn push(&self, s: impl Into<String>) {
            self.0.lock().unwrap().push(s.into());
        }
        pub(crate) fn calls(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    #[derive(Clone, Default)]
    pub(crate) struct FakePortal {
        pub log: Log,
        pub fail_backup: Option<u16>,
        pub fail_mark: u32,
        pub fail_store: bool,
        pub corrupt_read: bool,
        pub stored: Arc<Mutex<HashMap<String, String>>>,
    }

    impl Portal for FakePortal {
        async fn backup(
            &self,
            _: &ClientApiKey,
            g: &SecretString,
        ) -> Result<[BackupShare; 2], PortalError> {
            self.log.push("portal.backup");
            if let Some(status) = self.fail_backup {
                return Err(PortalError::Status {
                    call: "backup",
                    status,
                    error_id: None,
                    message: "x".into(),
                    retry_after: None,
                });
            }
            let tag = g.expose().len();
            Ok(Curve::ALL.map(|curve| BackupShare {
                curve,
                id: format!("bk-{curve}-{tag}"),
                share: SecretString::new(fake_share(&format!("bk-{curve}-{tag}"))),
            }))
        }
        async fn store_cipher_text(
            &self,
            _: &ClientApiKey,
            id: &str,
            ct: &str,
        ) -> Result<(), PortalError> {
            self.log.push(format!("portal.store {id}"));
            if self.fail_store {
                return Err(PortalError::Transport {
                    call: "store",
                    detail: "reset".into(),
                    timeout: false,
                });
            }
            self.stored.lock().unwrap().insert(id.into(), ct.into());
            Ok(())
        }
        async fn cipher_text(&self, _: &ClientApiKey, id: &str) -> Result<String, PortalError> {
            self.log.push(format!("portal.read {id}"));
            let ct = self
                .stored
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or_default();
            Ok(if self.corrupt_read {
                format!("{ct}x")
            } else {
                ct
            })
        }
        async fn mark_stored(&self, _: &ClientApiKey, ids: &[String]) -> Result<(), PortalError> {
            self.log.push(format!("portal.mark {}", ids.join(",")));
            if self.fail_mark > 0 {
                return Err(PortalError::Status {
                    call: "mark",
                    status: 503,
                    error_id: None,
                    message: "x".into(),
                    retry_after: None,
                });
            }
            Ok(())
        }
    }

    /// A share as Portal makes them: base64 of JSON naming its backup share pair.
    pub(crate) fn fake_share(id: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            r#"{{"backupSharePairId":"{id}","share":"5ecret"}}"#
        ))
    }

    /// "Encrypts" as `context-json|plaintext`, so a wrong context fails to open.
    #[derive(Clone, Default)]
    pub(crate) struct FakeEnvelope {
        pub log: Log,
        pub wrong_plaintext: bool,
    }

    impl Envelope for FakeEnvelope {
        async fn seal(&self, ctx: &EncryptionContext, p: &[u8]) -> Result<String, EnvelopeError> {
            self.log.push("envelope.seal");
            Ok(format!(
                "{}|{}",
                String::from_utf8(ctx.aad()).unwrap(),
                String::from_utf8(p.to_vec()).unwrap()
            ))
        }
        async fn open(
            &self,
            ctx: &EncryptionContext,
            c: &str,
        ) -> Result<SecretBytes, EnvelopeError> {
            self.log.push("envelope.open");
            let (aad, p) = c
                .split_once('|')
                .ok_or(EnvelopeError::Malformed("no bar"))?;
            if aad.as_bytes() != ctx.aad() {
                return Err(EnvelopeError::Authentication);
            }
            let p = if self.wrong_plaintext { "other" } else { p };
            Ok(SecretBytes::new(p.as_bytes().to_vec()))
        }
    }

    /// A checkpoint: progress, lease owner, lease expiry (ms).
    type Record = (Progress, String, u64);

    #[derive(Clone, Default)]
    pub(crate) struct FakeStore {
        pub log: Log,
        pub fail_put: bool,
        /// A checkpoint write to this status fails (transiently).
        pub fail_checkpoint: Option<Status>,
        pub lose_writes: bool,
        pub items: Arc<Mutex<HashMap<(String, String), StoredShare>>>,
        pub checkpoints: Arc<Mutex<HashMap<(String, String), Record>>>,
        pub custodian: Arc<Mutex<HashMap<(String, String), crate::webhook::CustodianShare>>>,
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    impl Checkpoints for FakeStore {
        async fn acquire(
            &self,
            key: &BackupKey,
            owner: &str,
            until: u64,
            fresh: &Progress,
        ) -> Result<Acquired, StoreError> {
            self.log.push("checkpoint.acquire");
            let mut all = self.checkpoints.lock().unwrap();
            let k = (key.client_id.clone(), key.key.clone());
            match all.get_mut(&k) {
                None => {
                    all.insert(k, (fresh.clone(), owner.into(), until));
                    Ok(Acquired::Run(fresh.clone()))
                }
                Some((p, _, _)) if p.status == Status::Completed => {
                    Ok(Acquired::Completed(p.clone()))
                }
                Some((_, _, exp)) if *exp >= now_ms() => Ok(Acquired::Busy),
                Some((p, o, exp)) => {
                    *o = owner.into();
                    *exp = until;
                    Ok(Acquired::Run(p.clone()))
                }
            }
        }
        async fn advance(
            &self,
            key: &BackupKey,
            owner: &str,
            from: Status,
            to: &Progress,
        ) -> Result<(), StoreError> {
            self.log.push(format!("checkpoint.{}", to.status.as_str()));
            if self.fail_checkpoint == Some(to.status) {
                return Err(StoreError::Dynamo {
                    operation: "UpdateItem",
                    transient: true,
                    detail: "throttled".into(),
                });
            }
            let mut all = self.checkpoints.lock().unwrap();
            match all.get_mut(&(key.client_id.clone(), key.key.clone())) {
                Some((p, o, _)) if o == owner && p.status == from => {
                    *p = to.clone();
                    Ok(())
                }
                _ => Err(StoreError::LeaseLost(key.key.clone())),
            }
        }
        async fn advance_storing(
            &self,
            key: &BackupKey,
            owner: &str,
            from: Status,
            to: &Progress,
            shares: &[StoredShare; 2],
        ) -> Result<(), StoreError> {
            // All or nothing, as the DynamoDB transaction.
            if self.fail_put {
                return Err(StoreError::Dynamo {
                    operation: "TransactWriteItems",
                    transient: true,
                    detail: "throttled".into(),
                });
            }
            self.advance(key, owner, from, to).await?;
            for share in shares {
                self.put(share).await?;
            }
            Ok(())
        }
        async fn release(&self, key: &BackupKey, owner: &str) -> Result<(), StoreError> {
            self.log.push("checkpoint.release");
            if let Some((_, o, exp)) = self
                .checkpoints
                .lock()
                .unwrap()
                .get_mut(&(key.client_id.clone(), key.key.clone()))
            {
                if o == owner {
                    *exp = 0;
                }
            }
            Ok(())
        }
    }

    impl BackupStore for FakeStore {
        async fn put(&self, s: &StoredShare) -> Result<(), StoreError> {
            self.log
                .push(format!("store.put {}", s.backup_share_pair_id));
            if self.fail_put {
                return Err(StoreError::Dynamo {
                    operation: "PutItem",
                    transient: true,
                    detail: "throttled".into(),
                });
            }
            if !self.lose_writes {
                self.items.lock().unwrap().insert(
                    (s.client_id.clone(), s.backup_share_pair_id.clone()),
                    s.clone(),
                );
            }
            Ok(())
        }
        async fn cipher_text(&self, c: &str, id: &str) -> Result<Option<String>, StoreError> {
            self.log.push(format!("store.get {id}"));
            Ok(self
                .items
                .lock()
                .unwrap()
                .get(&(c.to_owned(), id.to_owned()))
                .map(|s| s.cipher_text.clone()))
        }
        async fn cipher_texts(
            &self,
            c: &str,
            ids: [&str; 2],
        ) -> Result<[Option<String>; 2], StoreError> {
            self.log.push(format!("store.get {}", ids.join(",")));
            let items = self.items.lock().unwrap();
            Ok(ids.map(|id| {
                items
                    .get(&(c.to_owned(), id.to_owned()))
                    .map(|s| s.cipher_text.clone())
            }))
        }
    }

    /// Lists the fake's checkpoints, so operator actions run against the same fakes.
    impl crate::restore::Catalogue for FakeStore {
        async fn list(&self, client_id: &str) -> Result<Vec<crate::restore::Listed>, StoreError> {
            let all = self.checkpoints.lock().unwrap();
            Ok(all
                .iter()
                .filter(|((client, _), _)| client == client_id)
                .map(|((_, key), (progress, _, _))| crate::restore::Listed {
                    key: key.clone(),
                    progress: progress.clone(),
                    created_at: 1,
                    updated_at: 2,
                    completed_at: (progress.status == Status::Completed).then_some(3),
                })
                .collect())
        }
    }

    pub(crate) fn request(mode: BackupMode) -> BackupRequest {
        BackupRequest {
            client_id: "client-1".into(),
            api_key: ClientApiKey::new("key".into()),
            generate: GenerateInput::Plain(GenerateResponse {
                json: SecretString::new("{}".into()),
                signing_share_pair_ids: ["sig-s".into(), "sig-e".into()],
            }),
            idempotency_key: None,
            mode,
        }
    }

    fn service(log: &Log) -> (FakePortal, FakeEnvelope, FakeStore) {
        (
            FakePortal {
                log: log.clone(),
                ..Default::default()
            },
            FakeEnvelope {
                log: log.clone(),
                ..Default::default()
            },
            FakeStore {
                log: log.clone(),
                ..Default::default()
            },
        )
    }

    /// Asserts every call starting with `a` happened before every call starting with `b`.
    pub(crate) fn assert_before(calls: &[String], a: &str, b: &str) {
        let last_a = calls.iter().rposition(|c| c.starts_with(a));
        let first_b = calls.iter().position(|c| c.starts_with(b));
        match (last_a, first_b) {
            (Some(x), Some(y)) => assert!(x < y, "{a} must precede {b}: {calls:?}"),
            _ => panic!("{a} or {b} missing: {calls:?}"),
        }
    }

    fn count(calls: &[String], prefix: &str) -> usize {
        calls.iter().filter(|c| c.starts_with(prefix)).count()
    }

    #[tokio::test]
    async fn self_managed_runs_steps_in_order_and_stores_bound_ciphertexts() {
        let log = Log::default();
        let (p, e, s) = service(&log);
        let svc = BackupService::new(p, e, Some(s.clone()));
        let out = svc
            .back_up(&request(BackupMode::SelfManaged))
            .await
            .unwrap();
        assert_eq!(
            out.backup_share_pair_ids,
            ["bk-SECP256K1-2".to_owned(), "bk-ED25519-2".to_owned()]
        );
        assert_eq!(out.status, "COMPLETED");
        let calls = log.calls();
        assert_eq!(calls[..2], ["checkpoint.acquire", "portal.backup"]);
        assert_eq!(
            calls[calls.len() - 2..],
            [
                "portal.mark bk-SECP256K1-2,bk-ED25519-2",
                "checkpoint.COMPLETED"
            ]
        );
        assert_before(&calls, "envelope.seal", "checkpoint.BACKED_UP");
        assert_before(&calls, "checkpoint.BACKED_UP", "store.put");
        // Portal is told only once verified; a mark that succeeds at once needs no STORED write.
        assert_before(&calls, "envelope.open", "portal.mark");
        assert_eq!(count(&calls, "checkpoint.STORED"), 0, "{calls:?}");
        assert_eq!(
            [
                count(&calls, "envelope.seal"),
                count(&calls, "store.put"),
                count(&calls, "store.get"),
                count(&calls, "envelope.open"),
                count(&calls, "portal.mark")
            ],
            [2, 2, 1, 2, 1],
            "both items read back in one round trip"
        );
        assert_before(&calls, "envelope.seal", "store.put");
        assert_before(&calls, "store.put", "store.get");
        assert_before(&calls, "envelope.open", "portal.mark");
        assert_eq!(
            count(&calls, "portal.store"),
            0,
            "self-managed never sends ciphertexts to Portal"
        );
        let items = s.items.lock().unwrap();
        let item = &items[&("client-1".to_owned(), "bk-ED25519-2".to_owned())];
        assert_eq!(item.curve, Curve::Ed25519);
        assert_eq!(item.signing_share_pair_id, "sig-e");
        assert!(item.cipher_text.starts_with(
            r#"{"backupSharePairId":"bk-ED25519-2","clientId":"client-1","curve":"ED25519"}|"#
        ));
        assert!(item.cipher_text.ends_with(&format!(
            r#"{{"share":"{}","id":"bk-ED25519-2"}}"#,
            fake_share("bk-ED25519-2")
        )));
    }

    #[tokio::test]
    async fn portal_managed_stores_and_reads_back_through_portal() {
        let log = Log::default();
        let (p, e, s) = service(&log);
        let svc = BackupService::new(p.clone(), e, Some(s));
        svc.back_up(&request(BackupMode::PortalManaged))
            .await
            .unwrap();
        let calls = log.calls();
        assert_eq!(
            count(&calls, "store."),
            0,
            "portal-managed never writes the table"
        );
        assert_eq!(count(&calls, "portal.store"), 2);
        assert_before(&calls, "portal.store", "portal.read");
        assert_before(&calls, "envelope.open", "portal.mark");
        assert_eq!(p.stored.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn no_mark_when_storing_fails() {
        for mode in [BackupMode::SelfManaged, BackupMode::PortalManaged] {
            let log = Log::default();
            let (mut p, e, mut s) = service(&log);
            p.fail_store = true;
            s.fail_put = true;
            let err = BackupService::new(p, e, Some(s))
                .back_up(&request(mode))
                .await
                .unwrap_err();
            assert_eq!(err.step, Step::Store, "{mode}");
            assert!(err.is_transient());
            assert_eq!(
                count(&log.calls(), "portal.mark"),
                0,
                "{mode}: {:?}",
                log.calls()
            );
        }
    }

    #[tokio::test]
    async fn no_mark_when_verification_fails() {
        // A write that does not persist, a read-back that differs, a decryption to other bytes.
        type Setup = fn(&mut FakePortal, &mut FakeEnvelope, &mut FakeStore);
        let cases: [(&str, Setup, BackupMode); 3] = [
            (
                "lost write",
                |_, _, s| s.lose_writes = true,
                BackupMode::SelfManaged,
            ),
            (
                "altered read",
                |p, _, _| p.corrupt_read = true,
                BackupMode::PortalManaged,
            ),
            (
                "wrong plaintext",
                |_, e, _| e.wrong_plaintext = true,
                BackupMode::SelfManaged,
            ),
        ];
        for (name, setup, mode) in cases {
            let log = Log::default();
            let (mut p, mut e, mut s) = service(&log);
            setup(&mut p, &mut e, &mut s);
            let err = BackupService::new(p, e, Some(s))
                .back_up(&request(mode))
                .await
                .unwrap_err();
            assert_eq!(err.step, Step::Verify, "{name}");
            assert!(!err.is_transient(), "{name}");
            assert_eq!(count(&log.calls(), "portal.mark"), 0, "{name}");
        }
    }

    #[tokio::test]
    async fn portal_refusal_stops_before_any_encryption() {
        let log = Log::default();
        let (mut p, e, s) = service(&log);
        p.fail_backup = Some(401);
        let err = BackupService::new(p, e, Some(s))
            .back_up(&request(BackupMode::SelfManaged))
            .await
            .unwrap_err();
        assert_eq!(err.step, Step::Backup);
        assert!(!err.is_transient());
        assert_eq!(
            log.calls(),
            ["checkpoint.acquire", "portal.backup", "checkpoint.release"],
            "permanent: no retry, no encryption, the lease let go"
        );
    }

    #[tokio::test]
    async fn self_managed_without_a_table_is_refused_before_portal_is_called() {
        let log = Log::default();
        let (p, e, _) = service(&log);
        let svc: BackupService<_, _, FakeStore> = BackupService::new(p, e, None);
        let err = svc
            .back_up(&request(BackupMode::SelfManaged))
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("backupMode"));
        assert!(log.calls().is_empty());
    }

    #[tokio::test]
    async fn a_sealed_generate_response_is_opened_under_the_clients_context() {
        let log = Log::default();
        let (p, e, s) = service(&log);
        let svc = BackupService::new(p, e.clone(), Some(s));
        let generate =
            r#"{"SECP256K1":{"share":"a","id":"sig-1"},"ED25519":{"share":"b","id":"sig-2"}}"#;
        let ctx = EncryptionContext::generate_response("client-1");
        let sealed = e.seal(&ctx, generate.as_bytes()).await.unwrap();
        let mut req = request(BackupMode::SelfManaged);
        req.generate = GenerateInput::Sealed(sealed.clone());
        let out = svc.back_up(&req).await.unwrap();
        assert_eq!(out.status, "COMPLETED");
        assert_eq!(
            log.calls()[..4],
            [
                "envelope.seal",
                "envelope.open",
                "checkpoint.acquire",
                "portal.backup"
            ]
        );

        // Sealed for another client: refused before Portal is called.
        let log = Log::default();
        let (p, e, s) = service(&log);
        let svc = BackupService::new(p, e, Some(s));
        let mut req = request(BackupMode::SelfManaged);
        req.client_id = "client-2".into();
        req.generate = GenerateInput::Sealed(sealed);
        let err = svc.back_up(&req).await.unwrap_err();
        assert_eq!(err.step, Step::Unseal);
        assert!(!err.is_transient());
        assert_eq!(count(&log.calls(), "portal."), 0);
    }

    /// Runs `req` twice on the same store: a first attempt under `first`, then a clean retry.
    async fn twice(
        first: FakePortal,
        fail_put_first: bool,
        mode: BackupMode,
    ) -> (Vec<String>, Vec<String>) {
        let store = FakeStore::default();
        let log1 = Log::default();
        let s1 = FakeStore {
            log: log1.clone(),
            fail_put: fail_put_first,
            ..store.clone()
        };
        let p1 = FakePortal {
            log: log1.clone(),
            ..first.clone()
        };
        let svc =
            BackupService::new(p1, FakeEnvelope::default(), Some(s1)).with_retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            });
        assert!(
            svc.back_up(&request(mode)).await.is_err(),
            "the first attempt fails"
        );
        let log2 = Log::default();
        let s2 = FakeStore {
            log: log2.clone(),
            fail_put: false,
            ..store
        };
        let p2 = FakePortal {
            log: log2.clone(),
            fail_mark: 0,
            fail_store: false,
            stored: first.stored.clone(),
            ..Default::default()
        };
        let out = BackupService::new(p2, FakeEnvelope::default(), Some(s2))
            .back_up(&request(mode))
            .await
            .unwrap();
        assert_eq!(out.status, "COMPLETED");
        (log1.calls(), log2.calls())
    }

    #[tokio::test]
    async fn a_retry_after_storing_failed_resumes_without_calling_backup_again() {
        let (first, second) = twice(FakePortal::default(), true, BackupMode::SelfManaged).await;
        assert_eq!(count(&first, "portal.backup"), 1);
        assert!(first.contains(&"checkpoint.BACKED_UP".to_owned()));
        assert_eq!(
            count(&second, "portal.backup"),
            0,
            "shares exist: never created twice"
        );
        assert_eq!(count(&second, "store.put"), 2);
        assert_eq!(count(&second, "portal.mark"), 1);
    }

    #[tokio::test]
    async fn a_retry_after_marking_failed_only_marks() {
        let portal = FakePortal {
            fail_mark: 1,
            ..Default::default()
        };
        let (first, second) = twice(portal, false, BackupMode::PortalManaged).await;
        assert!(first.contains(&"checkpoint.STORED".to_owned()), "{first:?}");
        assert_eq!(
            second,
            [
                "checkpoint.acquire",
                "portal.mark bk-SECP256K1-2,bk-ED25519-2",
                "checkpoint.COMPLETED"
            ]
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_mark_left_unrecorded_stores_and_proves_again() {
        // The mark fails and so does the STORED checkpoint: the table says BACKED_UP, as after
        // an invocation that died mid-mark.
        let store = FakeStore::default();
        let log1 = Log::default();
        let first = BackupService::new(
            FakePortal {
                log: log1.clone(),
                fail_mark: 1,
                ..Default::default()
            },
            FakeEnvelope::default(),
            Some(FakeStore {
                log: log1.clone(),
                fail_checkpoint: Some(Status::Stored),
                ..store.clone()
            }),
        )
        .with_retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
        let req = request(BackupMode::SelfManaged);
        assert!(first.back_up(&req).await.is_err());
        assert!(log1.calls().contains(&"checkpoint.STORED".to_owned()));

        let log2 = Log::default();
        let (portal, envelope, _) = service(&log2);
        let retry = BackupService::new(
            portal,
            envelope,
            Some(FakeStore {
                log: log2.clone(),
                ..store.clone()
            }),
        );
        let out = retry.back_up(&req).await.unwrap();
        assert_eq!(out.status, "COMPLETED");
        let calls = log2.calls();
        assert_eq!(count(&calls, "portal.backup"), 0, "{calls:?}");
        // The same ciphertexts again (safe to repeat), read back and opened before the mark.
        assert_eq!(count(&calls, "store.put"), 2, "{calls:?}");
        assert_eq!(count(&calls, "envelope.open"), 2, "{calls:?}");
        assert_before(&calls, "envelope.open", "portal.mark");
        assert_eq!(
            calls.last().map(String::as_str),
            Some("checkpoint.COMPLETED")
        );
        assert_eq!(store.items.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_completed_backup_answers_at_once_and_a_leased_one_is_busy() {
        let store = FakeStore::default();
        let svc = BackupService::new(
            FakePortal::default(),
            FakeEnvelope::default(),
            Some(store.clone()),
        );
        let first = svc
            .back_up(&request(BackupMode::SelfManaged))
            .await
            .unwrap();
        let log = Log::default();
        let again = BackupService::new(
            FakePortal {
                log: log.clone(),
                ..Default::default()
            },
            FakeEnvelope::default(),
            Some(FakeStore {
                log: log.clone(),
                ..store.clone()
            }),
        );
        assert_eq!(
            again
                .back_up(&request(BackupMode::SelfManaged))
                .await
                .unwrap(),
            first
        );
        assert_eq!(
            log.calls(),
            ["checkpoint.acquire"],
            "the earlier result, no work"
        );

        // A live lease held by another delivery: this one backs off, transiently.
        let mut other = request(BackupMode::SelfManaged);
        other.idempotency_key = Some("k-1".into());
        let key = BackupKey::new("client-1", Some("k-1"), &["a".into(), "b".into()]);
        let fresh = Progress {
            status: Status::InProgress,
            backup_mode: BackupMode::SelfManaged,
            signing_share_pair_ids: ["a".into(), "b".into()],
            shares: None,
        };
        store
            .acquire(&key, "someone-else", now_ms() + 60_000, &fresh)
            .await
            .unwrap();
        let err = svc.back_up(&other).await.unwrap_err();
        assert!(matches!(err.cause, Cause::InProgress));
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn work_that_cannot_finish_is_not_started() {
        let log = Log::default();
        let (p, e, s) = service(&log);
        let svc = BackupService::new(p, e, Some(s));
        let inv = Invocation::new(Deadline::after(Duration::from_secs(2)), "r");
        let err = svc
            .run(
                &request(BackupMode::SelfManaged),
                &inv,
                &mut RunStats::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)) && err.is_transient());
        assert!(log.calls().is_empty());
    }
}
