//! Restore, verify and list: what an operator needs from stored backups on the day a wallet must
//! be recovered. Reached by a direct invoke whose payload names an `action`.
//!
//! - `list`: every backup of a client, from its checkpoint records: state and timestamps only.
//! - `verify`: the latest completed backup, read from where it was stored, decrypted, and checked
//!   against its pair ids; answers ok or the problem per curve, never a share (a backup drill).
//! - `restore`: the same, answering the `backupResponse` string that Portal's `/v1/recover` takes,
//!   sealed under `{clientId, purpose: backup-response}` (`sealedBackupResponse`), so that only a
//!   holder of the recovery role opens it; in the clear only where the deployment allows it
//!   (`ALLOW_PLAINTEXT_RESTORE`).
//! - `recover`: the whole recovery inside the function: open the backup, call Portal
//!   `POST /v1/recover`, and answer the new signing shares sealed as a `sealedGenerateResponse`
//!   (with the API key inside), ready to be backed up again. No share leaves in the clear.

use serde::{Serialize, Serializer};

use crate::domain::checkpoint::{SealedRecord, Status};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::model::BackupMode;
use crate::domain::request::InputError;
use crate::domain::secret::{ClientApiKey, SecretString, wipe_json};
use crate::domain::share::{RecordCheck, check_record};
use crate::domain::wallet_key::{Half, Verdict, check_half};
use crate::ports::catalogue::{Catalogue, Listed};
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;
use crate::workflow::error::{BackupError, Cause, Mismatch, Step};

/// What an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// List a client's backups.
    List,
    /// Prove the latest completed backup restores, without exposing it.
    Verify,
    /// Return the latest completed backup as `/v1/recover`'s `backupResponse`, sealed.
    Restore,
    /// Recover the wallet from its latest completed backup: new signing shares, sealed.
    Recover,
}

impl Action {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Verify => "verify",
            Action::Restore => "restore",
            Action::Recover => "recover",
        }
    }

    /// Whether the action reads key material out of a backup (audited, counted as a restore).
    pub fn restores(self) -> bool {
        matches!(self, Action::Restore | Action::Recover)
    }
}

/// A validated action request.
#[derive(Debug)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
    /// Portal client id.
    pub client_id: String,
    /// Needed to read Portal-managed ciphertexts back from Portal, and by `recover`.
    pub api_key: Option<ClientApiKey>,
    /// `recover` only, required there: a repeat with the same key answers the same sealed shares
    /// and never calls Portal again.
    pub idempotency_key: Option<String>,
}

/// The fields of an action request.
const ACTION_FIELDS: [&str; 4] = ["action", "clientId", "clientApiKey", "idempotencyKey"];

impl ActionRequest {
    /// Parses `{"action", "clientId", "clientApiKey"?}`; errors name the field, never a value.
    pub fn parse(payload: &[u8]) -> Result<Self, InputError> {
        let bad = |field: &str, problem: &str| InputError {
            field: field.chars().take(64).collect(),
            problem: problem.into(),
        };
        let mut doc: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| bad("body", "is not valid JSON"))?;
        let result = (|| {
            let map = doc
                .as_object()
                .ok_or_else(|| bad("body", "must be a JSON object"))?;
            if let Some(unknown) = map.keys().find(|k| !ACTION_FIELDS.contains(&k.as_str())) {
                return Err(bad(unknown, "is not a field of an action request"));
            }
            let text = |name: &str| match map.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(v)) => Ok(Some(v.clone())),
                Some(_) => Err(bad(name, "must be a string")),
            };
            let action = match text("action")?.as_deref() {
                Some("list") => Action::List,
                Some("verify") => Action::Verify,
                Some("restore") => Action::Restore,
                Some("recover") => Action::Recover,
                Some(_) => {
                    return Err(bad(
                        "action",
                        "must be list, verify, restore, recover or rotate",
                    ));
                }
                None => return Err(bad("action", "is required")),
            };
            let client_id = text("clientId")?.ok_or_else(|| bad("clientId", "is required"))?;
            if !crate::domain::request::valid_client_id(&client_id) {
                return Err(bad("clientId", crate::domain::request::CLIENT_ID_RULE));
            }
            let idempotency_key = text("idempotencyKey")?;
            if let Some(key) = &idempotency_key {
                crate::domain::model::check_id(key).map_err(|p| bad("idempotencyKey", p))?;
            }
            if action == Action::Recover && idempotency_key.is_none() {
                return Err(bad(
                    "idempotencyKey",
                    "is required to recover: a repeat with the same key answers the same sealed shares and never calls Portal again",
                ));
            }
            Ok(Self {
                action,
                client_id,
                api_key: text("clientApiKey")?.map(ClientApiKey::new),
                idempotency_key,
            })
        })();
        wipe_json(&mut doc);
        result
    }
}

