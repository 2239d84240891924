//! The error answers of the simulator's routes, in Portal's documented shapes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer of a Portal route (small, so `Result`s stay cheap).
#[derive(Debug)]
pub(crate) enum Reject {
    /// 400 in Portal's shape 1: `{"id":"BAD_REQUEST","message":…}`.
    BadRequest(String),
    /// An error in Portal's shape 2: `{"error":{"id","message","code"}}`.
    Portal {
        /// HTTP status (also the body's `code`).
        status: StatusCode,
        /// Portal error id.
        id: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// A prepared response (401 string body, injected fault, 405 with `Allow`).
    Response(Box<Response>),
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::BadRequest(message) => {
                let body = json!({"id": "BAD_REQUEST", "message": message});
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            Reject::Portal {
                status,
                id,
                message,
            } => (status, Json(error_body(status, id, message))).into_response(),
            Reject::Response(response) => *response,
        }
    }
}

impl From<Response> for Reject {
    fn from(response: Response) -> Self {
        Reject::Response(Box::new(response))
    }
}

/// 400 in Portal's shape 1.
pub(crate) fn bad_request(message: impl Into<String>) -> Reject {
    Reject::BadRequest(message.into())
}

/// An error in Portal's shape 2.
pub(crate) fn portal_error(
    status: StatusCode,
    id: &'static str,
    message: impl Into<String>,
) -> Reject {
    Reject::Portal {
        status,
        id,
        message: message.into(),
    }
}

pub(crate) fn error_body(status: StatusCode, id: &str, message: impl Into<String>) -> Value {
    json!({"error": {"id": id, "message": message.into(), "code": status.as_u16()}})
}
