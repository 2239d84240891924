//! A local API Gateway (dev only): turns each HTTP request into an HTTP API
//! (payload format 2.0) event, invokes a function with it and writes back the function's answer.
//!
//! It stands in front of its own function process: Portal calls the webhooks while the function
//! that serves the SQS message waits inside `/v1/backup`, and one Lambda process serves one
//! invocation at a time (in AWS, Lambda scales out to a second one). Invocations of that process
//! are serialised by its Runtime API, which hands out one event at a time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::runtime_api::Answer;

/// Largest request body accepted (API Gateway's own limit is 10 MB).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Invokes the function behind the gateway: the event in, its answer out (`None`: no answer).
pub trait Invoke: Send + Sync + 'static {
    /// Runs one invocation.
    fn invoke(&self, event: Value) -> impl Future<Output = Option<Answer>> + Send;
}

impl<F, Fut> Invoke for F
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Answer>> + Send,
{
    fn invoke(&self, event: Value) -> impl Future<Output = Option<Answer>> + Send {
        self(event)
    }
}

struct Gateway<I> {
    function: I,
    next_id: AtomicU64,
}

/// Serves the gateway on an ephemeral loopback port; returns its address.
pub async fn start<I: Invoke>(function: I) -> std::io::Result<SocketAddr> {
    start_on(
        "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
        function,
    )
    .await
}

/// Serves the gateway on `addr` (a fixed port, for the local stack); returns the bound address.
pub async fn start_on<I: Invoke>(addr: SocketAddr, function: I) -> std::io::Result<SocketAddr> {
    let gateway = Arc::new(Gateway {
        function,
        next_id: AtomicU64::new(1),
    });
    let app = axum::Router::new()
        .fallback(handle::<I>)
        .with_state(gateway);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// API Gateway's own answer when the integration fails.
fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn handle<I: Invoke>(State(gateway): State<Arc<Gateway<I>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let id = gateway.next_id.fetch_add(1, Ordering::Relaxed);
    let event = event(
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        &body,
        id,
    );
    match gateway.function.invoke(event).await {
        Some(Answer::Response(answer)) => response(&answer),
        Some(Answer::Error(_)) => {
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        None => gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    }
}

/// The HTTP API payload-2.0 event of a request (headers lower-cased, repeats joined by commas).
pub fn event(
    method: &axum::http::Method,
    path: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &Bytes,
    id: u64,
) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let (body, base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(STANDARD.encode(body)), true),
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": map,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": format!("apigw-{id:08}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": 0,
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// The HTTP response of a function's payload-2.0 answer.
fn response(answer: &Value) -> Response {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match (answer["body"].as_str(), answer["isBase64Encoded"].as_bool()) {
        (Some(b), Some(true)) => STANDARD.decode(b).unwrap_or_default(),
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, _) => Vec::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}
