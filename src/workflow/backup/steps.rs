//! The seed's steps, one function each: `backup` (Portal `/v1/backup`), `seal` (one data key per
//! share), `store`, `prove` (read back and open), `mark` (Portal's `PATCH`), and the checkpoint
//! each durable effect writes before the next step runs.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::{join, try_join};
use serde::Serialize;

use super::vault::Vault;
use super::{BackupService, Run, RunStats, STEP_BUDGET};
use crate::domain::checkpoint::{Progress, SealedRecord, Status};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::request::{BackupRequest, GenerateResponse, InputError, SealedPayload};
use crate::domain::secret::{ClientApiKey, SecretString};
use crate::domain::share::{RecordCheck, check_record, client_id_in};
use crate::domain::wallet_key::{Half, Verdict, WalletPublic, check_half};
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::{BackupShare, Portal};
use crate::ports::store::{BackupStore, StoreError, StoredShare};
use crate::workflow::error::{BackupError, Cause, Mismatch, Step};

/// A client backup share after sealing: what is stored, and what it must decrypt to (unknown
/// when resuming from a checkpoint).
pub(super) struct SealedShare {
    pub(super) record: SealedRecord,
    pub(super) context: EncryptionContext,
    pub(super) plaintext: Option<SecretString>,
}

/// The sealed shares of a checkpoint, when a retry resumes after `seal`.
pub(super) fn from_checkpoint(
    req: &BackupRequest,
    progress: &Progress,
) -> Result<[SealedShare; 2], BackupError> {
    Ok(records(progress)?.clone().map(|record| SealedShare {
        context: EncryptionContext::backup_share(&req.client_id, &record.id, record.curve),
        record,
        plaintext: None,
    }))
}

/// The sealed shares a checkpoint past `seal` must hold.
fn records(progress: &Progress) -> Result<&[SealedRecord; 2], BackupError> {
    progress.shares.as_ref().ok_or_else(|| {
        BackupError::new(
            Step::Checkpoint,
            Cause::Mismatch(Mismatch::CheckpointLacksShares),
        )
    })
}

impl<P: Portal, E: Envelope, S: BackupStore + Checkpoints> BackupService<P, E, S> {
    /// Opens a sealed generate response (bound to this client) and validates it; the API key
    /// comes from inside it or, where the deployment allows, from beside it (never both).
    pub(super) async fn unseal(
        &self,
        req: &BackupRequest,
        ciphertext: &str,
    ) -> Result<(GenerateResponse, ClientApiKey), BackupError> {
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
        let payload = SealedPayload::parse(SecretString::new(text))?;
        let key = match (payload.api_key, &req.api_key) {
            (Some(key), None) => key,
            (None, Some(key)) => key.clone(),
            (Some(_), Some(_)) => {
                return Err(InputError {
                    field: "clientApiKey".into(),
                    problem: "is sent both sealed and in the clear: send it once, sealed".into(),
                }
                .into());
            }
            (None, None) => {
                return Err(InputError {
                    field: "clientApiKey".into(),
                    problem: "is required: seal it with the generate response".into(),
                }
                .into());
            }
        };
        Ok((payload.generate, key))
    }

    /// Step 1: Portal `POST /v1/backup` with the signing shares; answers the two client backup
    /// shares. Portal takes no idempotency key, so only a fresh checkpoint ever calls it.
    pub(super) async fn backup(
        &self,
        run: &Run<'_, S>,
        generate: &GenerateResponse,
        stats: &mut RunStats,
    ) -> Result<[BackupShare; 2], BackupError> {
        run.inv.deadline.check(Step::Backup, STEP_BUDGET)?;
        stats.called_backup = true;
        let started = Instant::now();
        let shares = self
            .retry
            .run(
                Step::Backup,
                &run.inv.deadline,
                &mut stats.retries,
                || async {
                    self.portal
                        .backup(run.api_key, &generate.json)
                        .await
                        .map_err(|e| BackupError::new(Step::Backup, e))
                },
            )
            .await?;
        stats.timed(Step::Backup, started);
        // Portal's answer must be this client's too: nothing is sealed or stored otherwise.
        let client = run.req.client_id.as_str();
        if shares
            .iter()
            .any(|s| client_id_in(s.share.expose()).as_deref() != Some(client))
        {
            return Err(BackupError::new(
                Step::Backup,
                Cause::ClientMismatch {
                    what: "Portal's backup shares",
                    client_id: client.to_owned(),
                },
            ));
        }
        Ok(shares)
    }

