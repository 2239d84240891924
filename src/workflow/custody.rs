//! Portal's webhooks for self-managed custody: Portal POSTs each custodian backup share here while
//! it runs `/v1/backup`, then fetches them back to check they are stored.
//!
//! `POST …/webhook/backup` `{"clientId", "backupMethod", "share", "backupSharePairId"?}` seals the
//! share (its own encryption context) and writes it once; `POST …/webhook/backup/fetch`
//! `{"clientId"}` answers `{"backupShares": [...]}`. Both require `X-Webhook-Secret` (the current
//! value or, during a rotation, the previous one), compared in constant time; anything else is a
//! 401 with no detail. A share must name the client it is sent for (`CLIENT_MISMATCH`), and a
//! client holds at most its caps of shares and answer bytes, so fetch always answers in full
//! within Lambda's 6 MB and the time Portal waits.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::{Value, json};
use zeroize::Zeroize;

use futures::StreamExt;

use crate::domain::ciphertext::EncryptionContext;
use crate::domain::hook::{BackupHook, MAX_METHOD_LEN, answer_bytes, parse_fetch};
use crate::domain::model::Curve;
use crate::domain::secret::{WebhookSecrets, wipe_json};
use crate::domain::share::client_id_in;
use crate::domain::wallet_key::{Verdict, WalletPublic, check_custodian};
use crate::ports::custody::{CustodianCaps, CustodianShare, CustodianStore, Put};
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

/// Custodian shares opened at once by fetch: enough to answer a client at its cap well within
/// the budget, few enough not to queue KMS calls behind each other.
const FETCH_OPENS_AT_ONCE: usize = 8;

/// Which webhook a path names, if any (stage prefixes such as `/prod` are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `POST …/webhook/backup`.
    Backup,
    /// `POST …/webhook/backup/fetch`.
    Fetch,
}

impl Hook {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Backup => "backup",
            Hook::Fetch => "fetch",
        }
    }

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

/// What became of a webhook call, for metrics (`WebhookCalls` by `Outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new share was stored.
    Stored,
    /// The same share again: already stored.
    Resent,
    /// Fetch answered the client's shares.
    Fetched,
    /// The call came from an address not listed: refused before anything was read.
    RefusedSource,
    /// Wrong or missing secret.
    Unauthorized,
    /// Another share for a stored pair.
    Conflict,
    /// The share names another client, or none.
    ClientMismatch,
    /// The client holds as many shares or bytes as it may.
    OverCap,
    /// The body or the route is not acceptable.
    Invalid,
    /// Storage or KMS failed or ran out of time.
    Unavailable,
}

impl Outcome {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Resent => "resent",
            Outcome::Fetched => "fetched",
            Outcome::RefusedSource => "refused_source",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Conflict => "conflict",
            Outcome::ClientMismatch => "client_mismatch",
            Outcome::OverCap => "over_cap",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// Whether the call was refused for who made it or what it tried (`WebhookRefused`, alarmed):
    /// Portal itself never makes such a call.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Outcome::RefusedSource
                | Outcome::Unauthorized
                | Outcome::Conflict
                | Outcome::ClientMismatch
                | Outcome::OverCap
        )
    }
}

/// What a webhook answers: status and JSON body, and what it did.
#[derive(Debug)]
pub struct HookAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body; for fetch it carries the shares, so the caller wipes it after encoding.
    pub body: Value,
    /// What became of the call.
    pub outcome: Outcome,
    /// Shares answered (fetch).
    pub fetched: u64,
}

impl HookAnswer {
    /// 401 with a fixed body (API Gateway's own): nothing tells a caller what was wrong.
    pub fn unauthorized() -> Self {
        HookAnswer {
            status: 401,
            body: json!({"message": "Unauthorized"}),
            outcome: Outcome::Unauthorized,
            fetched: 0,
        }
    }

    /// 403 with a fixed body (API Gateway's own for a resource policy's refusal).
    pub fn forbidden_source() -> Self {
        HookAnswer {
            status: 403,
            body: json!({"message": "Forbidden"}),
            outcome: Outcome::RefusedSource,
            fetched: 0,
        }
    }

