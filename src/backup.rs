//! The backup workflow: Portal's "Back up a wallet" steps over the `Portal`, `Envelope` and
//! `BackupStore` ports. No AWS, HTTP or Lambda types here.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::try_join;
use serde::Serialize;

use crate::envelope::{EncryptionContext, Envelope};
use crate::error::{BackupError, Cause, Step};
use crate::model::BackupMode;
use crate::portal::{BackupShare, Portal};
use crate::request::{BackupRequest, GenerateInput, GenerateResponse, InputError};
use crate::secret::SecretString;
use crate::store::{BackupStore, StoredShare};

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

/// A client backup share after sealing: what is stored, and what it must decrypt to.
struct SealedShare<'a> {
    share: &'a BackupShare,
    context: EncryptionContext,
    cipher_text: String,
    plaintext: SecretString,
}

/// The workflow, over its three ports. `store` is `None` when no table is configured.
#[derive(Debug, Clone)]
pub struct BackupService<P, E, S> {
    portal: P,
    envelope: E,
    store: Option<S>,
}

impl<P: Portal, E: Envelope, S: BackupStore> BackupService<P, E, S> {
    /// Wires the workflow to its adapters.
    pub fn new(portal: P, envelope: E, store: Option<S>) -> Self {
        Self {
            portal,
            envelope,
            store,
        }
    }

