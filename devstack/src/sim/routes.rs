//! Portal API handlers: the Enclave MPC API (`/v1/…`) and the client API (`/api/v3/…`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Sim;
use super::reject::{Reject, bad_request, error_body, portal_error};
use super::state::{Curve, Fault, Issued, Kind, Pair, ResponseForm, Route, SimError, curve_keyed};
use super::time::rfc3339;

/// How long a `hang` fault keeps the request open (effectively forever for a client).
const HANG: Duration = Duration::from_secs(24 * 3600);

/// Result of a Portal route.
type Outcome = Result<Response, Reject>;

/// 500 for a failure of the simulator itself.
fn internal(error: &SimError) -> Reject {
    tracing::error!(%error, "simulator failure");
    portal_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "Simulator failure",
    )
}

fn share_parsing_failed(message: impl Into<String>) -> Reject {
    portal_error(StatusCode::BAD_REQUEST, "SHARE_PARSING_FAILED", message)
}

fn pair_not_found() -> Reject {
    portal_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Backup share pair not found",
    )
}

/// Default body of a fault with `status`.
fn default_fault_body(status: StatusCode) -> Value {
    let (id, message) = match status.as_u16() {
        400 => ("BAD_REQUEST", "Bad request"),
        401 => ("AUTH_FAILED", "Invalid API key"),
        403 => ("FORBIDDEN", "Forbidden"),
        404 => ("NOT_FOUND", "Not found"),
        409 => ("OPERATION_IN_PROGRESS", "Another operation is in progress"),
        429 => ("RATE_LIMITED", "Too many requests"),
        502 => ("BAD_GATEWAY", "Bad gateway"),
        503 => ("SERVICE_UNAVAILABLE", "Service unavailable"),
        504 => ("GATEWAY_TIMEOUT", "Gateway timeout"),
        500..=599 => ("INTERNAL_ERROR", "Internal server error"),
        _ => ("ERROR", "Simulated error"),
    };
    error_body(status, id, message)
}

/// Answers a request hit by `fault`.
pub(crate) async fn fault_response(fault: Fault) -> Response {
    if fault.hang {
        tokio::time::sleep(HANG).await;
    }
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = fault.body.unwrap_or_else(|| default_fault_body(status));
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Counts the call, holds Portal's rate limit, and applies the configured latency.
pub(crate) async fn arrive(sim: &Sim, route: Route) -> Result<(), Reject> {
    let arrived = sim.lock().arrive(route);
    match arrived {
        Ok(latency) => {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(())
        }
        Err(retry_after) => {
            let mut response = portal_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            Err(response.into())
        }
    }
}

/// Authenticates the caller, then applies a queued fault; returns the client id.
async fn admit(sim: &Sim, route: Route, headers: &HeaderMap) -> Result<String, Reject> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let body = Json("Authorization header is missing");
        return Err((StatusCode::UNAUTHORIZED, body).into_response().into());
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    let (client, fault) = {
        let mut inner = sim.lock();
        let Some(client) = inner.clients.get(token).cloned() else {
            return Err(portal_error(
                StatusCode::UNAUTHORIZED,
                "AUTH_FAILED",
                "Invalid API key",
            ));
        };
        (client, inner.take_fault(route))
    };
    match fault {
        Some(fault) => Err(fault_response(fault).await.into()),
        None => Ok(client),
    }
}

/// [`arrive`] then [`admit`].
pub(crate) async fn enter(sim: &Sim, route: Route, headers: &HeaderMap) -> Result<String, Reject> {
    arrive(sim, route).await?;
    admit(sim, route, headers).await
}

/// Parses `body` as a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Reject> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("Request body must be a JSON object")),
        Err(e) => Err(bad_request(format!("Request body is not valid JSON: {e}"))),
    }
}

/// The non-empty string `field` of the JSON object in `body`.
pub(crate) fn string_field(body: &[u8], field: &str) -> Result<String, Reject> {
    let map = json_object(body)?;
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(bad_request(format!("{field} must not be empty"))),
        Some(_) => Err(bad_request(format!("{field} must be a string"))),
        None => Err(bad_request(format!("{field} is required"))),
    }
}

/// Parses a curve-keyed document (`{CURVE: {"share","id"}}`) in any of `forms`.
fn parse_curve_keyed(
    text: &str,
    field: &str,
    forms: &[ResponseForm],
) -> Result<[Issued; 2], Reject> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| bad_request(format!("{field} is not valid JSON: {e}")))?;
    let Value::Object(map) = doc else {
        return Err(bad_request(format!("{field} must be a JSON object")));
    };
    let parse = |curve: Curve| -> Result<Issued, Reject> {
        let item = forms
            .iter()
            .find_map(|form| map.get(form.key(curve)))
            .ok_or_else(|| bad_request(format!("{field} lacks {}", curve.as_str())))?;
        let text_of = |key: &str| match item.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad_request(format!(
                "{field}.{} lacks {key}",
                curve.as_str()
            ))),
        };
        Ok(Issued {
            share: text_of("share")?,
            id: text_of("id")?,
        })
    };
    Ok([parse(Curve::Secp256k1)?, parse(Curve::Ed25519)?])
}

