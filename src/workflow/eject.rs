//! Portal-managed eject, an operator action: with the custodian API key (a secret only the
//! operator function may read) the function enables eject for one wallet of a client, fetches
//! Portal's `ejectable-backup-shares`, and answers both halves sealed: the client's as this
//! stack stored it with Portal, the custodian's sealed anew under
//! `{clientId, walletId, purpose: eject-share}`, which only the recovery role opens. Neither
//! half is ever answered or logged in the clear. Once `portal-backup-eject` has proven the key,
//! `complete-eject` tells Portal.
//!
//! `{"action": "eject" | "complete-eject", "clientId", "walletId", "clientApiKey"}`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::ciphertext::EncryptionContext;
use crate::domain::esdk_message::{decode_text, read_header};
use crate::domain::request::InputError;
use crate::domain::secret::{ClientApiKey, wipe_json};
use crate::domain::share::client_id_in;
use crate::domain::wallet_key::{Verdict, check_custodian};
use crate::ports::eject::{CustodianKeySource, EjectPortal};
use crate::ports::envelope::Envelope;
use crate::workflow::error::{BackupError, Cause, Step};

/// Which eject action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EjectAction {
    /// Enable, fetch, answer both halves sealed.
    Eject,
    /// Tell Portal the key was taken.
    Complete,
}

/// A validated eject request.
#[derive(Debug)]
pub struct EjectRequest {
    /// What to do.
    pub action: EjectAction,
    /// Portal client id.
    pub client_id: String,
    /// Portal's wallet id (`GET /api/v3/clients/me` `wallets[].id`).
    pub wallet_id: String,
    /// The client's API key.
    pub api_key: ClientApiKey,
}

/// Whether a direct-invoke payload asks for `eject` or `complete-eject`.
pub fn is_eject(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        action: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(payload).is_ok_and(|p| {
        matches!(p.action, Some(serde_json::Value::String(a)) if a == "eject" || a == "complete-eject")
    })
}

const FIELDS: [&str; 4] = ["action", "clientId", "walletId", "clientApiKey"];

impl EjectRequest {
    /// Parses the request; errors name the field, never a value.
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
            if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
                return Err(bad(unknown, "is not a field of an eject request"));
            }
            let text = |name: &str| match map.get(name) {
                Some(serde_json::Value::String(v)) if !v.is_empty() => Ok(v.clone()),
                None | Some(serde_json::Value::Null) => Err(bad(name, "is required")),
                Some(_) => Err(bad(name, "must be a non-empty string")),
            };
            let action = match text("action")?.as_str() {
                "eject" => EjectAction::Eject,
                "complete-eject" => EjectAction::Complete,
                _ => return Err(bad("action", "must be eject or complete-eject")),
            };
            let client_id = text("clientId")?;
            if !crate::domain::request::valid_client_id(&client_id) {
                return Err(bad("clientId", crate::domain::request::CLIENT_ID_RULE));
            }
            let wallet_id = text("walletId")?;
            crate::domain::model::check_id(&wallet_id).map_err(|p| bad("walletId", p))?;
            Ok(Self {
                action,
                client_id,
                wallet_id,
                api_key: ClientApiKey::new(text("clientApiKey")?),
            })
        })();
        wipe_json(&mut doc);
        result
    }
}

/// What an eject action answers: ids and public values, both halves sealed.
#[derive(Debug, Serialize)]
#[serde(untagged, rename_all = "camelCase")]
pub enum EjectAnswer {
    /// `eject`.
    #[serde(rename_all = "camelCase")]
    Ejectable {
        /// The client.
        client_id: String,
        /// The wallet.
        wallet_id: String,
        /// The wallet's curve, as the custodian half names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        curve: Option<&'static str>,
        /// The backup share pair, as the client half's stored context names it.
        #[serde(skip_serializing_if = "Option::is_none")]
        backup_share_pair_id: Option<String>,
        /// The wallet's address (public).
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// How the custodian half checked against its public values: `proven`, `mismatch` or
        /// `unchecked` (the eject tool checks both halves again, and refuses a mismatch).
        custodian_key_check: &'static str,
        /// Until when Portal lets the halves be fetched.
        ejectable_until: String,
        /// The custodian backup share, sealed under `{clientId, walletId, purpose:
        /// eject-share}` for the recovery role.
        sealed_custodian_backup_share: String,
        /// The client backup share as this stack stored it with Portal (sealed).
        encrypted_client_backup_share: String,
    },
    /// `complete-eject`.
    #[serde(rename_all = "camelCase")]
    Completed {
        /// The client.
        client_id: String,
        /// The wallet.
        wallet_id: String,
        /// Always true.
        completed: bool,
    },
}