    /// An error with our code and a message that names no secret.
    pub fn error(status: u16, code: &str, message: String, outcome: Outcome) -> Self {
        HookAnswer {
            status,
            body: json!({"error": {"code": code, "message": message}}),
            outcome,
            fetched: 0,
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
        Outcome::Unavailable,
    )
}

fn envelope_failure(err: &EnvelopeError, what: &str) -> HookAnswer {
    let (status, code) = if err.is_transient() {
        (503, "DEPENDENCY_UNAVAILABLE")
    } else {
        (502, "DEPENDENCY_FAILED")
    };
    HookAnswer::error(
        status,
        code,
        format!("{what}; retry later"),
        Outcome::Unavailable,
    )
}

/// Portal's custodian webhooks over the ports: the custody function's one service, over its own
/// table and key (never the backup table or the client shares' key).
#[derive(Debug, Clone)]
pub struct CustodyService<E, S> {
    envelope: E,
    store: S,
    caps: CustodianCaps,
}

/// One webhook call: which hook, its headers and body, and where it came from (for logs).
#[derive(Debug)]
pub struct HookCall<'a> {
    /// The webhook.
    pub hook: Hook,
    /// Its headers (the secret).
    pub headers: &'a HeaderMap,
    /// Its body, decoded.
    pub body: &'a [u8],
    /// The caller's address as API Gateway saw it.
    pub source: &'a str,
}

impl<E: Envelope, S: CustodianStore> CustodyService<E, S> {
    /// Wires custody to its adapters, with the caps every client is held to.
    pub fn new(envelope: E, store: S, caps: CustodianCaps) -> Self {
        Self {
            envelope,
            store,
            caps,
        }
    }

    /// The store (tests look at what was written).
    #[cfg(test)]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Authenticates and runs one webhook call.
    pub async fn serve(&self, secrets: &WebhookSecrets, call: HookCall<'_>) -> HookAnswer {
        serve(&self.envelope, &self.store, self.caps, secrets, call).await
    }
}

/// Authenticates and runs one webhook call. The secret is checked before the body is read.
pub async fn serve<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    caps: CustodianCaps,
    secrets: &WebhookSecrets,
    call: HookCall<'_>,
) -> HookAnswer {
    let HookCall {
        hook,
        headers,
        body,
        source,
    } = call;
    if !secrets.admits(headers) {
        tracing::warn!(hook = hook.as_str(), %source, "webhook call refused: wrong or missing secret");
        return HookAnswer::unauthorized();
    }
    let work = async {
        match hook {
            Hook::Backup => backup(envelope, store, caps, body).await,
            Hook::Fetch => fetch(envelope, store, caps, body, source).await,
        }
    };
    match tokio::time::timeout(HOOK_BUDGET, work).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::error!(hook = hook.as_str(), "webhook call ran out of time");
            HookAnswer::error(
                503,
                "DEPENDENCY_UNAVAILABLE",
                "storage did not answer in time; retry".into(),
                Outcome::Unavailable,
            )
        }
    }
}

/// The wallet's curve and public values a custodian share names, checked against its partial
/// public keys. A share that fails the check is still kept (it is Portal's to judge) and logged
/// as a key mismatch for the alarm; the custody drill reports it again.
fn wallet_of(client_id: &str, pair_id: &str, share: &str) -> Option<(Curve, WalletPublic)> {
    let (curve, check) = check_custodian(share.as_bytes());
    let curve_name = curve.map(Curve::as_str);
    match &check.verdict {
        Verdict::Proven => {}
        Verdict::Mismatch(why) => tracing::error!(
            %client_id,
            backup_share_pair_id = %pair_id,
            curve = curve_name,
            problem = %why,
            "KEY_MISMATCH: Portal's custodian backup share does not check against its own public values"
        ),
        Verdict::Unchecked(why) => tracing::warn!(
            %client_id,
            backup_share_pair_id = %pair_id,
            problem = %why,
            "custodian backup share not checked against public values"
        ),
    }
    curve.zip(check.public)
}

