//! Portal-managed eject over HTTP: the three endpoints of Portal's eject guide, on the client
//! API, through the same client (timeouts, 1 MiB answers, Portal's error ids only) as the rest.

use reqwest::Method;
use serde_json::Value;

use crate::adapters::portal_http::HttpPortal;
use crate::domain::model::check_id;
use crate::domain::secret::{ClientApiKey, SecretString, wipe_json};
use crate::ports::eject::{EjectPortal, EjectableShares};
use crate::ports::portal::PortalError;

const ENABLE: &str = "PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject";

const SHARES: &str = "GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares";

const COMPLETE: &str = "PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject";

fn checked(call: &'static str, what: &str, id: &str) -> Result<(), PortalError> {
    check_id(id).map_err(|p| PortalError::Contract {
        call,
        detail: format!("{what} {p}"),
    })
}

fn json(call: &'static str, body: &[u8]) -> Result<Value, PortalError> {
    serde_json::from_slice(body).map_err(|e| PortalError::Contract {
        call,
        detail: format!("body is not JSON ({e})"),
    })
}

impl EjectPortal for HttpPortal {
    async fn enable_eject(
        &self,
        custodian_key: &ClientApiKey,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<String, PortalError> {
        checked(ENABLE, "client id", client_id)?;
        checked(ENABLE, "wallet id", wallet_id)?;
        let url = format!(
            "{}/api/v3/custodians/me/clients/{client_id}/enable-eject",
            self.api_url()
        );
        let body =
            serde_json::to_vec(&serde_json::json!({ "walletId": wallet_id })).unwrap_or_default();
        let (_, answer) = self
            .send(ENABLE, Method::PATCH, url, custodian_key, Some(body))
            .await?;
        match json(ENABLE, answer.expose())?.get("ejectableUntil") {
            Some(Value::String(until)) => Ok(until.clone()),
            _ => Err(PortalError::Contract {
                call: ENABLE,
                detail: "body lacks a string `ejectableUntil`".into(),
            }),
        }
    }

    async fn ejectable_shares(
        &self,
        client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> Result<EjectableShares, PortalError> {
        checked(SHARES, "wallet id", wallet_id)?;
        let url = format!(
            "{}/api/v3/clients/me/wallets/{wallet_id}/ejectable-backup-shares",
            self.api_url()
        );
        let (_, answer) = self
            .send(SHARES, Method::GET, url, client_key, None)
            .await?;
        let mut doc = json(SHARES, answer.expose())?;
        let text = |doc: &Value, key: &str| match doc.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let (custodian, client) = (
            text(&doc, "custodianBackupShare"),
            text(&doc, "encryptedClientBackupShare"),
        );
        wipe_json(&mut doc);
        match (custodian, client) {
            (Some(custodian), Some(client)) => Ok(EjectableShares {
                custodian_backup_share: SecretString::new(custodian),
                encrypted_client_backup_share: client,
            }),
            _ => Err(PortalError::Contract {
                call: SHARES,
                detail:
                    "body lacks a string `custodianBackupShare` or `encryptedClientBackupShare`"
                        .into(),
            }),
        }
    }

    async fn complete_eject(
        &self,
        client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> Result<(), PortalError> {
        checked(COMPLETE, "wallet id", wallet_id)?;
        let url = format!(
            "{}/api/v3/clients/me/wallets/{wallet_id}/complete-eject",
            self.api_url()
        );
        self.send(
            COMPLETE,
            Method::PATCH,
            url,
            client_key,
            Some(b"{}".to_vec()),
        )
        .await?;
        Ok(())
    }
}
