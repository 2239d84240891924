//! The backup workflow: Portal's "Back up a wallet" steps over the `Portal`, `Envelope`,
//! `BackupStore` and `Checkpoints` ports. No AWS, HTTP or Lambda types here.
//!
//! [`BackupService::run`] takes the backup's checkpoint lease; [`BackupService::resume`] is a loop
//! over the checkpoint's status that calls one step per state (see `steps`):
//!
//! | status | steps |
//! |---|---|
//! | `IN_PROGRESS` | [`backup`](BackupService::backup) (Portal `/v1/backup`), [`seal`](BackupService::seal) both shares, checkpoint `BACKED_UP` |
//! | `BACKED_UP` | [`store`](BackupService::store), [`prove`](BackupService::prove) (read back, open), [`mark`](BackupService::mark) |
//! | `STORED` | [`mark`](BackupService::mark) only |
//! | `COMPLETED` | answer the outcome |
//!
//! Where ciphertexts go (the table or Portal) is chosen once per backup, by `vault`. A
//! redelivered message resumes where the last attempt stopped; a completed one answers at once.

mod steps;
mod vault;

use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use crate::domain::checkpoint::{BackupKey, Progress, Status};
use crate::domain::request::{BackupRequest, GenerateInput, GenerateResponse, InputError};
use crate::domain::secret::ClientApiKey;
use crate::ports::checkpoints::{Acquired, Checkpoints};
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;
use crate::workflow::error::{BackupError, Cause, Mismatch, Step};
use crate::workflow::retry::{Deadline, RetryPolicy};

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
    /// The backup's idempotency key: the request's, or the one derived from its signing share
    /// pair ids (what `list` names it by, and what the outcome event carries).
    pub idempotency_key: String,
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

/// The workflow, over its ports. The table is there in every mode: it holds the checkpoints that
/// make a backup exactly-once (and, self-managed, the client ciphertexts).
#[derive(Debug, Clone)]
pub struct BackupService<P, E, S> {
    portal: P,
    envelope: E,
    store: S,
    retry: RetryPolicy,
}

impl<P: Portal, E: Envelope, S: BackupStore + Checkpoints> BackupService<P, E, S> {
    /// Wires the workflow to its adapters.
    pub fn new(portal: P, envelope: E, store: S) -> Self {
        Self {
            portal,
            envelope,
            store,
            retry: RetryPolicy::default(),
        }
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

    /// Backs up one wallet: backup → seal → checkpoint → store → prove → mark → checkpoint.
    ///
    /// Portal is told the backup is stored only after both ciphertexts were read back from where
    /// they were stored and decrypted to the shares Portal returned.
    pub async fn run(
        &self,
        req: &BackupRequest,
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<Outcome, BackupError> {
        inv.deadline.check(Step::Input, START_BUDGET)?;
        let opened;
        let (generate, api_key) = match (&req.generate, &req.api_key) {
            (GenerateInput::Plain(g), Some(key)) => (g, key),
            (GenerateInput::Plain(_), None) => {
                return Err(InputError {
                    field: "clientApiKey".into(),
                    problem: "is required".into(),
                }
                .into());
            }
            (GenerateInput::Sealed(ciphertext), _) => {
                opened = self.unseal(req, ciphertext).await?;
                (&opened.0, &opened.1)
            }
        };
        // A backup is filed under the client its shares belong to, checked before Portal is called:
        // anyone may name any clientId, so the id a request names is only taken as its shares'.
        if !generate.names_only(&req.client_id) {
            return Err(BackupError::new(
                Step::Input,
                Cause::ClientMismatch {
                    what: "the signing shares",
                    client_id: req.client_id.clone(),
                },
            ));
        }
        let fresh = Progress {
            status: Status::InProgress,
            backup_mode: req.mode,
            signing_share_pair_ids: generate.signing_share_pair_ids.clone(),
            shares: None,
        };
        let store = &self.store;
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
                // A key names one wallet's backup: a completed backup of another never answers.
                same_wallet(&key, &done, &fresh)?;
                stats.resumed_from = Some(Status::Completed);
                return outcome(req, &key, &done);
            }
            Acquired::Busy => return Err(BackupError::new(Step::Checkpoint, Cause::InProgress)),
            Acquired::Run(progress) => progress,
        };
        if let Err(e) = same_wallet(&key, &progress, &fresh) {
            // The lease just taken is let go; the other wallet's checkpoint is left as it was.
            if let Err(r) = store.release(&key, &inv.owner).await {
                tracing::warn!(error = %r, "could not release the backup lease; it expires with the invocation");
            }
            return Err(e);
        }
        stats.resumed_from = (progress.status != Status::InProgress).then_some(progress.status);
        let result = self
            .resume(
                req,
                (generate, api_key),
                (store, &key),
                progress,
                inv,
                stats,
            )
            .await;
        if result.is_err() {
            // Never delete: the checkpoint may hold shares Portal already created. Only let go.
            if let Err(e) = store.release(&key, &inv.owner).await {
                tracing::warn!(error = %e, "could not release the backup lease; it expires with the invocation");
            }
        }
        result
    }