/// Looks up the pair `claimed` names for `curve` and checks kind, owner, curve and share
/// (and, for a backup pair, that it is completed).
fn verified_pair(
    sim: &Sim,
    client: &str,
    curve: Curve,
    kind: Kind,
    claimed: &Issued,
) -> Result<Pair, Reject> {
    let inner = sim.lock();
    let what = match kind {
        Kind::Signing => "signing",
        Kind::Backup => "backup",
    };
    let pair = inner
        .pair(&claimed.id)
        .filter(|p| p.kind == kind && p.client_id == client && p.curve == curve)
        .ok_or_else(|| {
            share_parsing_failed(format!(
                "Unknown {} {what} share pair {}",
                curve.as_str(),
                claimed.id
            ))
        })?;
    if pair.share != claimed.share {
        return Err(share_parsing_failed(format!(
            "The {} {what} share does not match share pair {}",
            curve.as_str(),
            claimed.id
        )));
    }
    if kind == Kind::Backup && pair.status != "completed" {
        return Err(share_parsing_failed(format!(
            "Backup share pair {} is not completed",
            claimed.id
        )));
    }
    Ok(pair.clone())
}

/// `POST /v1/generate`.
pub(crate) async fn generate(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Outcome {
    let client = enter(&sim, Route::Generate, &headers).await?;
    let issued = sim
        .lock()
        .issue_signing(&client, None)
        .map_err(|e| internal(&e))?;
    Ok(Json(curve_keyed(ResponseForm::Upper, &issued)).into_response())
}

/// `POST /v1/backup`.
pub(crate) async fn backup(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    let client = enter(&sim, Route::Backup, &headers).await?;
    let text = string_field(&body, "generateResponse")?;
    let forms = [ResponseForm::Upper, ResponseForm::Lower];
    let [secp, ed] = parse_curve_keyed(&text, "generateResponse", &forms)?;
    let signing = [
        verified_pair(&sim, &client, Curve::Secp256k1, Kind::Signing, &secp)?,
        verified_pair(&sim, &client, Curve::Ed25519, Kind::Signing, &ed)?,
    ];
    let (form, issued, custody) = {
        let mut inner = sim.lock();
        let form = inner.config.response_form;
        let issued = inner
            .issue_backup(&client, signing)
            .map_err(|e| internal(&e))?;
        let custody = match inner.webhook_for(&client) {
            None => None,
            Some(target) => {
                let mut shares = Vec::new();
                for pair in &issued {
                    if let Some(share) = inner.custodian_share(&pair.id) {
                        shares.push((pair.id.clone(), share));
                    }
                }
                Some((target, shares))
            }
        };
        (form, issued, custody)
    };
    // Self-managed custody: Portal answers only once the customer's webhooks stored the shares.
    if let Some((target, shares)) = custody {
        if let Err(message) = super::webhook::deliver(&sim, &target, &client, &shares).await {
            let mut inner = sim.lock();
            inner.count("webhook-failed");
            let ids: Vec<String> = issued.iter().map(|p| p.id.clone()).collect();
            inner.drop_pairs(&ids);
            // 502: the backup failed upstream of Portal (the customer's webhook), not because of
            // the request; a caller may retry (the function treats 5xx as transient, so the SQS
            // message comes back).
            return Err(portal_error(
                StatusCode::BAD_GATEWAY,
                "WEBHOOK_FAILED",
                message,
            ));
        }
        let mut inner = sim.lock();
        for (pair_id, share) in shares {
            inner.custodian_sent.push((client.clone(), pair_id, share));
        }
    }
    Ok(Json(curve_keyed(form, &issued)).into_response())
}

/// `POST /v1/recover`.
pub(crate) async fn recover(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    let client = enter(&sim, Route::Recover, &headers).await?;
    let text = string_field(&body, "backupResponse")?;
    let forms = [ResponseForm::Upper, ResponseForm::Lower, ResponseForm::Seed];
    let [secp, ed] = parse_curve_keyed(&text, "backupResponse", &forms)?;
    // Recover re-shares the backed-up wallets' keys: new signing shares, the same wallets.
    let wallets = [
        verified_pair(&sim, &client, Curve::Secp256k1, Kind::Backup, &secp)?.wallet,
        verified_pair(&sim, &client, Curve::Ed25519, Kind::Backup, &ed)?.wallet,
    ];
    let issued = sim
        .lock()
        .issue_signing(&client, Some(wallets))
        .map_err(|e| internal(&e))?;
    Ok(Json(curve_keyed(ResponseForm::Upper, &issued)).into_response())
}

/// 405 for a store-cipher-text method switched off by a knob, with `Allow` listing the others.
fn method_not_allowed(method: &Method, patch_allowed: bool, post_allowed: bool) -> Reject {
    let allow: Vec<&str> = [("PATCH", patch_allowed), ("POST", post_allowed)]
        .into_iter()
        .filter_map(|(name, allowed)| allowed.then_some(name))
        .collect();
    let mut response = portal_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on this route"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response.into()
}

/// `PATCH` (reference) or `POST` (seed guide) `/api/v3/clients/me/backup-share-pairs/{id}`.
pub(crate) async fn store_cipher_text(
    State(sim): State<Arc<Sim>>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    arrive(&sim, Route::StoreCipherText).await?;
    let (patch_allowed, post_allowed) = {
        let inner = sim.lock();
        (inner.config.patch_allowed, inner.config.post_allowed)
    };
    let allowed = if method == Method::POST {
        post_allowed
    } else {
        patch_allowed
    };
    if !allowed {
        return Err(method_not_allowed(&method, patch_allowed, post_allowed));
    }
    let client = admit(&sim, Route::StoreCipherText, &headers).await?;
    let cipher_text = string_field(&body, "clientCipherText")?;
    let mut inner = sim.lock();
    let pair = inner
        .backup_pair_mut(&client, &id)
        .ok_or_else(pair_not_found)?;
    pair.client_cipher_text = Some(cipher_text);
    Ok(Json(json!({})).into_response())
}

/// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`.
pub(crate) async fn get_cipher_text(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Outcome {
    let client = enter(&sim, Route::GetCipherText, &headers).await?;
    let mut inner = sim.lock();
    let pair = inner
        .backup_pair_mut(&client, &id)
        .ok_or_else(pair_not_found)?;
    match &pair.client_cipher_text {
        Some(cipher_text) => Ok(Json(json!({"cipherText": cipher_text})).into_response()),
        None => Err(portal_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No client cipher text stored for this backup share pair",
        )),
    }
}

/// `PATCH /api/v3/clients/me/backup-share-pairs`.
pub(crate) async fn mark_stored(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    const STATUSES: [&str; 2] = [
        "STORED_CLIENT_BACKUP_SHARE",
        "STORED_CLIENT_BACKUP_SHARE_KEY",
    ];
    let client = enter(&sim, Route::MarkStored, &headers).await?;
    let map = json_object(&body)?;
    match map.get("status") {
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => {}
        _ => {
            let message = format!("status must be one of {}", STATUSES.join(", "));
            return Err(bad_request(message));
        }
    }
    let ids: Vec<&str> = match map.get("backupSharePairIds") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad_request("backupSharePairIds must hold non-empty strings"))?,
        _ => return Err(bad_request("backupSharePairIds must be a non-empty array")),
    };
    let mut inner = sim.lock();
    if ids
        .iter()
        .any(|id| inner.backup_pair_mut(&client, id).is_none())
    {
        return Err(pair_not_found());
    }
    for id in ids {
        if let Some(pair) = inner.backup_pair_mut(&client, id) {
            pair.status = "completed";
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v3/clients/me`: the client's wallets (`id`, `curve`) in creation order, each with
/// its signing and backup share pairs.
pub(crate) async fn me(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Outcome {
    let client = enter(&sim, Route::Me, &headers).await?;
    let inner = sim.lock();
    let mut wallet_ids: Vec<&str> = Vec::new();
    for p in inner.pairs.iter().filter(|p| p.client_id == client) {
        if !wallet_ids.contains(&p.wallet.id.as_str()) {
            wallet_ids.push(&p.wallet.id);
        }
    }
    let wallets: Vec<Value> = wallet_ids
        .into_iter()
        .filter_map(|wallet_id| {
            let pairs: Vec<&Pair> = inner
                .pairs
                .iter()
                .filter(|p| p.client_id == client && p.wallet.id == wallet_id)
                .collect();
            let curve = pairs.first()?.curve;
            let summaries = |kind: Kind| -> Vec<Value> {
                pairs
                    .iter()
                    .filter(|p| p.kind == kind)
                    .map(|p| {
                        let mut summary = json!({
                            "id": p.id,
                            "status": p.status,
                            "createdAt": rfc3339(p.created_at),
                        });
                        if kind == Kind::Backup {
                            summary["backupMethod"] = json!(p.backup_method);
                        }
                        summary
                    })
                    .collect()
            };
            Some(json!({
                "id": wallet_id,
                "curve": curve.as_str(),
                "signingSharePairs": summaries(Kind::Signing),
                "backupSharePairs": summaries(Kind::Backup),
            }))
        })
        .collect();
    Ok(Json(json!({"id": client, "wallets": wallets})).into_response())
}

/// Any unknown route: 404 (with the configured latency outside the admin API).
pub(crate) async fn not_found(State(sim): State<Arc<Sim>>, uri: Uri) -> Reject {
    if !uri.path().starts_with("/_sim/") {
        let latency = sim.lock().config.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
    portal_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Route not found")
}
