//! Self-managed custody as Portal runs it: during `/v1/backup`, the simulator POSTs each custodian
//! backup share to the customer's `{url}/backup` with `X-Webhook-Secret`, then fetches them back
//! from `{url}/backup/fetch` and checks every share it sent is there.
//!
//! Set with `POST /_sim/webhook {"url", "secret", "clientId"?}` (a client's own target wins over
//! the global one; `"url": null` switches it off). Counters: `webhook-backup`, `webhook-fetch`,
//! `webhook-failed` in `GET /_sim/state`'s `calls`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Sim;
use super::reject::{Reject, bad_request};

/// Portal's limit for each webhook call.
pub(crate) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Portal sends a client's custodian shares.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebhookTarget {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// The `X-Webhook-Secret` value.
    pub secret: String,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookTarget({}, [redacted])", self.url)
    }
}

/// Body of `POST /_sim/webhook`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookRequest {
    url: Option<String>,
    #[serde(default)]
    secret: String,
    client_id: Option<String>,
}

/// `POST /_sim/webhook`: sets (or, with `"url": null`, clears) the global or a client's target.
pub(crate) async fn set_webhook(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    let request: WebhookRequest = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Invalid admin request: {e}")))?;
    let target = match request.url {
        None => None,
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(WebhookTarget {
                url: url.trim_end_matches('/').to_owned(),
                secret: request.secret,
            })
        }
        Some(_) => return Err(bad_request("url must be http:// or https://")),
    };
    let mut inner = sim.lock();
    let config = &mut inner.config;
    match (request.client_id, target) {
        (None, target) => config.webhook = target,
        (Some(client), Some(target)) => {
            config.client_webhooks.insert(client, target);
        }
        (Some(client), None) => {
            config.client_webhooks.remove(&client);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Why a delivery failed (a message for Portal's error body; never the secret or a share).
pub(crate) type Failure = String;

/// Sends each `(backupSharePairId, share)` to `{url}/backup`, then checks `{url}/backup/fetch`
/// returns every one of them.
pub(crate) async fn deliver(
    sim: &Sim,
    target: &WebhookTarget,
    client_id: &str,
    shares: &[(String, String)],
) -> Result<(), Failure> {
    for (pair_id, share) in shares {
        sim.lock().count("webhook-backup");
        let body = json!({"clientId": client_id, "backupMethod": "CUSTOM", "share": share,
                          "backupSharePairId": pair_id});
        post(sim, target, "/backup", &body).await?;
    }
    sim.lock().count("webhook-fetch");
    let answer = post(
        sim,
        target,
        "/backup/fetch",
        &json!({"clientId": client_id}),
    )
    .await?;
    let stored: Vec<&str> = answer["backupShares"]
        .as_array()
        .ok_or("Webhook /backup/fetch answered without backupShares")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match shares.iter().find(|(_, s)| !stored.contains(&s.as_str())) {
        Some((pair_id, _)) => Err(format!(
            "Webhook /backup/fetch did not return the share of backup share pair {pair_id}"
        )),
        None => Ok(()),
    }
}

async fn post(
    sim: &Sim,
    target: &WebhookTarget,
    path: &str,
    body: &Value,
) -> Result<Value, Failure> {
    let response = sim
        .http
        .post(format!("{}{path}", target.url))
        .header("X-Webhook-Secret", &target.secret)
        .timeout(WEBHOOK_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else {
                "was unreachable"
            };
            format!("Webhook {path} {why}")
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("Webhook {path} answered {}", status.as_u16()));
    }
    let text = response.text().await.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|_| format!("Webhook {path} answered a body that is not JSON"))
}
