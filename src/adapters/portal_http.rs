//! Adapter: the `Portal` port over HTTPS (reqwest, rustls): Portal's documented routes and
//! error shapes, classified as transient or permanent.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use tracing::Instrument;

use crate::adapters::portal_budget::PortalBudget;
use crate::domain::model::{Curve, check_id, curve_entries};
use crate::domain::secret::{ClientApiKey, SecretBytes, SecretString, wipe_json};
use crate::domain::share::embedded_pair_id;
use crate::domain::text::truncate;
use crate::ports::portal::{BackupShare, Portal, PortalError};

/// Longest Portal response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Timeouts of the Portal HTTP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// Whole request, connect to last body byte.
    pub request: Duration,
}

/// Builds the one HTTP client of the process: rustls, keep-alive, explicit timeouts.
pub fn http_client(timeouts: HttpTimeouts, https_only: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .https_only(https_only)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("portal-backup/", env!("CARGO_PKG_VERSION")))
        // Mozilla's roots, compiled in: Portal's public CAs are among them, the trust store does
        // not depend on the host image, and cold start skips reading the system's certificate
        // directory (about 3 ms here).
        .tls_certs_only(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        )
        .build()
}

/// The adapter over reqwest.
#[derive(Clone, Debug)]
pub struct HttpPortal {
    http: reqwest::Client,
    mpc_url: String,
    api_url: String,
    /// The stack's Portal budget, when one is kept: every request takes a slot first.
    budget: Option<std::sync::Arc<PortalBudget>>,
}

const BACKUP: &str = "POST /v1/backup";

const RECOVER: &str = "POST /v1/recover";

const STORE: &str = "PATCH /api/v3/clients/me/backup-share-pairs/{id}";

const STORE_POST: &str = "POST /api/v3/clients/me/backup-share-pairs/{id}";

const READ: &str = "GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text";

const MARK: &str = "PATCH /api/v3/clients/me/backup-share-pairs";

impl HttpPortal {
    /// The client API's base URL.
    pub(crate) fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Talks to the Enclave MPC API at `mpc_url` and the client API at `api_url`.
    pub fn new(http: reqwest::Client, mpc_url: &str, api_url: &str) -> Self {
        Self {
            http,
            mpc_url: mpc_url.trim_end_matches('/').to_owned(),
            api_url: api_url.trim_end_matches('/').to_owned(),
            budget: None,
        }
    }

    /// Spends `budget` on every request (each takes a slot of its API first).
    pub fn with_budget(mut self, budget: std::sync::Arc<PortalBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sends one request and reads at most 1 MiB of answer; non-2xx becomes `PortalError::Status`.
    pub(crate) async fn send(
        &self,
        call: &'static str,
        method: Method,
        url: String,
        api_key: &ClientApiKey,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, SecretBytes), PortalError> {
        // The span names the call's route template and its status, never a URL, header or body.
        let span = tracing::info_span!("portal", call, status = tracing::field::Empty);
        self.send_in(call, method, url, api_key, body)
            .instrument(span.clone())
            .await
            .inspect(|(status, _)| {
                span.record("status", status.as_u16());
            })
            .inspect_err(|e| {
                if let Some(status) = e.status() {
                    span.record("status", status);
                }
            })
    }

    async fn send_in(
        &self,
        call: &'static str,
        method: Method,
        url: String,
        api_key: &ClientApiKey,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, SecretBytes), PortalError> {
        if let Some(budget) = &self.budget {
            budget
                .admit(call)
                .instrument(tracing::info_span!("portal_slot", call))
                .await?;
        }
        let mut request = self
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, api_key.bearer_header().as_str())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let transport = |e: reqwest::Error| PortalError::Transport {
            call,
            detail: describe_reqwest(&e),
            timeout: e.is_timeout(),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = SecretBytes::default();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(PortalError::Contract {
                    call,
                    detail: "response is larger than 1 MiB".into(),
                });
            }
            body.expose_mut().extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, body));
        }
        Err(PortalError::Status {
            call,
            status: status.as_u16(),
            error_id: parse_error(body.expose()),
            retry_after,
        })
    }

    fn pair_url(
        &self,
        call: &'static str,
        backup_share_pair_id: &str,
    ) -> Result<String, PortalError> {
        check_id(backup_share_pair_id).map_err(|p| PortalError::Contract {
            call,
            detail: format!("backup share pair id {p}"),
        })?;
        Ok(format!(
            "{}/api/v3/clients/me/backup-share-pairs/{backup_share_pair_id}",
            self.api_url
        ))
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    // The URL names only hosts and pair ids; the source chain says which socket error it was.
    let mut detail = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    truncate(&detail, 300)
}

