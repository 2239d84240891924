//! The simulator's admin API under `/_sim/` (no auth): clients, faults, knobs, inspection.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::Sim;
use super::reject::{Reject, bad_request, portal_error};
use super::state::{Fault, ResponseForm, Route};

/// Parses an admin request body into `T`, or answers 400.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("Invalid admin request: {e}")))
}

/// Body of `POST /_sim/clients`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientRequest {
    api_key: String,
    client_id: String,
}

/// `POST /_sim/clients`: registers (or re-points) an API key.
pub(crate) async fn add_client(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    let request: ClientRequest = parse(&body)?;
    if request.api_key.is_empty() || request.client_id.is_empty() {
        return Err(bad_request("apiKey and clientId must not be empty"));
    }
    sim.lock()
        .clients
        .insert(request.api_key, request.client_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /_sim/custodians`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CustodianRequest {
    api_key: String,
}

/// `POST /_sim/custodians`: registers a custodian API key (Portal-managed eject's
/// `enable-eject`; the custodian acts for every client).
pub(crate) async fn add_custodian(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    let request: CustodianRequest = parse(&body)?;
    if request.api_key.is_empty() {
        return Err(bad_request("apiKey must not be empty"));
    }
    sim.lock().custodians.insert(request.api_key);
    Ok(StatusCode::NO_CONTENT)
}

fn one() -> u32 {
    1
}

fn service_unavailable() -> u16 {
    503
}

/// Body of `POST /_sim/faults`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    route: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "service_unavailable")]
    status: u16,
    retry_after: Option<u64>,
    #[serde(default)]
    hang: bool,
    body: Option<Value>,
}

/// `POST /_sim/faults`: queues a fault for the next `count` calls of a route.
pub(crate) async fn add_fault(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    let request: FaultRequest = parse(&body)?;
    let Some(route) = Route::from_name(&request.route) else {
        let names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
        let message = format!("route must be one of {}", names.join(", "));
        return Err(bad_request(message));
    };
    if request.count == 0 {
        return Err(bad_request("count must be at least 1"));
    }
    if StatusCode::from_u16(request.status).is_err() {
        return Err(bad_request("status must be a valid HTTP status code"));
    }
    let fault = Fault {
        remaining: request.count,
        status: request.status,
        retry_after: request.retry_after,
        hang: request.hang,
        body: request.body,
    };
    sim.lock().faults.entry(route).or_default().push_back(fault);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /_sim/config`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigRequest {
    latency_ms: Option<u64>,
    response_form: Option<String>,
    patch_allowed: Option<bool>,
    post_allowed: Option<bool>,
    /// Portal's Enclave MPC API limit per 60 s (0: none).
    mpc_rate_per_minute: Option<u32>,
    /// Portal's client API limit per 60 s (0: none).
    api_rate_per_minute: Option<u32>,
}

/// `POST /_sim/config`: changes the given knobs, leaves the others.
pub(crate) async fn set_config(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<StatusCode, Reject> {
    let request: ConfigRequest = parse(&body)?;
    let form = match request.response_form.as_deref() {
        None => None,
        Some(name) => Some(
            ResponseForm::from_name(name)
                .ok_or_else(|| bad_request("responseForm must be one of upper, lower, seed"))?,
        ),
    };
    let mut inner = sim.lock();
    if let Some(n) = request.mpc_rate_per_minute {
        inner.limits[0].set(n);
    }
    if let Some(n) = request.api_rate_per_minute {
        inner.limits[1].set(n);
    }
    let config = &mut inner.config;
    if let Some(ms) = request.latency_ms {
        config.latency = Duration::from_millis(ms);
    }
    if let Some(form) = form {
        config.response_form = form;
    }
    if let Some(allowed) = request.patch_allowed {
        config.patch_allowed = allowed;
    }
    if let Some(allowed) = request.post_allowed {
        config.post_allowed = allowed;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /_sim/state`: every pair, the call counters and the custodian shares sent to webhooks.
pub(crate) async fn state(State(sim): State<Arc<Sim>>) -> Response {
    let inner = sim.lock();
    let pairs: Vec<Value> = inner.pairs.iter().map(|p| p.to_json()).collect();
    let calls: Map<String, Value> = inner
        .calls
        .iter()
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    let custodian: Vec<Value> = inner
        .custodian_sent
        .iter()
        .map(|(client, pair, share)| json!({"clientId": client, "backupSharePairId": pair, "share": share}))
        .collect();
    let limits = json!({"mpc": inner.limits[0].to_json(), "client": inner.limits[1].to_json()});
    Json(
        json!({"pairs": pairs, "calls": calls, "custodianShares": custodian, "rateLimits": limits}),
    )
    .into_response()
}

/// `GET /_sim/pairs/{id}`: one pair, or 404.
pub(crate) async fn pair(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match sim.lock().pair(&id) {
        Some(pair) => Json(pair.to_json()).into_response(),
        None => {
            portal_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Share pair not found").into_response()
        }
    }
}

/// `POST /_sim/reset`: clears pairs, calls, faults and knobs (keeps clients and the demo pairs).
pub(crate) async fn reset(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.lock().reset();
    StatusCode::NO_CONTENT
}