/// Portal-managed eject over Portal and the envelope.
#[derive(Debug, Clone)]
pub struct EjectService<P, E> {
    portal: P,
    envelope: E,
    custodian_key: Option<Arc<dyn CustodianKeySource>>,
}

impl<P, E> EjectService<P, E> {
    /// Wires eject to its adapters; without a custodian key source, `eject` is refused.
    pub fn new(portal: P, envelope: E) -> Self {
        Self {
            portal,
            envelope,
            custodian_key: None,
        }
    }

    /// Where the custodian API key comes from (the operator function's secret).
    pub fn with_custodian_key(mut self, source: Arc<dyn CustodianKeySource>) -> Self {
        self.custodian_key = Some(source);
        self
    }
}

/// The `{backupSharePairId, curve}` of a stored client half, from its message's header (public:
/// the encryption context is stored in the clear there).
fn stored_context(cipher_text: &str) -> (Option<String>, Option<String>) {
    let Ok(header) = decode_text(cipher_text).and_then(|m| read_header(&m)) else {
        return (None, None);
    };
    let get = |key: &str| {
        header
            .stored_context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    (get("backupSharePairId"), get("curve"))
}

impl<P: EjectPortal, E: Envelope> EjectService<P, E> {
    /// Runs one eject action.
    pub async fn act(&self, req: &EjectRequest) -> Result<EjectAnswer, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Eject, c);
        if req.action == EjectAction::Complete {
            self.portal
                .complete_eject(&req.api_key, &req.wallet_id)
                .await
                .map_err(|e| step(e.into()))?;
            tracing::warn!(client_id = %req.client_id, wallet_id = %req.wallet_id, "eject completed at Portal");
            return Ok(EjectAnswer::Completed {
                client_id: req.client_id.clone(),
                wallet_id: req.wallet_id.clone(),
                completed: true,
            });
        }
        let source = self
            .custodian_key
            .as_ref()
            .ok_or_else(|| step(Cause::EjectNotConfigured))?;
        let custodian_key = source.custodian_key().await.map_err(|e| step(e.into()))?;
        let until = self
            .portal
            .enable_eject(&custodian_key, &req.client_id, &req.wallet_id)
            .await
            .map_err(|e| step(e.into()))?;
        drop(custodian_key);
        let shares = self
            .portal
            .ejectable_shares(&req.api_key, &req.wallet_id)
            .await
            .map_err(|e| step(e.into()))?;
        let custodian = shares.custodian_backup_share;
        if client_id_in(custodian.expose()).as_deref() != Some(req.client_id.as_str()) {
            return Err(step(Cause::ClientMismatch {
                what: "Portal's custodian backup share",
                client_id: req.client_id.clone(),
            }));
        }
        let (curve, check) = check_custodian(custodian.expose().as_bytes());
        if let Verdict::Mismatch(why) = &check.verdict {
            tracing::error!(client_id = %req.client_id, wallet_id = %req.wallet_id, problem = %why, "KEY_MISMATCH: Portal's custodian backup share does not check against its own public values");
        }
        let context = EncryptionContext::eject_share(&req.client_id, &req.wallet_id);
        let sealed = self
            .envelope
            .seal(&context, custodian.expose().as_bytes())
            .await
            .map_err(|e| step(e.into()))?;
        drop(custodian);
        let (backup_share_pair_id, stored_curve) =
            stored_context(&shares.encrypted_client_backup_share);
        let curve = curve.map(|c| c.as_str()).or_else(|| {
            stored_curve
                .and_then(|c| crate::domain::model::Curve::parse(&c))
                .map(|c| c.as_str())
        });
        tracing::warn!(client_id = %req.client_id, wallet_id = %req.wallet_id, ejectable_until = %until, "eject enabled at Portal; both halves answered sealed");
        Ok(EjectAnswer::Ejectable {
            client_id: req.client_id.clone(),
            wallet_id: req.wallet_id.clone(),
            curve,
            backup_share_pair_id,
            address: check.public.map(|p| p.address),
            custodian_key_check: check.verdict.as_str(),
            ejectable_until: until,
            sealed_custodian_backup_share: sealed,
            encrypted_client_backup_share: shares.encrypted_client_backup_share,
        })
    }
}

#[cfg(test)]
mod tests;
