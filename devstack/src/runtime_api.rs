//! A local Lambda Runtime API (dev only): drives the built bootstrap exactly as Lambda does.
//!
//! The bootstrap polls `GET /2018-06-01/runtime/invocation/next`, runs the handler and posts
//! `…/{id}/response` or `…/{id}/error`. Used by the end-to-end tests, `local-invoke` and the
//! benchmarks, so all three exercise the same binary the same way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST …/response`: the handler's result.
    Response(Value),
    /// `POST …/error`: a function error (`errorType`, `errorMessage`).
    Error(Value),
}

/// Why an invocation got no answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function did not answer in time (or its process died).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The function reported an initialisation error.
    #[error("init error: {0}")]
    Init(Value),
}

struct Pending {
    id: String,
    payload: Bytes,
    deadline_ms: u128,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Value>>,
    first_poll: Mutex<Option<Instant>>,
}

/// A running Runtime API on 127.0.0.1.
pub struct RuntimeApi {
    addr: SocketAddr,
    sender: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl RuntimeApi {
    /// Starts the API on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            waiters: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_poll: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            sender,
            shared,
            next_id: AtomicU64::new(1),
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an invocation (its init is then complete).
    pub fn first_poll(&self) -> Option<Instant> {
        *self
            .shared
            .first_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Invokes the function with `payload` and waits up to `timeout` for its answer.
    pub async fn invoke(&self, payload: &Value, timeout: Duration) -> Result<Answer, InvokeError> {
        let id = format!("req-{:08}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            + timeout.as_millis();
        let payload = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
        let _ = self.sender.send(Pending {
            id,
            payload,
            deadline_ms,
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => match self
                .shared
                .init_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                Some(e) => Err(InvokeError::Init(e)),
                None => Err(InvokeError::Timeout(timeout)),
            },
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_poll
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Instant::now);
    let Some(p) = shared.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", p.id.clone());
    set("lambda-runtime-deadline-ms", p.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:portal-backup".into(),
    );
    // As Lambda sends it with active tracing: the function's segment is the Parent.
    set("lambda-runtime-trace-id", trace_header(&p.id));
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, p.payload).into_response()
}

/// The X-Ray trace header of request `id` (`req-<n>`), sampled, with a Parent of its own.
pub fn trace_header(id: &str) -> String {
    let n: u64 = id.trim_start_matches("req-").parse().unwrap_or(0);
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "Root=1-{epoch:08x}-{:024x};Parent={:016x};Sampled=1",
        0x5eed_0000_0000_u64 + n,
        0xfeed_0000_0000_u64 + n
    )
}

fn answer(shared: &Shared, id: &str, answer: Answer) -> StatusCode {
    match shared
        .waiters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
    {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    answer(&shared, &id, Answer::Response(json(&body)))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    answer(&shared, &id, Answer::Error(json(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(json(&body));
    StatusCode::ACCEPTED
}

/// The variables Lambda sets for a function process, pointing at `runtime_api`.
pub fn lambda_environment(runtime_api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "portal-backup".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/portal-backup".into(),
        ),
    ]
}

/// A command that runs `bootstrap` as Lambda would, against `runtime_api`, with this process's
/// environment plus Lambda's variables.
pub fn lambda_command(bootstrap: &std::path::Path, runtime_api: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bootstrap);
    cmd.envs(lambda_environment(runtime_api)).kill_on_drop(true);
    cmd
}
