//! HTTP answers for every API Gateway route: status, JSON body, and how a body is decoded.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::failure;
use crate::domain::request::InputError;
use crate::domain::secret::wipe_json;
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

    /// The answer in an HTTP API (payload 2.0) response; the body's copy here is wiped (a
    /// webhook fetch answer carries shares).
    pub fn into_v2(mut self) -> ApiGatewayV2httpResponse {
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = self.header_map();
        response.body = Some(Body::Text(self.body.to_string()));
        wipe_json(&mut self.body);
        response
    }

    /// The answer in a REST API proxy (payload 1.0) response; the body's copy here is wiped.
    pub fn into_v1(mut self) -> ApiGatewayProxyResponse {
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = self.header_map();
        response.body = Some(Body::Text(self.body.to_string()));
        wipe_json(&mut self.body);
        response
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

/// What every API Gateway payload carries, taken out of either version's event.
#[derive(Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: http::Method,
    /// The path (a stage prefix may lead it).
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, wiped when dropped.
    pub body: Option<Zeroizing<String>>,
    /// Whether API Gateway base64-encoded the body.
    pub base64_encoded: bool,
    /// The IAM caller API Gateway authenticated (`requestContext.authorizer.iam.userArn`), if any.
    pub caller: Option<String>,
    /// The address the call came from, as API Gateway saw it (`sourceIp`).
    pub source_ip: Option<String>,
}

impl HttpRequest {
    /// From an HTTP API (payload format 2.0) event.
    pub fn from_v2(mut r: aws_lambda_events::apigw::ApiGatewayV2httpRequest) -> Self {
        let path = r
            .raw_path
            .take()
            .or_else(|| r.request_context.http.path.take())
            .unwrap_or_default();
        let caller = r
            .request_context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone());
        HttpRequest {
            method: r.request_context.http.method.clone(),
            path,
            body: r.body.take().map(Zeroizing::new),
            headers: std::mem::take(&mut r.headers),
            base64_encoded: r.is_base64_encoded,
            caller,
            source_ip: r.request_context.http.source_ip.take(),
        }
    }

    /// From a REST API proxy (payload format 1.0) event.
    pub fn from_v1(mut r: aws_lambda_events::apigw::ApiGatewayProxyRequest) -> Self {
        let caller = r.request_context.identity.user_arn.clone();
        HttpRequest {
            method: r.http_method.clone(),
            path: r.path.take().unwrap_or_default(),
            body: r.body.take().map(Zeroizing::new),
            headers: std::mem::take(&mut r.headers),
            base64_encoded: r.is_base64_encoded,
            caller,
            source_ip: r.request_context.identity.source_ip.take(),
        }
    }
}