/// Reads Portal's error id from its three documented error shapes. Only an id-shaped value is
/// kept (`[A-Z0-9_]`, 1 to 64): Portal's message and anything else it sends are dropped, since
/// they may quote the request (signing shares, a backup response).
pub fn parse_error(body: &[u8]) -> Option<String> {
    let doc = serde_json::from_slice::<Value>(body).ok()?;
    let map = doc.as_object()?;
    let id = match map.get("error") {
        Some(Value::Object(inner)) => inner.get("id").or_else(|| inner.get("error")),
        _ => map.get("id"),
    }?
    .as_str()?;
    let id_shaped = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    id_shaped.then(|| id.to_owned())
}

/// Parses a `/v1/backup` answer in any documented form, checking each share names its own id.
pub fn parse_backup_response(body: &[u8]) -> Result<[BackupShare; 2], PortalError> {
    let contract = |detail: String| PortalError::Contract {
        call: BACKUP,
        detail,
    };
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| contract(format!("body is not JSON ({e})")))?;
    let result = backup_shares(&doc).map_err(contract);
    wipe_json(&mut doc);
    result
}

fn backup_shares(doc: &Value) -> Result<[BackupShare; 2], String> {
    let map = doc.as_object().ok_or("body is not a JSON object")?;
    let [a, b] = curve_entries(map, true)?;
    let shares = [
        backup_share(Curve::Secp256k1, a)?,
        backup_share(Curve::Ed25519, b)?,
    ];
    if shares[0].id == shares[1].id {
        return Err("both curves have the same backup share pair id".into());
    }
    Ok(shares)
}

fn backup_share(curve: Curve, entry: &Value) -> Result<BackupShare, String> {
    let share = entry
        .get("share")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let id = entry.get("id").and_then(Value::as_str);
    let (Some(share), Some(id)) = (share, id) else {
        return Err(format!("{curve} lacks a string `share` and `id`"));
    };
    check_id(id).map_err(|p| format!("{curve} id {p}"))?;
    let embedded =
        embedded_pair_id(share).ok_or_else(|| format!("{curve} share is not base64 JSON"))?;
    if embedded.as_deref() != Some(id) {
        return Err(format!(
            "{curve} share does not carry its backup share pair id"
        ));
    }
    Ok(BackupShare {
        curve,
        id: id.to_owned(),
        share: SecretString::new(share.to_owned()),
    })
}

