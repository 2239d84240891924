//! Portal's webhooks for self-managed custody: Portal POSTs each custodian backup share here while
//! it runs `/v1/backup`, then fetches them back to check they are stored.
//!
//! `POST …/webhook/backup` `{"clientId", "backupMethod", "share", "backupSharePairId"?}` seals the
//! share (its own encryption context) and upserts it; `POST …/webhook/backup/fetch`
//! `{"clientId"}` answers `{"backupShares": [...]}`. Both require `X-Webhook-Secret`, compared in
//! constant time; anything else is a 401 with no detail.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use zeroize::Zeroize;

use crate::domain::ciphertext::EncryptionContext;
use crate::domain::request::MAX_CLIENT_ID_LEN;
use crate::domain::secret::{SecretString, WebhookSecret, sha256_hex, wipe_json};
use crate::ports::custody::{CustodianShare, CustodianStore};
use crate::ports::envelope::Envelope;
use crate::ports::store::StoreError;

pub use crate::domain::secret::SECRET_HEADER;

/// Route of the backup webhook (after any stage prefix).
pub const BACKUP_ROUTE: &str = "/webhook/backup";

/// Route of the fetch webhook (after any stage prefix).
pub const FETCH_ROUTE: &str = "/webhook/backup/fetch";

/// Largest webhook body read (a custodian share is a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Longest share accepted.
pub const MAX_SHARE_LEN: usize = 128 * 1024;

/// Longest backup share pair id accepted.
pub const MAX_PAIR_ID_LEN: usize = 128;

/// Longest `backupMethod` stored (free text from Portal).
pub const MAX_METHOD_LEN: usize = 64;

pub use crate::ports::custody::MAX_FETCH_SHARES;

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

/// A webhook body that is not acceptable: the field and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct HookInputError {
    /// The field at fault (`body` for the whole body).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn bad(field: &'static str, problem: &'static str) -> HookInputError {
    HookInputError { field, problem }
}

/// A validated `POST /backup` body.
#[derive(Debug)]
pub struct BackupHook {
    /// Portal client id.
    pub client_id: String,
    /// Portal's backup method, free text (e.g. `CUSTOM`, `GDRIVE`).
    pub backup_method: String,
    /// The backup share pair the share belongs to (body, else the share's own, else its digest).
    pub backup_share_pair_id: String,
    /// The custodian backup share, exactly as Portal sent it.
    pub share: SecretString,
}

/// Parses a JSON-object body; every string of it is wiped once `f` has taken what it needs.
fn with_object<T>(
    body: &[u8],
    f: impl FnOnce(&mut Map<String, Value>) -> Result<T, HookInputError>,
) -> Result<T, HookInputError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(bad("body", "is larger than 256 KiB"));
    }
    // serde_json's error is not passed on: it may quote a piece of the input.
    let mut doc: Value = serde_json::from_slice(body).map_err(|_| bad("body", "is not JSON"))?;
    let result = match doc.as_object_mut() {
        Some(map) => f(map),
        None => Err(bad("body", "must be a JSON object")),
    };
    wipe_json(&mut doc);
    result
}

