//! Portal's webhooks for self-managed custody: Portal POSTs each custodian backup share here while
//! it runs `/v1/backup`, then fetches them back to check they are stored.
//!
//! `POST …/webhook/backup` `{"clientId", "backupMethod", "share", "backupSharePairId"?}` seals the
//! share (its own encryption context) and writes it once; `POST …/webhook/backup/fetch`
//! `{"clientId"}` answers `{"backupShares": [...]}`. Both require `X-Webhook-Secret`, compared in
//! constant time; anything else is a 401 with no detail.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::{Value, json};
use zeroize::Zeroize;

use crate::domain::ciphertext::EncryptionContext;
use crate::domain::hook::{BackupHook, MAX_METHOD_LEN, parse_fetch};
use crate::domain::secret::{WebhookSecret, wipe_json};
use crate::ports::custody::{CustodianShare, CustodianStore, Put};
use crate::ports::envelope::{Envelope, EnvelopeError};
use crate::ports::store::StoreError;

pub use crate::domain::secret::SECRET_HEADER;

/// Route of the backup webhook (after any stage prefix).
pub const BACKUP_ROUTE: &str = "/webhook/backup";

/// Route of the fetch webhook (after any stage prefix).
pub const FETCH_ROUTE: &str = "/webhook/backup/fetch";

/// Time one webhook call may take: Portal gives up after 10 s, and a late 200 is a failed backup
/// at Portal, so the function answers 503 itself before then (the SDK's own budget is 15 s).
pub const HOOK_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// Which webhook a path names, if any (stage prefixes such as `/prod` are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `POST …/webhook/backup`.
    Backup,
    /// `POST …/webhook/backup/fetch`.
    Fetch,
}

impl Hook {
    /// The webhook `path` names.
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path.ends_with(FETCH_ROUTE) {
            Some(Hook::Fetch)
        } else if path.ends_with(BACKUP_ROUTE) {
            Some(Hook::Backup)
        } else {
            None
        }
    }
}

/// What a webhook answers: status and JSON body.
#[derive(Debug)]
pub struct HookAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body; for fetch it carries the shares, so the caller wipes it after encoding.
    pub body: Value,
}

impl HookAnswer {
    /// 401 with a fixed body (API Gateway's own): nothing tells a caller what was wrong.
    pub fn unauthorized() -> Self {
        HookAnswer {
            status: 401,
            body: json!({"message": "Unauthorized"}),
        }
    }