/// A backup in a listing (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The backup's idempotency key.
    pub key: String,
    /// `IN_PROGRESS`, `BACKED_UP`, `STORED` or `COMPLETED`.
    pub status: &'static str,
    /// Where its ciphertexts are.
    pub backup_mode: &'static str,
    /// Backup share pair ids (SECP256K1, ED25519), once Portal created them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_share_pair_ids: Option<[String; 2]>,
    /// Signing share pair ids (SECP256K1, ED25519).
    pub signing_share_pair_ids: [String; 2],
    /// Epoch milliseconds.
    pub created_at: u64,
    /// Epoch milliseconds.
    pub updated_at: u64,
    /// Epoch milliseconds, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    /// The wallets' addresses (EVM for SECP256K1, Solana for ED25519), keyed by curve, where
    /// the shares named their public keys: public values.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub addresses: std::collections::BTreeMap<&'static str, String>,
}

/// What an action answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ActionAnswer {
    /// `list`.
    List {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// Newest first.
        backups: Vec<Summary>,
        /// Checkpoints that could not be read.
        unreadable: Unreadable,
    },
    /// `verify`: ok or the problem, per curve.
    Verify {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup checked.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// Whether both curves restore.
        ok: bool,
        /// `"ok"` or what is wrong, keyed by curve.
        curves: std::collections::BTreeMap<&'static str, String>,
        /// Newer completed backups passed over because their shares name another client.
        #[serde(rename = "skippedOtherClient", skip_serializing_if = "Vec::is_empty")]
        skipped_other_client: Vec<[String; 2]>,
        /// Checkpoints that could not be read (one may be a newer backup).
        unreadable: Unreadable,
    },
    /// `restore`: the string `/v1/recover` takes as `backupResponse`, sealed.
    Restore {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup restored.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// The `backupResponse`, sealed under `{clientId, purpose: backup-response}`.
        #[serde(rename = "sealedBackupResponse")]
        sealed_backup_response: String,
    },
    /// `restore` where the deployment allows plaintext (`ALLOW_PLAINTEXT_RESTORE`).
    RestorePlain {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup restored.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// `{"SECP256K1": {"share", "id"}, "ED25519": {"share", "id"}}` as a JSON string.
        #[serde(rename = "backupResponse", serialize_with = "expose")]
        backup_response: SecretString,
    },
    /// `recover`: Portal's new signing shares, sealed as a backup request takes them.
    Recover {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup recovered from.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// The new signing share pairs Portal issued (SECP256K1, ED25519).
        #[serde(rename = "signingSharePairIds")]
        signing_share_pair_ids: [String; 2],
        /// `{"clientApiKey", "generateResponse"}` sealed under `{clientId, purpose:
        /// generate-response}`: send it as a backup request's `sealedGenerateResponse`.
        #[serde(rename = "sealedGenerateResponse")]
        sealed_generate_response: String,
        /// The recovery's idempotency key.
        #[serde(rename = "idempotencyKey")]
        idempotency_key: String,
        /// The backup queue's message id: the new shares are on their way to a backup (absent
        /// when the function has no queue or the queue refused; a repeat enqueues again).
        #[serde(rename = "backupMessageId", skip_serializing_if = "Option::is_none")]
        backup_message_id: Option<String>,
        /// Whether this answer comes from the recovery's record (Portal not called again).
        #[serde(rename = "repeated")]
        repeated: bool,
    },
}

