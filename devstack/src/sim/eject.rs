//! Portal-managed eject, as Portal serves it: the custodian enables eject for one wallet of a
//! client (`PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject`, custodian API key,
//! five minutes), the client fetches both halves of the wallet's newest stored backup
//! (`GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares`: the custodian backup
//! share and the client cipher text it stored), and says it is done
//! (`PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Sim;
use super::reject::{Reject, portal_error};
use super::routes::{arrive, enter, fault_response, string_field};
use super::state::{Eject, Kind, Route};
use super::time::rfc3339;

/// How long an enabled eject lasts (Portal: five minutes).
const EJECT_WINDOW: Duration = Duration::from_secs(300);

type Outcome = Result<Response, Reject>;

fn wallet_not_found() -> Reject {
    portal_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Wallet not found")
}

/// The custodian's bearer token, checked against the custodian keys; then a queued fault.
async fn admit_custodian(sim: &Sim, route: Route, headers: &HeaderMap) -> Result<(), Reject> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .unwrap_or_default();
    let fault = {
        let mut inner = sim.lock();
        if !inner.custodians.contains(&token) {
            return Err(portal_error(
                StatusCode::UNAUTHORIZED,
                "AUTH_FAILED",
                "Invalid custodian API key",
            ));
        }
        inner.take_fault(route)
    };
    match fault {
        Some(fault) => Err(fault_response(fault).await.into()),
        None => Ok(()),
    }
}

/// Whether `wallet_id` is a wallet of `client`.
fn owns(sim: &Sim, client: &str, wallet_id: &str) -> bool {
    sim.lock()
        .pairs
        .iter()
        .any(|p| p.client_id == client && p.wallet.id == wallet_id)
}

/// `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject` `{"walletId"}`.
pub(crate) async fn enable_eject(
    State(sim): State<Arc<Sim>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Outcome {
    arrive(&sim, Route::EnableEject).await?;
    admit_custodian(&sim, Route::EnableEject, &headers).await?;
    let wallet_id = string_field(&body, "walletId")?;
    if !owns(&sim, &client_id, &wallet_id) {
        return Err(wallet_not_found());
    }
    if sim
        .lock()
        .ejects
        .get(&wallet_id)
        .is_some_and(|e| e.completed)
    {
        return Err(portal_error(
            StatusCode::CONFLICT,
            "EJECT_COMPLETED",
            "This wallet was already ejected",
        ));
    }
    let until = SystemTime::now() + EJECT_WINDOW;
    sim.lock().ejects.insert(
        wallet_id,
        Eject {
            until,
            completed: false,
        },
    );
    Ok(Json(json!({"ejectableUntil": rfc3339(until)})).into_response())
}

/// The wallet's eject, if it is enabled now and not completed.
fn enabled(sim: &Sim, wallet_id: &str) -> Result<(), Reject> {
    let inner = sim.lock();
    match inner.ejects.get(wallet_id) {
        Some(e) if e.completed => Err(portal_error(
            StatusCode::CONFLICT,
            "EJECT_COMPLETED",
            "This wallet was already ejected",
        )),
        Some(e) if e.until > SystemTime::now() => Ok(()),
        _ => Err(portal_error(
            StatusCode::FORBIDDEN,
            "EJECT_NOT_ENABLED",
            "Eject is not enabled for this wallet: the custodian must enable it first",
        )),
    }
}

/// `GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares`.
pub(crate) async fn ejectable_backup_shares(
    State(sim): State<Arc<Sim>>,
    Path(wallet_id): Path<String>,
    headers: HeaderMap,
) -> Outcome {
    let client = enter(&sim, Route::EjectableShares, &headers).await?;
    if !owns(&sim, &client, &wallet_id) {
        return Err(wallet_not_found());
    }
    enabled(&sim, &wallet_id)?;
    let inner = sim.lock();
    // The newest backup Portal holds both halves of: stored, with the client's cipher text.
    let pair = inner
        .pairs
        .iter()
        .rev()
        .find(|p| {
            p.kind == Kind::Backup
                && p.client_id == client
                && p.wallet.id == wallet_id
                && p.status == "completed"
                && p.client_cipher_text.is_some()
        })
        .ok_or_else(|| {
            portal_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "No Portal-managed backup is stored for this wallet",
            )
        })?;
    Ok(Json(json!({
        "custodianBackupShare": pair.custodian_share,
        "encryptedClientBackupShare": pair.client_cipher_text,
    }))
    .into_response())
}

/// `PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject`.
pub(crate) async fn complete_eject(
    State(sim): State<Arc<Sim>>,
    Path(wallet_id): Path<String>,
    headers: HeaderMap,
) -> Outcome {
    let client = enter(&sim, Route::CompleteEject, &headers).await?;
    if !owns(&sim, &client, &wallet_id) {
        return Err(wallet_not_found());
    }
    enabled(&sim, &wallet_id)?;
    if let Some(e) = sim.lock().ejects.get_mut(&wallet_id) {
        e.completed = true;
    }
    Ok(Json(json!({})).into_response())
}