    fn error(status: u16, code: &str, message: String) -> Self {
        HookAnswer {
            status,
            body: json!({"error": {"code": code, "message": message}}),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn store_failure(err: &StoreError) -> HookAnswer {
    tracing::error!(error = %err, "webhook storage failed");
    HookAnswer::error(
        503,
        "DEPENDENCY_UNAVAILABLE",
        "storage is unavailable; retry".into(),
    )
}

fn envelope_failure(err: &EnvelopeError, what: &str) -> HookAnswer {
    let (status, code) = if err.is_transient() {
        (503, "DEPENDENCY_UNAVAILABLE")
    } else {
        (502, "DEPENDENCY_FAILED")
    };
    HookAnswer::error(status, code, format!("{what}; retry later"))
}

/// Portal's custodian webhooks over the ports: the custody function's one service, over its own
/// table and key (never the backup table or the client shares' key).
#[derive(Debug, Clone)]
pub struct CustodyService<E, S> {
    envelope: E,
    store: S,
}

impl<E: Envelope, S: CustodianStore> CustodyService<E, S> {
    /// Wires custody to its adapters.
    pub fn new(envelope: E, store: S) -> Self {
        Self { envelope, store }
    }

    /// Authenticates and runs one webhook call.
    pub async fn serve(
        &self,
        secret: &WebhookSecret,
        hook: Hook,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HookAnswer {
        serve(&self.envelope, &self.store, secret, hook, headers, body).await
    }
}

/// Authenticates and runs one webhook call. The secret is checked before the body is read.
pub async fn serve<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    secret: &WebhookSecret,
    hook: Hook,
    headers: &HeaderMap,
    body: &[u8],
) -> HookAnswer {
    if !secret.admits(headers) {
        tracing::warn!(?hook, "webhook call refused: wrong or missing secret");
        return HookAnswer::unauthorized();
    }
    let work = async {
        match hook {
            Hook::Backup => backup(envelope, store, body).await,
            Hook::Fetch => fetch(envelope, store, body).await,
        }
    };
    match tokio::time::timeout(HOOK_BUDGET, work).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::error!(?hook, "webhook call ran out of time");
            HookAnswer::error(
                503,
                "DEPENDENCY_UNAVAILABLE",
                "storage did not answer in time; retry".into(),
            )
        }
    }
}

/// Seals the share and writes it once. A resend of the same share is accepted (Portal retries);
/// another share for a stored pair is refused with 409 and the stored one stays.
async fn backup<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    body: &[u8],
) -> HookAnswer {
    let hook = match BackupHook::parse(body) {
        Ok(h) => h,
        Err(e) => return HookAnswer::error(400, "INVALID_INPUT", e.to_string()),
    };
    let (client_id, pair_id) = (&hook.client_id, &hook.backup_share_pair_id);
    let context = EncryptionContext::custodian_share(client_id, pair_id);
    let cipher_text = match envelope
        .seal(&context, hook.share.as_bytes_for_seal())
        .await
    {
        Ok(ct) => ct,
        Err(e) => {
            tracing::error!(%client_id, backup_share_pair_id = %pair_id, error = %e, "webhook seal failed");
            return envelope_failure(&e, "encryption is unavailable");
        }
    };
    let method: String = hook.backup_method.chars().take(MAX_METHOD_LEN).collect();
    let item = CustodianShare {
        client_id: client_id.clone(),
        backup_share_pair_id: pair_id.clone(),
        backup_method: method,
        cipher_text,
        updated_at: now_secs(),
    };
    let stored = match store.put_custodian_once(&item).await {
        Ok(Put::Written) => {
            tracing::info!(%client_id, backup_share_pair_id = %pair_id, backup_method = %item.backup_method, "custodian share stored");
            return stored_answer(pair_id);
        }
        Ok(Put::Exists(stored)) => stored,
        Err(e) => return store_failure(&e),
    };
    // Already stored: the same share again is a resend; another one is never written over it.
    let opened = match envelope.open(&context, &stored.cipher_text).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(%client_id, backup_share_pair_id = %pair_id, error = %e, "stored custodian share did not open");
            return envelope_failure(&e, "the stored share could not be checked");
        }
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        opened.expose(),
        hook.share.as_bytes_for_seal(),
    )
    .is_ok()
    {
        tracing::info!(%client_id, backup_share_pair_id = %pair_id, "custodian share resent; already stored");
        return stored_answer(pair_id);
    }
    tracing::warn!(%client_id, backup_share_pair_id = %pair_id, "custodian share refused: another share is stored for this pair");
    HookAnswer::error(
        409,
        "CUSTODIAN_SHARE_CONFLICT",
        format!(
            "a different custodian share is already stored for backup share pair {pair_id}; custodian shares are written once"
        ),
    )
}

fn stored_answer(pair_id: &str) -> HookAnswer {
    HookAnswer {
        status: 200,
        body: json!({ "backupSharePairId": pair_id }),
    }
}