/// Checkpoints `list` could not read: how many, and their keys (never dropped in silence).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// How many.
    pub count: usize,
    /// Their sort keys (`BACKUP#…`).
    pub keys: Vec<String>,
}

impl Unreadable {
    fn of(keys: Vec<String>) -> Self {
        Self {
            count: keys.len(),
            keys,
        }
    }
}

/// The one place a restored backup leaves as text: the plaintext restore answer, to its IAM
/// caller, where the deployment allows it.
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// The completed backups of a listing with their sealed shares, the latest first.
pub fn completed_newest_first(listed: &[Listed]) -> Vec<(&Listed, &[SealedRecord; 2])> {
    let mut done: Vec<_> = listed
        .iter()
        .filter(|l| l.progress.status == Status::Completed)
        .filter_map(|l| Some((l, l.progress.shares.as_ref()?)))
        .collect();
    done.sort_by_key(|(l, _)| std::cmp::Reverse((l.completed_at.unwrap_or(0), l.updated_at)));
    done
}

/// List, verify and restore over the ports: a service of its own beside the backup workflow,
/// reading what it wrote.
#[derive(Debug, Clone)]
pub struct RestoreService<P, E, S> {
    portal: P,
    envelope: E,
    store: S,
    plaintext_restore: bool,
    /// Where `recover` sends the new shares for backup (the operator function's queue).
    queue: Option<std::sync::Arc<dyn crate::ports::backup_queue::BackupQueue>>,
}

impl<P, E, S> RestoreService<P, E, S> {
    /// Wires restore to its adapters; restores answer sealed.
    pub fn new(portal: P, envelope: E, store: S) -> Self {
        Self {
            portal,
            envelope,
            store,
            plaintext_restore: false,
            queue: None,
        }
    }

    /// Lets `restore` answer the backup in the clear (`ALLOW_PLAINTEXT_RESTORE`).
    pub fn with_plaintext_restore(mut self, allowed: bool) -> Self {
        self.plaintext_restore = allowed;
        self
    }

    fn table(&self) -> &S {
        &self.store
    }

    fn portal(&self) -> &P {
        &self.portal
    }

    fn envelope(&self) -> &E {
        &self.envelope
    }
}

impl<P: Portal, E: Envelope, S: BackupStore + Catalogue> RestoreService<P, E, S> {
    /// Runs an operator action.
    pub async fn act(&self, req: &ActionRequest) -> Result<ActionAnswer, BackupError> {
        if req.action == Action::Recover && req.api_key.is_none() {
            return Err(InputError {
                field: "clientApiKey".into(),
                problem: "is required to recover: Portal's /v1/recover authenticates the client"
                    .into(),
            }
            .into());
        }
        // A recovery under a key already done answers from its record, never calling Portal.
        if req.action == Action::Recover
            && let Some(answer) = self.start_recovery(req).await?
        {
            return Ok(answer);
        }
        let result = self.act_on_backups(req).await;
        if req.action == Action::Recover {
            self.release_if_portal_untouched(req, &result).await;
        }
        result
    }

