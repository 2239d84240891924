//! Portal API simulator (dev only): a local, in-memory stand-in for Portal's Enclave MPC API
//! (`/v1/generate`, `/v1/backup`, `/v1/recover`) and client API (`/api/v3/clients/me/…`), served
//! on one port, following Portal's documented contract (`docs/portal-api.md`). An admin API under `/_sim/` (no auth) registers
//! clients, queues faults, sets knobs and shows the state; see [`router`].
//!
//! Wallets have real keys: every share is one half of a 2-of-2 split of its wallet's private key
//! in Portal's shapes, so Portal's eject arithmetic recovers the key (`keys`); the simulator also
//! checks that a client sends back what it issued, and serves Portal-managed eject (`eject`).

mod admin;
mod basics;
mod eject;
mod keys;
mod rate;
mod reject;
mod routes;
mod state;
mod time;
mod webhook;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, patch, post};
use state::Inner;

/// API key of the built-in demo client.
pub const DEMO_API_KEY: &str = "demo-client-api-key";

/// Client id of the built-in demo client.
pub const DEMO_CLIENT_ID: &str = "demo-client";

/// API key of the built-in demo custodian (Portal-managed eject's `enable-eject`).
pub const DEMO_CUSTODIAN_API_KEY: &str = "demo-custodian-api-key";

/// How the simulator starts.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Delay added before answering every non-admin call (changeable via `/_sim/config`).
    pub latency: Duration,
    /// Whether the demo client and its two fixed signing share pairs exist.
    pub demo: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            demo: true,
        }
    }
}

/// The generate response of the demo client's fixed signing share pairs (deterministic).
pub fn demo_generate_response() -> serde_json::Value {
    state::demo_generate()
}

/// Shared simulator state.
#[derive(Debug)]
pub(crate) struct Sim {
    inner: Mutex<Inner>,
    /// Client for the customer's webhooks.
    http: reqwest::Client,
}

impl Sim {
    /// Locks the state (a poisoned lock is still usable: every update is a single step).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The simulator's routes, with fresh state.
///
/// Portal routes (auth `Authorization: Bearer <apiKey>`): `POST /v1/generate`, `POST /v1/backup`,
/// `POST /v1/recover`, `GET /api/v3/clients/me`, `PATCH /api/v3/clients/me/backup-share-pairs`,
/// `PATCH|POST /api/v3/clients/me/backup-share-pairs/{id}`,
/// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`.
/// Admin routes: `POST /_sim/clients`, `POST /_sim/faults`, `POST /_sim/config`, `POST /_sim/webhook`,
/// `GET /_sim/state`, `GET /_sim/pairs/{id}`, `POST /_sim/reset`.
pub fn router(options: SimOptions) -> Router {
    // Portal gives a webhook 10 s; the client is plain HTTP to the local gateway.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(webhook::WEBHOOK_TIMEOUT)
        .build()
        .unwrap_or_default();
    let sim = Arc::new(Sim {
        inner: Mutex::new(Inner::new(options)),
        http,
    });
    Router::new()
        .route("/v1/generate", post(routes::generate))
        .route("/v1/backup", post(routes::backup))
        .route("/v1/recover", post(routes::recover))
        .route("/api/v3/clients/me", get(routes::me))
        .route(
            "/api/v3/clients/me/backup-share-pairs",
            patch(routes::mark_stored),
        )
        .route(
            "/api/v3/clients/me/backup-share-pairs/{id}",
            patch(routes::store_cipher_text).post(routes::store_cipher_text),
        )
        .route(
            "/api/v3/clients/me/backup-share-pairs/{id}/cipher-text",
            get(routes::get_cipher_text),
        )
        .route(
            "/api/v3/custodians/me/clients/{client_id}/enable-eject",
            patch(eject::enable_eject),
        )
        .route(
            "/api/v3/clients/me/wallets/{wallet_id}/ejectable-backup-shares",
            get(eject::ejectable_backup_shares),
        )
        .route(
            "/api/v3/clients/me/wallets/{wallet_id}/complete-eject",
            patch(eject::complete_eject),
        )
        .route("/_sim/clients", post(admin::add_client))
        .route("/_sim/custodians", post(admin::add_custodian))
        .route("/_sim/faults", post(admin::add_fault))
        .route("/_sim/config", post(admin::set_config))
        .route("/_sim/webhook", post(webhook::set_webhook))
        .route("/_sim/state", get(admin::state))
        .route("/_sim/pairs/{id}", get(admin::pair))
        .route("/_sim/reset", post(admin::reset))
        .fallback(routes::not_found)
        .layer(middleware::from_fn(log_request))
        .with_state(sim)
}

/// Serves [`router`] on `listener` until the server fails.
pub async fn serve(listener: tokio::net::TcpListener, options: SimOptions) -> std::io::Result<()> {
    axum::serve(listener, router(options)).await
}

/// Serves the simulator on a free port of 127.0.0.1 from a thread and runtime of its own, so a
/// test that blocks its own thread never stalls Portal; it serves until the process exits.
pub fn spawn(options: SimOptions) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("portal-sim")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("portal-sim".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = serve(listener, options).await {
                            tracing::error!(error = %e, "the Portal simulator stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the Portal simulator could not listen"),
                }
            });
        })?;
    Ok(addr)
}

/// Logs method, path and status of each answered request (never headers, bodies or shares).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), "request");
    response
}