/// A required non-empty string field of at most `max` bytes, with no control characters.
fn text(
    map: &mut Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<String, HookInputError> {
    match map.get_mut(field) {
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(Value::String(s)) if s.is_empty() => Err(bad(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => Err(bad(field, "is too long")),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(bad(field, "must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(std::mem::take(s)),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// Whether a pair id is safe as a key part and a context value: `[A-Za-z0-9_.:-]`, bounded.
fn valid_pair_id(id: &str) -> bool {
    (1..=MAX_PAIR_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The `backupSharePairId` inside a share: the share is JSON, or base64 of JSON (as Portal's
/// client shares are). Only that one field is read.
fn pair_id_in_share(share: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "backupSharePairId")]
        id: Option<String>,
    }
    let probe = |bytes: &[u8]| {
        serde_json::from_slice::<Probe>(bytes)
            .ok()
            .and_then(|p| p.id)
    };
    probe(share.as_bytes()).or_else(|| {
        let decoded = zeroize::Zeroizing::new(STANDARD.decode(share.trim()).ok()?);
        probe(&decoded)
    })
}

impl BackupHook {
    /// Parses and validates a `POST /backup` body.
    pub fn parse(body: &[u8]) -> Result<Self, HookInputError> {
        with_object(body, |map| {
            let client_id = text(map, "clientId", MAX_CLIENT_ID_LEN)?;
            let backup_method = text(map, "backupMethod", MAX_METHOD_LEN)?;
            let share = match map.get_mut("share") {
                None | Some(Value::Null) => return Err(bad("share", "is required")),
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(bad("share", "must not be empty"));
                }
                Some(Value::String(s)) if s.len() > MAX_SHARE_LEN => {
                    return Err(bad("share", "is longer than 128 KiB"));
                }
                Some(Value::String(s)) => SecretString::new(std::mem::take(s)),
                Some(_) => return Err(bad("share", "must be a string")),
            };
            let backup_share_pair_id = match map.get_mut("backupSharePairId") {
                None | Some(Value::Null) => match pair_id_in_share(share.expose()) {
                    Some(id) if valid_pair_id(&id) => id,
                    Some(_) => {
                        return Err(bad(
                            "share.backupSharePairId",
                            "must be 1 to 128 of [A-Za-z0-9_.:-]",
                        ));
                    }
                    // No id anywhere: the share's digest identifies it, so a resend is an upsert.
                    None => sha256_hex(share.as_bytes_for_seal()),
                },
                Some(Value::String(s)) if valid_pair_id(s) => std::mem::take(s),
                Some(_) => {
                    return Err(bad(
                        "backupSharePairId",
                        "must be 1 to 128 of [A-Za-z0-9_.:-]",
                    ));
                }
            };
            Ok(BackupHook {
                client_id,
                backup_method,
                backup_share_pair_id,
                share,
            })
        })
    }
}

/// Parses a `POST /backup/fetch` body: the client id.
pub fn parse_fetch(body: &[u8]) -> Result<String, HookInputError> {
    with_object(body, |map| text(map, "clientId", MAX_CLIENT_ID_LEN))
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

/// Portal's custodian webhooks over the ports: a service of its own. `store` is `None` when no
/// table is configured (the routes are then off).
#[derive(Debug, Clone)]
pub struct CustodyService<E, S> {
    envelope: E,
    store: Option<S>,
}

impl<E: Envelope, S: CustodianStore> CustodyService<E, S> {
    /// Wires custody to its adapters.
    pub fn new(envelope: E, store: Option<S>) -> Self {
        Self { envelope, store }
    }

    /// Whether the webhooks can be served (a table is configured).
    pub fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// Authenticates and runs one webhook call; `None` when custody is off.
    pub async fn serve(
        &self,
        secret: &WebhookSecret,
        hook: Hook,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<HookAnswer> {
        let store = self.store.as_ref()?;
        Some(serve(&self.envelope, store, secret, hook, headers, body).await)
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

async fn backup<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    body: &[u8],
) -> HookAnswer {
    let hook = match BackupHook::parse(body) {
        Ok(h) => h,
        Err(e) => return HookAnswer::error(400, "INVALID_INPUT", e.to_string()),
    };
    let context = EncryptionContext::custodian_share(&hook.client_id, &hook.backup_share_pair_id);
    let cipher_text = match envelope
        .seal(&context, hook.share.as_bytes_for_seal())
        .await
    {
        Ok(ct) => ct,
        Err(e) => {
            tracing::error!(client_id = %hook.client_id, backup_share_pair_id = %hook.backup_share_pair_id, error = %e, "webhook seal failed");
            return HookAnswer::error(
                503,
                "DEPENDENCY_UNAVAILABLE",
                "encryption is unavailable; retry".into(),
            );
        }
    };
    let method: String = hook.backup_method.chars().take(MAX_METHOD_LEN).collect();
    let item = CustodianShare {
        client_id: hook.client_id.clone(),
        backup_share_pair_id: hook.backup_share_pair_id.clone(),
        backup_method: method,
        cipher_text,
        updated_at: now_secs(),
    };
    if let Err(e) = store.put_custodian(&item).await {
        return store_failure(&e);
    }
    tracing::info!(client_id = %hook.client_id, backup_share_pair_id = %hook.backup_share_pair_id, backup_method = %item.backup_method, "custodian share stored");
    HookAnswer {
        status: 200,
        body: json!({"backupSharePairId": hook.backup_share_pair_id}),
    }
}

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
        match result.map(|plain| String::from_utf8(plain.expose().to_vec())) {
            Ok(Ok(share)) => shares.push(Value::String(share)),
            Ok(Err(e)) => {
                let mut bytes = e.into_bytes();
                bytes.zeroize();
                tracing::error!(%client_id, backup_share_pair_id = %item.backup_share_pair_id, "stored custodian share is not UTF-8");
                let mut partial = Value::Array(shares);
                wipe_json(&mut partial);
                return HookAnswer::error(
                    502,
                    "DEPENDENCY_FAILED",
                    "a stored share is unreadable".into(),
                );
            }
            Err(e) => {
                tracing::error!(%client_id, backup_share_pair_id = %item.backup_share_pair_id, error = %e, "custodian share did not open");
                let mut partial = Value::Array(shares);
                wipe_json(&mut partial);
                let (status, code) = if e.is_transient() {
                    (503, "DEPENDENCY_UNAVAILABLE")
                } else {
                    (502, "DEPENDENCY_FAILED")
                };
                return HookAnswer::error(
                    status,
                    code,
                    "a stored share could not be opened".into(),
                );
            }
        }
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

    #[test]
    fn backup_body_is_parsed_strictly_and_errors_name_no_value() {
        let ok = BackupHook::parse(
            br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t","backupSharePairId":"bp1"}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.client_id.as_str(), ok.backup_share_pair_id.as_str()),
            ("c1", "bp1")
        );
        assert_eq!(ok.share.expose(), "s3cr3t");
        // The pair id from the share's JSON, or from base64 JSON, or the share's digest.
        let inner = r#"{\"backupSharePairId\":\"bp2\",\"share\":\"x\"}"#;
        let body = format!(r#"{{"clientId":"c1","backupMethod":"GDRIVE","share":"{inner}"}}"#);
        assert_eq!(
            BackupHook::parse(body.as_bytes())
                .unwrap()
                .backup_share_pair_id,
            "bp2"
        );
        let b64 = STANDARD.encode(br#"{"backupSharePairId":"bp3"}"#);
        let body = format!(r#"{{"clientId":"c1","backupMethod":"CUSTOM","share":"{b64}"}}"#);
        assert_eq!(
            BackupHook::parse(body.as_bytes())
                .unwrap()
                .backup_share_pair_id,
            "bp3"
        );
        let h = BackupHook::parse(br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"opaque"}"#)
            .unwrap();
        assert_eq!(h.backup_share_pair_id, sha256_hex(b"opaque"));
        for (body, field) in [
            (&b"{bad s3cr3t"[..], "body"),
            (b"[\"s3cr3t\"]", "body"),
            (br#"{"backupMethod":"CUSTOM","share":"s3cr3t"}"#, "clientId"),
            (br#"{"clientId":"c1","share":"s3cr3t"}"#, "backupMethod"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM"}"#, "share"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM","share":7}"#, "share"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t","backupSharePairId":"a#b"}"#, "backupSharePairId"),
            (br#"{"clientId":"c\u0001","backupMethod":"CUSTOM","share":"s3cr3t"}"#, "clientId"),
        ] {
            let e = BackupHook::parse(body).unwrap_err();
            assert_eq!(e.field, field, "{}", String::from_utf8_lossy(body));
            assert!(!e.to_string().contains("s3cr3t"));
        }
        let long = format!(
            r#"{{"clientId":"c1","backupMethod":"{}","share":"s"}}"#,
            "M".repeat(65)
        );
        assert_eq!(
            BackupHook::parse(long.as_bytes()).unwrap_err().field,
            "backupMethod"
        );
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(BackupHook::parse(&huge).unwrap_err().field, "body");
        assert_eq!(parse_fetch(br#"{"clientId":"c1"}"#).unwrap(), "c1");
        assert_eq!(
            parse_fetch(br#"{"clientId":""}"#).unwrap_err().field,
            "clientId"
        );
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
    async fn backup_then_fetch_round_trips_sealed_shares() {
        let store = FakeStore::default();
        let good = Some("whsec-correct-horse");
        for (pair, share) in [
            ("bp1", "share-one"),
            ("bp2", "share-two"),
            ("bp1", "share-one-again"),
        ] {
            let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share, "backupSharePairId": pair});
            let a = call(&store, Hook::Backup, good, &body.to_string()).await;
            assert_eq!(a.status, 200);
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
            ["share-one-again", "share-two"],
            "an upsert per pair; only this client's"
        );
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