/// Every stored share of the client, opened; one that does not open fails the whole answer (a
/// partial list would tell Portal a share is missing when it is not).
async fn fetch<E: Envelope, S: CustodianStore>(envelope: &E, store: &S, body: &[u8]) -> HookAnswer {
    let client_id = match parse_fetch(body) {
        Ok(c) => c,
        Err(e) => return HookAnswer::error(400, "INVALID_INPUT", e.to_string()),
    };
    let items = match store.custodian_shares(&client_id).await {
        Ok(items) => items,
        Err(e) => return store_failure(&e),
    };
    let opened = futures::future::join_all(items.iter().map(|item| async move {
        let context =
            EncryptionContext::custodian_share(&item.client_id, &item.backup_share_pair_id);
        envelope.open(&context, &item.cipher_text).await
    }))
    .await;
    let mut shares = Vec::with_capacity(opened.len());
    for (item, result) in items.iter().zip(opened) {
        let failed = match result.map(|plain| String::from_utf8(plain.expose().to_vec())) {
            Ok(Ok(share)) => {
                shares.push(Value::String(share));
                continue;
            }
            Ok(Err(e)) => {
                let mut bytes = e.into_bytes();
                bytes.zeroize();
                tracing::error!(%client_id, backup_share_pair_id = %item.backup_share_pair_id, "stored custodian share is not UTF-8");
                HookAnswer::error(
                    502,
                    "DEPENDENCY_FAILED",
                    "a stored share is unreadable".into(),
                )
            }
            Err(e) => {
                tracing::error!(%client_id, backup_share_pair_id = %item.backup_share_pair_id, error = %e, "custodian share did not open");
                envelope_failure(&e, "a stored share could not be opened")
            }
        };
        let mut partial = Value::Array(shares);
        wipe_json(&mut partial);
        return failed;
    }
    tracing::info!(%client_id, count = shares.len(), "custodian shares fetched");
    HookAnswer {
        status: 200,
        body: json!({ "backupShares": shares }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FakeEnvelope, FakeStore};
    use http::HeaderValue;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("whsec-correct-horse".into()).unwrap()
    }

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert("X-Webhook-Secret", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secret_check_is_exact() {
        let s = secret();
        assert!(s.admits(&headers(Some("whsec-correct-horse"))));
        for wrong in [
            None,
            Some(""),
            Some("whsec-correct-hors"),
            Some("whsec-correct-horse "),
        ] {
            assert!(!s.admits(&headers(wrong)), "{wrong:?}");
        }
        let mut two = headers(Some("whsec-correct-horse"));
        two.append(
            "x-webhook-secret",
            HeaderValue::from_static("whsec-correct-horse"),
        );
        assert!(!s.admits(&two), "a repeated header is refused");
        assert!(WebhookSecret::new("  ".into()).is_none());
        assert!(!format!("{s:?}").contains("horse"));
    }

    #[test]
    fn routes_allow_stage_prefixes() {
        assert_eq!(Hook::from_path("/webhook/backup"), Some(Hook::Backup));
        assert_eq!(Hook::from_path("/prod/webhook/backup/"), Some(Hook::Backup));
        assert_eq!(
            Hook::from_path("/prod/webhook/backup/fetch"),
            Some(Hook::Fetch)
        );
        assert_eq!(Hook::from_path("/backups"), None);
        assert_eq!(Hook::from_path("/webhook/backups"), None);
    }

    async fn call(
        store: &FakeStore,
        hook: Hook,
        secret_header: Option<&str>,
        body: &str,
    ) -> HookAnswer {
        serve(
            &FakeEnvelope::default(),
            store,
            &secret(),
            hook,
            &headers(secret_header),
            body.as_bytes(),
        )
        .await
    }

    #[tokio::test]
    async fn backup_then_fetch_round_trips_sealed_shares_written_once() {
        let store = FakeStore::default();
        let good = Some("whsec-correct-horse");
        for (pair, share, status) in [
            ("bp1", "share-one", 200),
            ("bp2", "share-two", 200),
            // Portal resends: the same share is accepted, nothing is rewritten.
            ("bp1", "share-one", 200),
            // Another share for a stored pair is refused and the stored one stays.
            ("bp1", "share-one-forged", 409),
        ] {
            let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share, "backupSharePairId": pair});
            let a = call(&store, Hook::Backup, good, &body.to_string()).await;
            assert_eq!(a.status, status, "{pair} {share}: {}", a.body);
            assert!(
                !a.body.to_string().contains("share-one"),
                "no share in answers"
            );
            if status == 409 {
                assert_eq!(a.body["error"]["code"], "CUSTODIAN_SHARE_CONFLICT");
            }
        }
        let other = json!({"clientId": "c2", "backupMethod": "CUSTOM", "share": "theirs", "backupSharePairId": "bp9"});
        assert_eq!(
            call(&store, Hook::Backup, good, &other.to_string())
                .await
                .status,
            200
        );
        let stored = store.custodian.lock().unwrap().clone();
        let item = &stored[&("c1".to_owned(), "bp1".to_owned())];
        assert!(
            item.cipher_text
                .contains(r#""purpose":"custodian-backup-share""#),
            "sealed under its own context"
        );
        let a = call(&store, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
        assert_eq!(a.status, 200);
        let mut shares: Vec<String> =
            serde_json::from_value(a.body["backupShares"].clone()).unwrap();
        shares.sort();
        assert_eq!(
            shares,
            ["share-one", "share-two"],
            "the first share of each pair; only this client's"
        );
    }

    #[tokio::test]
    async fn fetch_returns_every_share_of_a_client() {
        let store = FakeStore::default();
        let good = Some("whsec-correct-horse");
        for n in 0..250 {
            let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": format!("s{n}"), "backupSharePairId": format!("bp{n}")});
            assert_eq!(
                call(&store, Hook::Backup, good, &body.to_string())
                    .await
                    .status,
                200
            );
        }
        let a = call(&store, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
        assert_eq!(a.body["backupShares"].as_array().map(Vec::len), Some(250));
    }

    #[tokio::test]
    async fn wrong_secret_is_401_with_no_body_and_nothing_stored() {
        let store = FakeStore::default();
        let body = r#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s"}"#;
        for wrong in [None, Some("nope")] {
            for hook in [Hook::Backup, Hook::Fetch] {
                let a = call(&store, hook, wrong, body).await;
                assert_eq!(a.status, 401);
                assert_eq!(a.body, json!({"message": "Unauthorized"}), "no detail");
            }
        }
        assert!(store.custodian.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_input_and_storage_failures_are_clear() {
        let good = Some("whsec-correct-horse");
        let a = call(
            &FakeStore::default(),
            Hook::Backup,
            good,
            r#"{"clientId":"c1","share":"s3cr3t"}"#,
        )
        .await;
        assert_eq!(a.status, 400);
        let text = a.body.to_string();
        assert!(text.contains("backupMethod") && !text.contains("s3cr3t"));
        let failing = FakeStore {
            fail_put: true,
            ..Default::default()
        };
        let body = r#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t"}"#;
        let a = call(&failing, Hook::Backup, good, body).await;
        assert_eq!(a.status, 503);
        assert!(!a.body.to_string().contains("s3cr3t"));
    }

    /// An envelope whose KMS never answers.
    struct Stalled;

    impl Envelope for Stalled {
        async fn seal(
            &self,
            _: &EncryptionContext,
            _: &[u8],
        ) -> Result<String, crate::ports::envelope::EnvelopeError> {
            std::future::pending().await
        }
        async fn open(
            &self,
            _: &EncryptionContext,
            _: &str,
        ) -> Result<crate::domain::secret::SecretBytes, crate::ports::envelope::EnvelopeError>
        {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_dependency_answers_before_portal_gives_up() {
        let started = tokio::time::Instant::now();
        let body = br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t"}"#;
        let a = serve(
            &Stalled,
            &FakeStore::default(),
            &secret(),
            Hook::Backup,
            &headers(Some("whsec-correct-horse")),
            body,
        )
        .await;
        assert_eq!(a.status, 503);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