    /// The actions that read the client's backups: list, verify, restore, recover.
    async fn act_on_backups(&self, req: &ActionRequest) -> Result<ActionAnswer, BackupError> {
        let store = self.table();
        let catalogued = store
            .list(&req.client_id)
            .await
            .map_err(|e| BackupError::new(Step::Checkpoint, e))?;
        let (mut listed, unreadable) = (catalogued.backups, catalogued.unreadable);
        if !unreadable.is_empty() {
            tracing::error!(client_id = %req.client_id, count = unreadable.len(), keys = ?unreadable, "checkpoints that cannot be read");
        }
        if req.action == Action::List {
            listed.sort_by_key(|l| std::cmp::Reverse(l.created_at));
            return Ok(ActionAnswer::List {
                client_id: req.client_id.clone(),
                backups: listed.iter().map(summary).collect(),
                unreadable: Unreadable::of(unreadable),
            });
        }
        // An unreadable checkpoint may be the newest backup: restore and recover do not guess
        // past it to an older one. Verify reports it beside what it checked.
        if req.action.restores() && !unreadable.is_empty() {
            return Err(BackupError::new(
                Step::Checkpoint,
                Cause::UnreadableCheckpoints(format!(
                    "client {} has {} checkpoint(s) that cannot be read ({}): one may be its newest backup, so none is restored; repair or remove them (docs/operations.md), then retry",
                    req.client_id,
                    unreadable.len(),
                    unreadable.join(", ")
                )),
            ));
        }
        // Newest first; a backup whose shares name another client is not this client's (filed
        // under its id by someone else): it is skipped, and said so, never answered.
        let mut skipped = Vec::new();
        let mut chosen = None;
        for (listed, [a, b]) in completed_newest_first(&listed) {
            let mode = listed.progress.backup_mode;
            let (ra, rb) = futures::future::join(
                self.open_stored(req, mode, a),
                self.open_stored(req, mode, b),
            )
            .await;
            let other_client = |r: &Result<SecretString, BackupError>| matches!(r, Err(e) if matches!(e.cause, Cause::ClientMismatch { .. }));
            if other_client(&ra) || other_client(&rb) {
                tracing::warn!(client_id = %req.client_id, backup_share_pair_ids = ?[&a.id, &b.id], "skipped a backup whose shares name another client");
                skipped.push([a.id.clone(), b.id.clone()]);
                continue;
            }
            chosen = Some((a, b, ra, rb));
            break;
        }
        let Some((a, b, ra, rb)) = chosen else {
            return Err(BackupError::new(
                Step::Verify,
                Cause::NoBackup(format!(
                    "client {} has no completed backup whose shares name it ({} skipped that name another client): list its backups to see their states",
                    req.client_id,
                    skipped.len()
                )),
            ));
        };
        let ids = [a.id.clone(), b.id.clone()];
        match req.action {
            // `list` answered above.
            Action::List | Action::Verify => {
                let (va, vb) = (verify_verdict(a, &ra), verify_verdict(b, &rb));
                let ok = va == "ok" && vb == "ok";
                let curves = [(a.curve, va), (b.curve, vb)]
                    .into_iter()
                    .map(|(c, v)| (c.as_str(), v))
                    .collect();
                Ok(ActionAnswer::Verify {
                    client_id: req.client_id.clone(),
                    backup_share_pair_ids: ids,
                    ok,
                    curves,
                    skipped_other_client: skipped,
                    unreadable: Unreadable::of(unreadable),
                })
            }
            Action::Restore | Action::Recover => {
                let (pa, pb) = (ra?, rb?);
                // Each plaintext is already `{"share","id"}`: splice them, no re-encoding copy.
                let mut out = String::with_capacity(pa.expose().len() + pb.expose().len() + 32);
                out.push_str("{\"");
                out.push_str(a.curve.as_str());
                out.push_str("\":");
                out.push_str(pa.expose());
                out.push_str(",\"");
                out.push_str(b.curve.as_str());
                out.push_str("\":");
                out.push_str(pb.expose());
                out.push('}');
                let backup_response = SecretString::new(out);
                if req.action == Action::Recover {
                    return self.recover(req, ids, &backup_response).await;
                }
                if self.plaintext_restore {
                    return Ok(ActionAnswer::RestorePlain {
                        client_id: req.client_id.clone(),
                        backup_share_pair_ids: ids,
                        backup_response,
                    });
                }
                let context = EncryptionContext::backup_response(&req.client_id);
                let sealed = self
                    .envelope()
                    .seal(&context, backup_response.expose().as_bytes())
                    .await
                    .map_err(|e| BackupError::new(Step::Seal, e))?;
                Ok(ActionAnswer::Restore {
                    client_id: req.client_id.clone(),
                    backup_share_pair_ids: ids,
                    sealed_backup_response: sealed,
                })
            }
        }
    }

