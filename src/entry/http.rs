//! HTTP answers for every API Gateway route: status, JSON body, and how a body is decoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::failure;
use crate::domain::request::InputError;
use crate::workflow::error::BackupError;

/// A response before it is put in the trigger's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// Extra headers (`Retry-After`, `Allow`).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl HttpAnswer {
    /// An error answer with a stable code and a message that names no secret.
    pub fn error(status: u16, code: &str, message: String) -> Self {
        HttpAnswer {
            status,
            body: json!({ "error": { "code": code, "message": message } }),
            headers: Vec::new(),
        }
    }

    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        map.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        map.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                map.insert(name.clone(), v);
            }
        }
        map
    }
}

/// The body's bytes, decoded from base64 where API Gateway encoded it. No body is an empty one:
/// the parsers name `body` as the field at fault.
pub(crate) fn decode_body(
    body: Option<Zeroizing<String>>,
    base64_encoded: bool,
) -> Result<Zeroizing<Vec<u8>>, HttpAnswer> {
    let body = body.unwrap_or_default();
    if !base64_encoded {
        return Ok(Zeroizing::new(body.as_bytes().to_vec()));
    }
    STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| {
            let problem = InputError {
                field: "body".into(),
                problem: "is not valid base64".into(),
            };
            error_answer(&problem.into())
        })
}

/// The error answer: status, stable code, the step, the field at fault; a message with no secret.
pub fn error_answer(err: &BackupError) -> HttpAnswer {
    let f = failure(err);
    let mut body = json!({ "error": {
        "code": f.code,
        "step": err.step.as_str(),
        "retryable": err.is_transient(),
        "message": err.to_string(),
    }});
    if let Some(field) = err.field() {
        body["error"]["field"] = json!(field);
    }
    let mut headers = Vec::new();
    if let Some(after) = f.retry_after {
        headers.push((header::RETRY_AFTER, after.to_string()));
    }
    HttpAnswer {
        status: f.status,
        body,
        headers,
    }
}