/// Seals the share and writes it once. A resend of the same share is accepted (Portal retries);
/// another share for a stored pair is refused with 409 and the stored one stays.
async fn backup<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    caps: CustodianCaps,
    body: &[u8],
) -> HookAnswer {
    let hook = match BackupHook::parse(body) {
        Ok(h) => h,
        Err(e) => {
            return HookAnswer::error(400, "INVALID_INPUT", e.to_string(), Outcome::Invalid);
        }
    };
    let (client_id, pair_id) = (&hook.client_id, &hook.backup_share_pair_id);
    // Filed only under the client the share itself names: nothing is sealed or stored otherwise.
    if client_id_in(hook.share.expose()).as_deref() != Some(client_id.as_str()) {
        tracing::warn!(%client_id, backup_share_pair_id = %pair_id, "custodian share refused: it names another client, or none");
        return HookAnswer::error(
            422,
            "CLIENT_MISMATCH",
            format!(
                "the share does not name clientId {client_id}; a custodian share is stored only under its own client"
            ),
            Outcome::ClientMismatch,
        );
    }
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
    let wallet = wallet_of(client_id, pair_id, hook.share.expose());
    let item = CustodianShare {
        client_id: client_id.clone(),
        backup_share_pair_id: pair_id.clone(),
        backup_method: method,
        cipher_text,
        updated_at: now_secs(),
        answer_bytes: answer_bytes(hook.share.expose()),
        wallet,
    };
    let stored = match store.put_custodian_once(&item, caps).await {
        Ok(Put::Written) => {
            tracing::info!(%client_id, backup_share_pair_id = %pair_id, backup_method = %item.backup_method, "custodian share stored");
            return stored_answer(pair_id, Outcome::Stored);
        }
        Ok(Put::Exists(stored)) => stored,
        Ok(Put::OverCap) => {
            tracing::warn!(%client_id, backup_share_pair_id = %pair_id, max_shares = caps.shares, max_bytes = caps.bytes, "custodian share refused: the client is at its cap");
            return over_cap(client_id, caps);
        }
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
        return stored_answer(pair_id, Outcome::Resent);
    }
    tracing::warn!(%client_id, backup_share_pair_id = %pair_id, "custodian share refused: another share is stored for this pair");
    HookAnswer::error(
        409,
        "CUSTODIAN_SHARE_CONFLICT",
        format!(
            "a different custodian share is already stored for backup share pair {pair_id}; custodian shares are written once"
        ),
        Outcome::Conflict,
    )
}

fn stored_answer(pair_id: &str, outcome: Outcome) -> HookAnswer {
    HookAnswer {
        status: 200,
        body: json!({ "backupSharePairId": pair_id }),
        outcome,
        fetched: 0,
    }
}

/// 507: the client holds as many shares or answer bytes as it may; nothing was written.
fn over_cap(client_id: &str, caps: CustodianCaps) -> HookAnswer {
    HookAnswer::error(
        507,
        "CUSTODIAN_CAP_REACHED",
        format!(
            "client {client_id} holds the most custodian shares it may ({} shares, {} answer bytes); raise MaxCustodianSharesPerClient or MaxCustodianBytesPerClient if this client is expected to hold more",
            caps.shares, caps.bytes
        ),
        Outcome::OverCap,
    )
}

/// Every stored share of the client, opened a few at a time; one that does not open fails the
/// whole answer (a partial list would tell Portal a share is missing when it is not), and so does
/// a client beyond its caps (an answer over Lambda's 6 MB would fail anyway, and later).
async fn fetch<E: Envelope, S: CustodianStore>(
    envelope: &E,
    store: &S,
    caps: CustodianCaps,
    body: &[u8],
    source: &str,
) -> HookAnswer {
    let client_id = match parse_fetch(body) {
        Ok(c) => c,
        Err(e) => {
            return HookAnswer::error(400, "INVALID_INPUT", e.to_string(), Outcome::Invalid);
        }
    };
    let items = match store.custodian_shares(&client_id).await {
        Ok(items) => items,
        Err(e) => return store_failure(&e),
    };
    if items.len() as u64 > caps.shares {
        tracing::error!(%client_id, %source, count = items.len(), max_shares = caps.shares, "custodian fetch refused: the client holds more shares than its cap");
        return over_cap(&client_id, caps);
    }
    let opened: Vec<_> = futures::stream::iter(items.iter().map(|item| async move {
        let context =
            EncryptionContext::custodian_share(&item.client_id, &item.backup_share_pair_id);
        envelope.open(&context, &item.cipher_text).await
    }))
    .buffered(FETCH_OPENS_AT_ONCE)
    .collect()
    .await;
    let mut shares = Vec::with_capacity(opened.len());
    let mut bytes = 0u64;
    for (item, result) in items.iter().zip(opened) {
        let failed = match result.map(|plain| String::from_utf8(plain.expose().to_vec())) {
            Ok(Ok(share)) => {
                bytes += answer_bytes(&share);
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
                    Outcome::Unavailable,
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
    if bytes > caps.bytes {
        let mut all = Value::Array(shares);
        wipe_json(&mut all);
        tracing::error!(%client_id, %source, answer_bytes = bytes, max_bytes = caps.bytes, "custodian fetch refused: the client's shares exceed its byte cap");
        return over_cap(&client_id, caps);
    }
    let count = shares.len() as u64;
    // Every fetch hands custodian halves out: who asked, from where, and how many, never a share.
    tracing::info!(%client_id, %source, count, answer_bytes = bytes, "custodian shares fetched");
    HookAnswer {
        status: 200,
        body: json!({ "backupShares": shares }),
        outcome: Outcome::Fetched,
        fetched: count,
    }
}

mod drill;
pub use drill::{CustodyDrillAnswer, CustodyDrillFailure};

#[cfg(test)]
mod tests;