impl Portal for HttpPortal {
    async fn backup(
        &self,
        api_key: &ClientApiKey,
        generate_response: &SecretString,
    ) -> Result<[BackupShare; 2], PortalError> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            generate_response: &'a str,
        }
        let body = Body {
            generate_response: generate_response.expose(),
        };
        // reqwest owns the request body and cannot wipe it: the one unwiped copy of the signing
        // shares in this process (besides the SDK's and hyper's buffers); see the README.
        let bytes = serde_json::to_vec(&body).map_err(|e| PortalError::Contract {
            call: BACKUP,
            detail: format!("request could not be encoded ({e})"),
        })?;
        let url = format!("{}/v1/backup", self.mpc_url);
        let (_, answer) = self
            .send(BACKUP, Method::POST, url, api_key, Some(bytes))
            .await?;
        parse_backup_response(answer.expose())
    }

    async fn recover(
        &self,
        api_key: &ClientApiKey,
        backup_response: &SecretString,
    ) -> Result<SecretString, PortalError> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            backup_response: &'a str,
        }
        // As with /v1/backup, reqwest owns the body it sends and cannot wipe it.
        let bytes = serde_json::to_vec(&Body {
            backup_response: backup_response.expose(),
        })
        .map_err(|e| PortalError::Contract {
            call: RECOVER,
            detail: format!("request could not be encoded ({e})"),
        })?;
        let url = format!("{}/v1/recover", self.mpc_url);
        let (_, answer) = self
            .send(RECOVER, Method::POST, url, api_key, Some(bytes))
            .await?;
        let text =
            String::from_utf8(answer.expose().to_vec()).map_err(|_| PortalError::Contract {
                call: RECOVER,
                detail: "body is not UTF-8".into(),
            })?;
        Ok(SecretString::new(text))
    }

    async fn store_cipher_text(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_id: &str,
        cipher_text: &str,
    ) -> Result<(), PortalError> {
        let url = self.pair_url(STORE, backup_share_pair_id)?;
        let body = serde_json::to_vec(&serde_json::json!({ "clientCipherText": cipher_text }))
            .unwrap_or_default();
        // The reference uses PATCH; the seed guide POST. Send PATCH, and POST only if PATCH is
        // refused as a method (405), so either deployment of Portal works.
        match self
            .send(
                STORE,
                Method::PATCH,
                url.clone(),
                api_key,
                Some(body.clone()),
            )
            .await
        {
            Err(PortalError::Status { status: 405, .. }) => {
                self.send(STORE_POST, Method::POST, url, api_key, Some(body))
                    .await?;
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    async fn cipher_text(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_id: &str,
    ) -> Result<String, PortalError> {
        let url = format!("{}/cipher-text", self.pair_url(READ, backup_share_pair_id)?);
        let (_, body) = self.send(READ, Method::GET, url, api_key, None).await?;
        let doc: Value =
            serde_json::from_slice(body.expose()).map_err(|e| PortalError::Contract {
                call: READ,
                detail: format!("body is not JSON ({e})"),
            })?;
        match doc.get("cipherText") {
            Some(Value::String(ct)) => Ok(ct.clone()),
            _ => Err(PortalError::Contract {
                call: READ,
                detail: "body lacks a string `cipherText`".into(),
            }),
        }
    }

    async fn mark_stored(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_ids: &[String],
    ) -> Result<(), PortalError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "status": "STORED_CLIENT_BACKUP_SHARE",
            "backupSharePairIds": backup_share_pair_ids,
        }))
        .unwrap_or_default();
        let url = format!("{}/api/v3/clients/me/backup-share-pairs", self.api_url);
        self.send(MARK, Method::PATCH, url, api_key, Some(body))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::share::SHARE_B64;
    use base64::Engine as _;
    use serde_json::json;

    fn share(id: &str) -> String {
        SHARE_B64.encode(json!({"backupSharePairId": id, "share": "s3cr3t"}).to_string())
    }

    #[test]
    fn parses_every_documented_backup_form() {
        for (a, b) in [
            ("SECP256K1", "ED25519"),
            ("secp256k1", "ed25519"),
            ("secp256k1Share", "ed25519Share"),
        ] {
            let body = json!({a: {"share": share("b1"), "id": "b1"}, b: {"share": share("b2"), "id": "b2"}});
            let [s, e] = parse_backup_response(body.to_string().as_bytes()).unwrap();
            assert_eq!((s.curve, s.id.as_str()), (Curve::Secp256k1, "b1"));
            assert_eq!((e.curve, e.id.as_str()), (Curve::Ed25519, "b2"));
        }
    }

    #[test]
    fn refuses_answers_outside_the_contract_without_echoing_shares() {
        let cases = [
            json!({"SECP256K1": {"share": share("b1"), "id": "b1"}}),
            json!({"SECP256K1": {"share": share("b1"), "id": "b1"}, "ED25519": {"share": share("b1"), "id": "b2"}}),
            json!({"SECP256K1": {"share": "bm90IGpzb24=", "id": "b1"}, "ED25519": {"share": share("b2"), "id": "b2"}}),
            json!({"SECP256K1": {"share": share("b1"), "id": "../b1"}, "ED25519": {"share": share("b2"), "id": "b2"}}),
            json!([1, 2]),
        ];
        for body in cases {
            let err = parse_backup_response(body.to_string().as_bytes()).unwrap_err();
            assert!(!err.is_transient());
            assert!(!err.to_string().contains("s3cr3t"));
        }
    }

    #[test]
    fn keeps_only_portals_error_id_from_each_shape() {
        assert_eq!(parse_error(br#""Authorization header is missing""#), None);
        assert_eq!(
            parse_error(br#"{"id":"BAD_REQUEST","message":"share eyJzZWNyZXQ"}"#),
            Some("BAD_REQUEST".into())
        );
        assert_eq!(
            parse_error(br#"{"error":{"id":"WEBHOOK_FAILED","message":"m","code":0}}"#),
            Some("WEBHOOK_FAILED".into())
        );
        assert_eq!(
            parse_error(br#"{"error":{"code":211,"error":"SIGNING_NETWORK_ERROR","message":"m"}}"#),
            Some("SIGNING_NETWORK_ERROR".into())
        );
        // Anything that is not id-shaped may quote the request: dropped.
        assert_eq!(parse_error(br#"{"id":"bad share: eyJzZWNyZXQ"}"#), None);
        assert_eq!(parse_error(b"<html>"), None);
        let err = PortalError::Status {
            call: BACKUP,
            status: 400,
            error_id: parse_error(br#"{"id":"BAD_REQUEST","message":"s3cr3t"}"#),
            retry_after: None,
        };
        let text = err.to_string();
        assert!(
            text.contains("HTTP 400 BAD_REQUEST") && !text.contains("s3cr3t"),
            "{text}"
        );
    }

    #[test]
    fn classifies_statuses() {
        let status = |s| PortalError::Status {
            call: BACKUP,
            status: s,
            error_id: None,
            retry_after: None,
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(status(408).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(401).is_transient());
        assert!(status(401).to_string().contains("client API key"));
    }
}