    /// Runs the steps left after `progress`, one state of the checkpoint at a time; each step
    /// that makes a durable effect checkpoints it before the next runs.
    async fn resume(
        &self,
        req: &BackupRequest,
        (generate, api_key): (&GenerateResponse, &ClientApiKey),
        checkpoints: (&S, &BackupKey),
        mut progress: Progress,
        inv: &Invocation,
        stats: &mut RunStats,
    ) -> Result<Outcome, BackupError> {
        let run = Run {
            req,
            api_key,
            checkpoints,
            inv,
        };
        let vault = self.vault(progress.backup_mode);
        // The shares sealed by this run (none when resuming): `prove` then checks them byte for
        // byte; and whether `seal`'s checkpoint already stored them.
        let mut sealed = None;
        let mut stored = false;
        loop {
            progress = match progress.status {
                Status::InProgress => {
                    let shares = self
                        .backup(&run, generate, stats)
                        .instrument(step_span(Step::Backup))
                        .await?;
                    let pair = self
                        .seal(&run, &shares, stats)
                        .instrument(step_span(Step::Seal))
                        .await?;
                    let (next, with_checkpoint) = self
                        .checkpoint_sealed(&run, &vault, progress, &pair, stats)
                        .await?;
                    (sealed, stored) = (Some(pair), with_checkpoint);
                    next
                }
                Status::BackedUp => {
                    let pair = match sealed.take() {
                        Some(pair) => pair,
                        None => steps::from_checkpoint(req, &progress)?,
                    };
                    if !stored {
                        self.store(&run, &vault, &progress, &pair, stats)
                            .instrument(step_span(Step::Store))
                            .await?;
                    }
                    self.prove(&run, &vault, &pair, stats)
                        .instrument(step_span(Step::Verify))
                        .await?;
                    self.mark(&run, progress, stats)
                        .instrument(step_span(Step::MarkStored))
                        .await?
                }
                Status::Stored => {
                    self.mark(&run, progress, stats)
                        .instrument(step_span(Step::MarkStored))
                        .await?
                }
                Status::Completed => return outcome(req, run.checkpoints.1, &progress),
            };
        }
    }
}

/// The span of one step (a subsegment when tracing is on); it names the step, nothing else.
fn step_span(step: Step) -> tracing::Span {
    tracing::info_span!("step", step = step.as_str())
}

/// What every step of one run shares: the request, where its checkpoints go, the invocation.
struct Run<'a, S> {
    req: &'a BackupRequest,
    /// The API key, from the request or from inside its sealed payload.
    api_key: &'a ClientApiKey,
    checkpoints: (&'a S, &'a BackupKey),
    inv: &'a Invocation,
}

/// Refuses a checkpoint recorded for another wallet's backup under the same key: its fingerprint
/// (the signing share pair ids and the backup mode) must be this request's.
fn same_wallet(key: &BackupKey, recorded: &Progress, fresh: &Progress) -> Result<(), BackupError> {
    if recorded.signing_share_pair_ids == fresh.signing_share_pair_ids
        && recorded.backup_mode == fresh.backup_mode
    {
        return Ok(());
    }
    Err(BackupError::new(
        Step::Checkpoint,
        Cause::IdempotencyKeyReused(key.key.clone()),
    ))
}

/// The outcome of a completed backup, rebuilt from its checkpoint.
fn outcome(req: &BackupRequest, key: &BackupKey, done: &Progress) -> Result<Outcome, BackupError> {
    let shares = done.shares.as_ref().ok_or_else(|| {
        BackupError::new(
            Step::Checkpoint,
            Cause::Mismatch(Mismatch::CompletedLacksShares),
        )
    })?;
    Ok(Outcome {
        client_id: req.client_id.clone(),
        backup_mode: done.backup_mode.as_str(),
        backup_share_pair_ids: [shares[0].id.clone(), shares[1].id.clone()],
        idempotency_key: key.key.clone(),
        status: "COMPLETED",
    })
}

#[cfg(test)]
pub(crate) mod tests;