    /// Step 2: seals both shares, each under a data key of its own and its own context.
    pub(super) async fn seal(
        &self,
        run: &Run<'_, S>,
        shares: &[BackupShare; 2],
        stats: &mut RunStats,
    ) -> Result<[SealedShare; 2], BackupError> {
        let started = Instant::now();
        let [a, b] = shares;
        let (a, b) = try_join(self.seal_one(run.req, a), self.seal_one(run.req, b)).await?;
        stats.timed(Step::Seal, started);
        Ok([a, b])
    }

    /// Seals `{"share", "id"}` — the entry `/v1/recover` needs back — under the share's context.
    async fn seal_one(
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
        let public = wallet_of(req, share);
        Ok(SealedShare {
            record: SealedRecord {
                curve: share.curve,
                id: share.id.clone(),
                cipher_text,
                public,
            },
            context,
            plaintext: Some(plaintext),
        })
    }

    /// Checkpoints `BACKED_UP` with the sealed shares, so a retry never calls `/v1/backup` again.
    /// A vault that can (the table) stores the ciphertexts in the same write; answers the new
    /// progress and whether they were stored.
    pub(super) async fn checkpoint_sealed(
        &self,
        run: &Run<'_, S>,
        vault: &Vault<'_, P, S>,
        progress: Progress,
        sealed: &[SealedShare; 2],
        stats: &mut RunStats,
    ) -> Result<(Progress, bool), BackupError> {
        let to = Progress {
            status: Status::BackedUp,
            shares: Some([sealed[0].record.clone(), sealed[1].record.clone()]),
            ..progress
        };
        // No deadline check before this write: like the checkpoint it replaces, it must be tried,
        // or the shares Portal just created would be lost with the invocation.
        let Vault::Table(_) = vault else {
            return Ok((advance(run, Status::InProgress, to).await?, false));
        };
        let (store, key) = run.checkpoints;
        let started = Instant::now();
        let items = items(run.req, &to.signing_share_pair_ids, sealed);
        match store
            .advance_storing(key, &run.inv.owner, Status::InProgress, &to, &items)
            .await
        {
            Ok(()) => {
                stats.timed(Step::Store, started);
                Ok((to, true))
            }
            Err(e @ StoreError::LeaseLost(_)) => Err(BackupError::new(Step::Checkpoint, e)),
            Err(e) => {
                // Portal created these shares: checkpoint them on their own, as a separate write
                // would have, so the retry stores them rather than asking Portal for new ones.
                tracing::warn!(error = %e, "storing with the checkpoint failed; checkpointing the shares alone");
                advance(run, Status::InProgress, to).await?;
                Err(BackupError::new(Step::Store, Cause::Store(e)))
            }
        }
    }

    /// Step 3: writes both ciphertexts to the vault; both writes are safe to repeat.
    pub(super) async fn store(
        &self,
        run: &Run<'_, S>,
        vault: &Vault<'_, P, S>,
        progress: &Progress,
        sealed: &[SealedShare; 2],
        stats: &mut RunStats,
    ) -> Result<(), BackupError> {
        run.inv.deadline.check(Step::Store, STEP_BUDGET)?;
        let started = Instant::now();
        let items = items(run.req, &progress.signing_share_pair_ids, sealed);
        vault
            .put(&self.retry, run.api_key, &items, &run.inv.deadline, stats)
            .await?;
        stats.timed(Step::Store, started);
        Ok(())
    }

    /// Step 4: reads each ciphertext back from the vault and proves it opens to its share.
    pub(super) async fn prove(
        &self,
        run: &Run<'_, S>,
        vault: &Vault<'_, P, S>,
        sealed: &[SealedShare; 2],
        stats: &mut RunStats,
    ) -> Result<(), BackupError> {
        let started = Instant::now();
        let deadline = &run.inv.deadline;
        let ids = [sealed[0].record.id.as_str(), sealed[1].record.id.as_str()];
        let [a, b] = vault
            .read_back(
                &self.retry,
                (&run.req.client_id, run.api_key),
                ids,
                deadline,
                stats,
            )
            .await?;
        let ((ra, na), (rb, nb)) = join(
            self.retry.counted(Step::Verify, deadline, || {
                self.check_opens(&run.req.client_id, &sealed[0], a.as_deref())
            }),
            self.retry.counted(Step::Verify, deadline, || {
                self.check_opens(&run.req.client_id, &sealed[1], b.as_deref())
            }),
        )
        .await;
        stats.retries += na + nb;
        ra.and(rb)?;
        stats.timed(Step::Verify, started);
        Ok(())
    }

