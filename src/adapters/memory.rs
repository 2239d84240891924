//! In-memory fakes of every port, beside the real adapters: the workflow's, the entry points'
//! and custody's unit tests run against them. Each records the calls it serves, in order, and can
//! be told to fail a step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::checkpoint::{BackupKey, Progress, Status};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::model::Curve;
use crate::domain::secret::{ClientApiKey, SecretBytes, SecretString};
use crate::ports::catalogue::{
    Catalogue, Catalogued, Listed, Recovered, Recoveries, RecoveryStart,
};
use crate::ports::checkpoints::{Acquired, Checkpoints};
use crate::ports::custody::{CustodianCaps, CustodianShare, CustodianStore, Put};
use crate::ports::envelope::{Envelope, EnvelopeError};
use crate::ports::portal::{BackupShare, Portal, PortalError};
use crate::ports::store::{BackupStore, StoreError, StoredShare};

/// Records every port call, in order.
#[derive(Clone, Default)]
pub(crate) struct Log(pub Arc<Mutex<Vec<String>>>);
impl Log {
    pub(crate) fn push(&self, s: impl Into<String>) {
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
    /// The `Authorization` header of each `/v1/backup` call.
    pub keys: Arc<Mutex<Vec<String>>>,
    /// The client `/v1/backup`'s shares name (`None`: [`FAKE_CLIENT`]).
    pub backup_client: Option<String>,
    /// Portal-managed eject: (custodian share, stored client cipher text) per wallet id.
    pub ejectable: Arc<Mutex<HashMap<String, (String, String)>>>,
}

impl Portal for FakePortal {
    async fn backup(
        &self,
        key: &ClientApiKey,
        g: &SecretString,
    ) -> Result<[BackupShare; 2], PortalError> {
        self.log.push("portal.backup");
        self.keys
            .lock()
            .unwrap()
            .push(key.bearer_header().to_string());
        if let Some(status) = self.fail_backup {
            return Err(PortalError::Status {
                call: "backup",
                status,
                error_id: None,
                retry_after: None,
            });
        }
        let tag = g.expose().len();
        // As Portal does: the backup shares are the signing shares' client's.
        let client = self
            .backup_client
            .clone()
            .or_else(|| signing_client(g))
            .unwrap_or_else(|| FAKE_CLIENT.to_owned());
        Ok(Curve::ALL.map(|curve| BackupShare {
            curve,
            id: format!("bk-{curve}-{tag}"),
            share: SecretString::new(fake_share(&client, &format!("bk-{curve}-{tag}"))),
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
    async fn recover(
        &self,
        _: &ClientApiKey,
        backup_response: &SecretString,
    ) -> Result<SecretString, PortalError> {
        self.log.push("portal.recover");
        // New signing shares, named after the backup they came from.
        let tag = backup_response.expose().len();
        let client = self
            .backup_client
            .clone()
            .or_else(|| signing_client(backup_response))
            .unwrap_or_else(|| FAKE_CLIENT.to_owned());
        let (s, e) = (
            fake_share(&client, &format!("sig-s-{tag}")),
            fake_share(&client, &format!("sig-e-{tag}")),
        );
        Ok(SecretString::new(format!(
            r#"{{"SECP256K1":{{"share":"{s}","id":"sig-s-{tag}"}},"ED25519":{{"share":"{e}","id":"sig-e-{tag}"}}}}"#
        )))
    }
    async fn mark_stored(&self, _: &ClientApiKey, ids: &[String]) -> Result<(), PortalError> {
        self.log.push(format!("portal.mark {}", ids.join(",")));
        if self.fail_mark > 0 {
            return Err(PortalError::Status {
                call: "mark",
                status: 503,
                error_id: None,
                retry_after: None,
            });
        }
        Ok(())
    }
}

/// A share as Portal makes them: base64 of JSON naming its backup share pair.
pub(crate) fn fake_share(client_id: &str, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!(
        r#"{{"clientId":"{client_id}","backupSharePairId":"{id}","share":"5ecret"}}"#
    ))
}

/// The client the first share of a curve-keyed response (generate or backup) names.
fn signing_client(generate: &SecretString) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(generate.expose()).ok()?;
    let share = doc.as_object()?.values().next()?.get("share")?.as_str()?;
    crate::domain::share::client_id_in(share)
}

/// A generate response whose two signing shares name `client_id`, with pair ids `s` and `e`.
pub(crate) fn fake_generate(client_id: &str, s: &str, e: &str) -> serde_json::Value {
    serde_json::json!({
        "SECP256K1": {"share": fake_share(client_id, s), "id": s},
        "ED25519": {"share": fake_share(client_id, e), "id": e},
    })
}

/// The client the fakes' requests name (`workflow::backup::tests::request`).
pub(crate) const FAKE_CLIENT: &str = "client-1";

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
    async fn open(&self, ctx: &EncryptionContext, c: &str) -> Result<SecretBytes, EnvelopeError> {
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
    pub custodian: Arc<Mutex<HashMap<(String, String), crate::ports::custody::CustodianShare>>>,
    pub drill_cursor: Arc<Mutex<Option<crate::ports::drill::DrillCursor>>>,
    /// Checkpoint keys `list` reports it could not read.
    pub unreadable: Arc<Mutex<Vec<String>>>,
    /// Recovery records: (started at, what it got), by (client, key).
    pub recoveries: Arc<Mutex<HashMap<(String, String), RecoveryRecord>>>,
}

pub(crate) fn now_ms() -> u64 {
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
            Some((p, _, _)) if p.status == Status::Completed => Ok(Acquired::Completed(p.clone())),
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
            return Err(StoreError::Backend {
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
            return Err(StoreError::Backend {
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
            return Err(StoreError::Backend {
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
impl Catalogue for FakeStore {
    async fn list(&self, client_id: &str) -> Result<Catalogued, StoreError> {
        let all = self.checkpoints.lock().unwrap();
        let mut theirs: Vec<_> = all
            .iter()
            .filter(|((client, _), _)| client == client_id)
            .collect();
        // Completed in key order: a test orders its backups by their keys.
        theirs.sort_by(|a, b| a.0.1.cmp(&b.0.1));
        let backups = theirs
            .into_iter()
            .enumerate()
            .map(|(i, ((_, key), (progress, _, _)))| Listed {
                key: key.clone(),
                progress: progress.clone(),
                created_at: 1,
                updated_at: 2,
                completed_at: (progress.status == Status::Completed).then_some(3 + i as u64),
            })
            .collect();
        let unreadable = self.unreadable.lock().unwrap().clone();
        Ok(Catalogued {
            backups,
            unreadable,
        })
    }
}

impl Recoveries for FakeStore {
    async fn start_recovery(
        &self,
        client_id: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<RecoveryStart, StoreError> {
        self.log.push("recovery.start");
        let mut all = self.recoveries.lock().unwrap();
        let k = (client_id.to_owned(), key.to_owned());
        Ok(match all.get(&k) {
            Some((_, Some(done))) => RecoveryStart::Done(done.clone()),
            Some((at, None)) => RecoveryStart::Started(*at),
            None => {
                all.insert(k, (now_ms, None));
                RecoveryStart::Fresh
            }
        })
    }
    async fn finish_recovery(
        &self,
        client_id: &str,
        key: &str,
        r: &Recovered,
    ) -> Result<(), StoreError> {
        self.log.push("recovery.finish");
        let mut all = self.recoveries.lock().unwrap();
        if let Some(entry) = all.get_mut(&(client_id.to_owned(), key.to_owned())) {
            entry.1 = Some(r.clone());
        }
        Ok(())
    }
    async fn release_recovery(&self, client_id: &str, key: &str) -> Result<(), StoreError> {
        self.log.push("recovery.release");
        let mut all = self.recoveries.lock().unwrap();
        let k = (client_id.to_owned(), key.to_owned());
        if matches!(all.get(&k), Some((_, None))) {
            all.remove(&k);
        }
        Ok(())
    }
    async fn recovery_enqueued(
        &self,
        client_id: &str,
        key: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        self.log.push("recovery.enqueued");
        let mut all = self.recoveries.lock().unwrap();
        if let Some((_, Some(r))) = all.get_mut(&(client_id.to_owned(), key.to_owned())) {
            r.enqueued_message_id = Some(message_id.to_owned());
        }
        Ok(())
    }
}

/// A recovery's record in the fake: when it started, and what it got once finished.
pub(crate) type RecoveryRecord = (u64, Option<Recovered>);

/// A backup queue that records what it was sent (sealed shares only).
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeQueue {
    pub sent: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl crate::ports::backup_queue::BackupQueue for FakeQueue {
    fn enqueue<'a>(
        &'a self,
        b: crate::ports::backup_queue::QueuedBackup<'a>,
    ) -> crate::ports::backup_queue::Enqueued<'a> {
        Box::pin(async move {
            let mut sent = self.sent.lock().unwrap();
            sent.push((
                b.client_id.to_owned(),
                b.idempotency_key.to_owned(),
                b.sealed_generate_response.to_owned(),
            ));
            Ok(format!("msg-{}", sent.len()))
        })
    }
}

impl CustodianStore for FakeStore {
    async fn put_custodian_once(
        &self,
        share: &CustodianShare,
        caps: CustodianCaps,
    ) -> Result<Put, StoreError> {
        if self.fail_put {
            return Err(StoreError::Backend {
                operation: "PutItem",
                transient: true,
                detail: "down".into(),
            });
        }
        let mut stored = self.custodian.lock().unwrap();
        let key = (share.client_id.clone(), share.backup_share_pair_id.clone());
        if let Some(old) = stored.get(&key) {
            return Ok(Put::Exists(old.clone()));
        }
        let theirs = stored.values().filter(|s| s.client_id == share.client_id);
        let (count, bytes) = theirs.fold((0u64, 0u64), |(c, b), s| (c + 1, b + s.answer_bytes));
        if count >= caps.shares || bytes + share.answer_bytes > caps.bytes {
            return Ok(Put::OverCap);
        }
        stored.insert(key, share.clone());
        Ok(Put::Written)
    }
    async fn custodian_shares(&self, client_id: &str) -> Result<Vec<CustodianShare>, StoreError> {
        Ok(self
            .custodian
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.client_id == client_id)
            .cloned()
            .collect())
    }
}

/// Drills over the fake's checkpoints, in key order as a Scan reads them; a checkpoint's segment
/// is the sum of its key's bytes modulo the segments (deterministic, enough to spread a few).
impl crate::ports::drill::DrillTable for FakeStore {
    async fn drill_cursor(&self) -> Result<Option<crate::ports::drill::DrillCursor>, StoreError> {
        Ok(self.drill_cursor.lock().unwrap().clone())
    }
    async fn save_drill_cursor(
        &self,
        cursor: &crate::ports::drill::DrillCursor,
    ) -> Result<bool, StoreError> {
        let mut stored = self.drill_cursor.lock().unwrap();
        if stored.as_ref().map_or(0, |c| c.version) + 1 != cursor.version {
            return Ok(false);
        }
        *stored = Some(cursor.clone());
        Ok(true)
    }
    async fn completed_page(
        &self,
        start: Option<&crate::ports::rotation::ItemKey>,
        limit: u32,
    ) -> Result<crate::ports::drill::CompletedPage, StoreError> {
        let all = self.scan_order();
        let from = start.map_or(0, |k| {
            all.iter()
                .position(|b| (&b.item.pk, &b.item.sk) > (&k.pk, &k.sk))
                .unwrap_or(all.len())
        });
        let read: Vec<_> = all.into_iter().skip(from).take(limit as usize).collect();
        let last = (read.len() == limit as usize)
            .then(|| read.last().map(|b| b.item.clone()))
            .flatten();
        Ok(crate::ports::drill::CompletedPage {
            backups: read
                .into_iter()
                .filter(|b| b.progress.status == Status::Completed)
                .collect(),
            last,
        })
    }
    async fn completed_in_segment(
        &self,
        segment: u32,
        segments: u32,
        limit: u32,
    ) -> Result<Vec<crate::ports::drill::CompletedBackup>, StoreError> {
        Ok(self
            .scan_order()
            .into_iter()
            .filter(|b| {
                let sum: u32 = b
                    .item
                    .pk
                    .bytes()
                    .chain(b.item.sk.bytes())
                    .map(u32::from)
                    .sum();
                sum % segments == segment
            })
            .take(limit as usize)
            .filter(|b| b.progress.status == Status::Completed)
            .collect())
    }
}

impl FakeStore {
    /// Every checkpoint as a drill reads it, in key order.
    fn scan_order(&self) -> Vec<crate::ports::drill::CompletedBackup> {
        let mut all: Vec<_> = self
            .checkpoints
            .lock()
            .unwrap()
            .iter()
            .map(
                |((owner, key), (progress, _, _))| crate::ports::drill::CompletedBackup {
                    client_id: owner.clone(),
                    key: key.clone(),
                    progress: progress.clone(),
                    item: crate::ports::rotation::ItemKey {
                        pk: format!("CLIENT#{owner}"),
                        sk: format!("BACKUP#{key}"),
                    },
                },
            )
            .collect();
        all.sort_by(|a, b| (&a.item.pk, &a.item.sk).cmp(&(&b.item.pk, &b.item.sk)));
        all
    }
}

/// The custody drill over the fake's custodian shares, in key order as a Scan reads them.
impl crate::ports::custody_drill::CustodyDrillTable for FakeStore {
    async fn custodian_page(
        &self,
        start: Option<&crate::ports::rotation::ItemKey>,
        limit: u32,
    ) -> Result<crate::ports::custody_drill::CustodianPage, StoreError> {
        let mut all: Vec<(CustodianShare, crate::ports::rotation::ItemKey)> = self
            .custodian
            .lock()
            .unwrap()
            .values()
            .map(|s| {
                let key = crate::ports::rotation::ItemKey {
                    pk: format!("CLIENT#{}", s.client_id),
                    sk: format!("CUSTODIAN#{}", s.backup_share_pair_id),
                };
                (s.clone(), key)
            })
            .collect();
        all.sort_by(|a, b| (&a.1.pk, &a.1.sk).cmp(&(&b.1.pk, &b.1.sk)));
        let from = start.map_or(0, |k| {
            all.iter()
                .position(|(_, key)| (&key.pk, &key.sk) > (&k.pk, &k.sk))
                .unwrap_or(all.len())
        });
        let read: Vec<_> = all.into_iter().skip(from).take(limit as usize).collect();
        let last = (read.len() == limit as usize)
            .then(|| read.last().map(|(_, key)| key.clone()))
            .flatten();
        Ok(crate::ports::custody_drill::CustodianPage { shares: read, last })
    }
}

/// The public values of the fake's share items.
impl crate::ports::custody_drill::PublicValues for FakeStore {
    async fn public_values(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> Result<Option<(Curve, crate::domain::wallet_key::WalletPublic)>, StoreError> {
        Ok(self
            .items
            .lock()
            .unwrap()
            .get(&(client_id.to_owned(), backup_share_pair_id.to_owned()))
            .and_then(|s| Some((s.curve, s.public.clone()?))))
    }
}