    /// Backs up one wallet: backup → seal → store → verify → mark stored.
    ///
    /// Portal is told the backup is stored only after both ciphertexts were read back from where
    /// they were stored and decrypted to the shares Portal returned.
    pub async fn back_up(&self, req: &BackupRequest) -> Result<Outcome, BackupError> {
        // Refuse before calling Portal: a backup that cannot be stored must not be created.
        if req.mode == BackupMode::SelfManaged && self.store.is_none() {
            return Err(InputError {
                field: "backupMode".into(),
                problem: "is SELF_MANAGED but this deployment has no BACKUP_TABLE_NAME".into(),
            }
            .into());
        }
        let opened;
        let generate = match &req.generate {
            GenerateInput::Plain(g) => g,
            GenerateInput::Sealed(ciphertext) => {
                opened = self.unseal(req, ciphertext).await?;
                &opened
            }
        };
        let shares = self
            .portal
            .backup(&req.api_key, &generate.json)
            .await
            .map_err(|e| BackupError::new(Step::Backup, e))?;
        let [a, b] = &shares;
        let (a, b) = try_join(self.seal(req, a), self.seal(req, b)).await?;
        let sealed = [a, b];
        self.store(req, &generate.signing_share_pair_ids, &sealed)
            .await?;
        self.verify(req, &sealed).await?;
        let ids = [shares[0].id.clone(), shares[1].id.clone()];
        self.portal
            .mark_stored(&req.api_key, &ids)
            .await
            .map_err(|e| BackupError::new(Step::MarkStored, e))?;
        Ok(Outcome {
            client_id: req.client_id.clone(),
            backup_mode: req.mode.as_str(),
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
    async fn seal<'a>(
        &self,
        req: &BackupRequest,
        share: &'a BackupShare,
    ) -> Result<SealedShare<'a>, BackupError> {
        let plaintext = share_plaintext(share);
        let context = EncryptionContext::backup_share(&req.client_id, &share.id, share.curve);
        let cipher_text = self
            .envelope
            .seal(&context, plaintext.as_bytes_for_seal())
            .await
            .map_err(|e| BackupError::new(Step::Seal, e))?;
        Ok(SealedShare {
            share,
            context,
            cipher_text,
            plaintext,
        })
    }

    async fn store(
        &self,
        req: &BackupRequest,
        signing_share_pair_ids: &[String; 2],
        sealed: &[SealedShare<'_>; 2],
    ) -> Result<(), BackupError> {
        let step = |e| BackupError::new(Step::Store, e);
        match (&self.store, req.mode) {
            (Some(store), BackupMode::SelfManaged) => {
                let created_at = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let item = |s: &SealedShare<'_>, signing: &String| StoredShare {
                    client_id: req.client_id.clone(),
                    backup_share_pair_id: s.share.id.clone(),
                    curve: s.share.curve,
                    signing_share_pair_id: signing.clone(),
                    cipher_text: s.cipher_text.clone(),
                    created_at,
                };
                let [a, b] = [
                    item(&sealed[0], &signing_share_pair_ids[0]),
                    item(&sealed[1], &signing_share_pair_ids[1]),
                ];
                try_join(store.put(&a), store.put(&b))
                    .await
                    .map_err(|e| step(Cause::Store(e)))?;
            }
            _ => {
                let [a, b] = sealed;
                let api_key = &req.api_key;
                try_join(
                    self.portal
                        .store_cipher_text(api_key, &a.share.id, &a.cipher_text),
                    self.portal
                        .store_cipher_text(api_key, &b.share.id, &b.cipher_text),
                )
                .await
                .map_err(|e| step(Cause::Portal(e)))?;
            }
        }
        Ok(())
    }

    /// Reads each ciphertext back from where it was stored and proves it opens to the share.
    async fn verify(
        &self,
        req: &BackupRequest,
        sealed: &[SealedShare<'_>; 2],
    ) -> Result<(), BackupError> {
        let (a, b) = (
            self.verify_one(req, &sealed[0]),
            self.verify_one(req, &sealed[1]),
        );
        try_join(a, b).await?;
        Ok(())
    }

    async fn verify_one(
        &self,
        req: &BackupRequest,
        sealed: &SealedShare<'_>,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let id = &sealed.share.id;
        let stored = match (&self.store, req.mode) {
            (Some(store), BackupMode::SelfManaged) => store
                .cipher_text(&req.client_id, id)
                .await
                .map_err(|e| step(e.into()))?,
            _ => Some(
                self.portal
                    .cipher_text(&req.api_key, id)
                    .await
                    .map_err(|e| step(e.into()))?,
            ),
        };
        let Some(stored) = stored else {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} is not found after it was stored"
            ))));
        };
        if stored != sealed.cipher_text {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} read back differs from the one stored"
            ))));
        }
        let opened = self
            .envelope
            .open(&sealed.context, &stored)
            .await
            .map_err(|e| step(e.into()))?;
        if opened.expose() != sealed.plaintext.as_bytes_for_seal() {
            return Err(step(Cause::Mismatch(format!(
                "ciphertext of {id} does not decrypt to its share"
            ))));
        }
        Ok(())
    }
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
    use crate::store::StoreError;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

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
                share: SecretString::new(format!("share-{curve}")),
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
            Ok(())
        }
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

    #[derive(Clone, Default)]
    pub(crate) struct FakeStore {
        pub log: Log,
        pub fail_put: bool,
        pub lose_writes: bool,
        pub items: Arc<Mutex<HashMap<(String, String), StoredShare>>>,
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
    }

    pub(crate) fn request(mode: BackupMode) -> BackupRequest {
        BackupRequest {
            client_id: "client-1".into(),
            api_key: ClientApiKey::new("key".into()),
            generate: GenerateInput::Plain(GenerateResponse {
                json: SecretString::new("{}".into()),
                signing_share_pair_ids: ["sig-s".into(), "sig-e".into()],
            }),
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
        assert_eq!(calls.first().unwrap(), "portal.backup");
        assert_eq!(
            calls.last().unwrap(),
            "portal.mark bk-SECP256K1-2,bk-ED25519-2"
        );
        assert_eq!(
            [
                count(&calls, "envelope.seal"),
                count(&calls, "store.put"),
                count(&calls, "store.get"),
                count(&calls, "envelope.open"),
                count(&calls, "portal.mark")
            ],
            [2, 2, 2, 2, 1]
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
        assert!(
            item.cipher_text
                .ends_with(r#"{"share":"share-ED25519","id":"bk-ED25519-2"}"#)
        );
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
        assert_eq!(log.calls(), ["portal.backup"]);
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
            log.calls()[..3],
            ["envelope.seal", "envelope.open", "portal.backup"]
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
}