    /// Reads one ciphertext from where `mode` stored it, opens it under its context and checks
    /// that it is the `{"share","id"}` of its pair.
    async fn open_stored(
        &self,
        req: &ActionRequest,
        mode: BackupMode,
        record: &SealedRecord,
    ) -> Result<SecretString, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let stored = match mode {
            BackupMode::SelfManaged => self
                .table()
                .cipher_text(&req.client_id, &record.id)
                .await
                .map_err(|e| step(e.into()))?
                .ok_or_else(|| {
                    step(Cause::Mismatch(Mismatch::MissingFromTable(
                        record.id.clone(),
                    )))
                })?,
            BackupMode::PortalManaged => {
                let key = req.api_key.as_ref().ok_or_else(|| {
                    BackupError::new(
                        Step::Input,
                        InputError {
                            field: "clientApiKey".into(),
                            problem: "is required to read a Portal-managed backup".into(),
                        },
                    )
                })?;
                self.portal()
                    .cipher_text(key, &record.id)
                    .await
                    .map_err(|e| step(e.into()))?
            }
        };
        let context = EncryptionContext::backup_share(&req.client_id, &record.id, record.curve);
        let opened = self
            .envelope()
            .open(&context, &stored)
            .await
            .map_err(|e| step(e.into()))?;
        match check_record(opened.expose(), &record.id, &req.client_id) {
            RecordCheck::Matches => {}
            RecordCheck::OtherPair => {
                return Err(step(Cause::Mismatch(Mismatch::NotThatPairsShare(
                    record.id.clone(),
                ))));
            }
            RecordCheck::OtherClient => {
                return Err(step(Cause::ClientMismatch {
                    what: "the stored backup's shares",
                    client_id: req.client_id.clone(),
                }));
            }
        }
        // Checked in place: a failed `String::from_utf8` would drop its bytes unwiped.
        let text = std::str::from_utf8(opened.expose())
            .map_err(|_| step(Cause::Mismatch(Mismatch::NotUtf8(record.id.clone()))))?;
        Ok(SecretString::new(text.to_owned()))
    }
}

fn summary(l: &Listed) -> Summary {
    Summary {
        key: l.key.clone(),
        status: l.progress.status.as_str(),
        backup_mode: l.progress.backup_mode.as_str(),
        backup_share_pair_ids: l
            .progress
            .shares
            .as_ref()
            .map(|[a, b]| [a.id.clone(), b.id.clone()]),
        signing_share_pair_ids: l.progress.signing_share_pair_ids.clone(),
        created_at: l.created_at,
        updated_at: l.updated_at,
        completed_at: l.completed_at,
        addresses: l
            .progress
            .shares
            .iter()
            .flatten()
            .filter_map(|r| Some((r.curve.as_str(), r.public.as_ref()?.address.clone())))
            .collect(),
    }
}

/// Verify's word on one opened share: `ok`, or what is wrong. A share that opens but does not
/// check against its wallet's public values (or names another public key than the one recorded
/// when it was stored) is a `KEY_MISMATCH`; one without public values to check is `ok`.
fn verify_verdict(record: &SealedRecord, opened: &Result<SecretString, BackupError>) -> String {
    let plaintext = match opened {
        Ok(p) => p,
        Err(e) => return e.to_string(),
    };
    let check = check_half(Half::Client, record.curve, plaintext.expose().as_bytes());
    if let Verdict::Mismatch(why) = check.verdict {
        return format!("KEY_MISMATCH: {why}");
    }
    match (&record.public, &check.public) {
        (Some(recorded), Some(named)) if recorded.public_key != named.public_key => {
            "KEY_MISMATCH: the share names another wallet public key than the one recorded when it was stored".to_owned()
        }
        _ => "ok".to_owned(),
    }
}

mod recovery;
#[cfg(test)]
mod tests;