    /// Step 5: Portal `PATCH …/backup-share-pairs` `STORED_CLIENT_BACKUP_SHARE`, then the
    /// `COMPLETED` checkpoint. Marking and storing are both safe to repeat, so the `STORED`
    /// checkpoint (a retry then only marks) is written only when the mark fails: a backup that
    /// marks at once costs one write less, and one whose invocation dies mid-mark resumes from
    /// `BACKED_UP`, storing and proving again.
    pub(super) async fn mark(
        &self,
        run: &Run<'_, S>,
        progress: Progress,
        stats: &mut RunStats,
    ) -> Result<Progress, BackupError> {
        let [a, b] = records(&progress)?;
        let ids = [a.id.clone(), b.id.clone()];
        run.inv.deadline.check(Step::MarkStored, STEP_BUDGET)?;
        let started = Instant::now();
        let marked = self
            .retry
            .run(
                Step::MarkStored,
                &run.inv.deadline,
                &mut stats.retries,
                || async {
                    self.portal
                        .mark_stored(run.api_key, &ids)
                        .await
                        .map_err(|e| BackupError::new(Step::MarkStored, e))
                },
            )
            .await;
        if let Err(e) = marked {
            if progress.status == Status::BackedUp {
                let stored = Progress {
                    status: Status::Stored,
                    ..progress
                };
                if let Err(c) = advance(run, Status::BackedUp, stored).await {
                    tracing::warn!(error = %c, "could not checkpoint STORED after the mark failed; the retry stores and proves again");
                }
            }
            return Err(e);
        }
        stats.timed(Step::MarkStored, started);
        let from = progress.status;
        let done = Progress {
            status: Status::Completed,
            ..progress
        };
        advance(run, from, done).await
    }

    /// Proves that `stored`, the ciphertext read back, is the one sealed and opens to its share.
    async fn check_opens(
        &self,
        client_id: &str,
        sealed: &SealedShare,
        stored: Option<&str>,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let id = &sealed.record.id;
        let Some(stored) = stored else {
            return Err(step(Cause::Mismatch(Mismatch::NotFoundAfterStore(
                id.clone(),
            ))));
        };
        if stored != sealed.record.cipher_text {
            return Err(step(Cause::Mismatch(Mismatch::Differs(id.clone()))));
        }
        let opened = self
            .envelope
            .open(&sealed.context, stored)
            .await
            .map_err(|e| step(e.into()))?;
        let matches = match &sealed.plaintext {
            Some(plain) => opened.expose() == plain.as_bytes_for_seal(),
            // Resumed from a checkpoint: the share is no longer in memory; check what it names.
            None => check_record(opened.expose(), id, client_id) == RecordCheck::Matches,
        };
        if !matches {
            return Err(step(Cause::Mismatch(Mismatch::NotItsShare(id.clone()))));
        }
        Ok(())
    }
}

/// Moves the checkpoint from `from` to `to` (conditional on the lease).
async fn advance<S: Checkpoints>(
    run: &Run<'_, S>,
    from: Status,
    to: Progress,
) -> Result<Progress, BackupError> {
    let (store, key) = run.checkpoints;
    store
        .advance(key, &run.inv.owner, from, &to)
        .await
        .map_err(|e| BackupError::new(Step::Checkpoint, e))?;
    Ok(to)
}

/// The table items of both sealed shares.
fn items(
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
        public: s.record.public.clone(),
    };
    [
        item(&sealed[0], &signing_share_pair_ids[0]),
        item(&sealed[1], &signing_share_pair_ids[1]),
    ]
}

/// The wallet's public values the share names, checked against its partial public keys. A
/// share that fails the check is still kept (Portal's recover may still take it) and logged as
/// a key mismatch for the alarm; the drills report it again.
fn wallet_of(req: &BackupRequest, share: &BackupShare) -> Option<WalletPublic> {
    let check = check_half(Half::Client, share.curve, share.share.expose().as_bytes());
    match &check.verdict {
        Verdict::Proven => {}
        Verdict::Mismatch(why) => tracing::error!(
            client_id = %req.client_id,
            backup_share_pair_id = %share.id,
            curve = share.curve.as_str(),
            problem = %why,
            "KEY_MISMATCH: Portal's client backup share does not check against its own public values"
        ),
        Verdict::Unchecked(why) => tracing::warn!(
            client_id = %req.client_id,
            backup_share_pair_id = %share.id,
            curve = share.curve.as_str(),
            problem = %why,
            "client backup share not checked against public values"
        ),
    }
    check.public
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
