//! A typed client of the Portal simulator: its admin API (`/_sim/…`) and Portal's own routes.
//! The simulator's tests and the Lambda's integration tests both drive the simulator with it.

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// What a call to the simulator can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SimClientError {
    /// The request could not be sent or its answer read.
    #[error("simulator request {what} failed: {source}")]
    Http {
        /// The route called.
        what: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The simulator answered with an unexpected status.
    #[error("simulator request {what} answered {status}")]
    Status {
        /// The route called.
        what: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The answer was not the JSON expected.
    #[error("simulator request {what} answered invalid JSON: {source}")]
    Json {
        /// The route called.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// A call's status, headers and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON, `Value::Null` when empty.
    pub body: Value,
}

/// A simulator at `base` (e.g. `http://127.0.0.1:5060`).
#[derive(Debug, Clone)]
pub struct SimClient {
    base: String,
    http: Client,
}

impl SimClient {
    /// A client of the simulator at `base`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http: Client::new(),
        }
    }

    /// The simulator's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// Sends `method path` with `key` as bearer (or no Authorization header) and `body` as JSON.
    pub async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, SimClientError> {
        let what = format!("{method} {path}");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let http = |source| SimClientError::Http {
            what: what.clone(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(http)?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|source| SimClientError::Json {
                what: what.clone(),
                source,
            })?
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `POST /_sim/{what}` with `body`; any 2xx is success.
    pub async fn admin(&self, what: &str, body: &Value) -> Result<StatusCode, SimClientError> {
        let reply = self
            .call(None, Method::POST, &format!("/_sim/{what}"), Some(body))
            .await?;
        success(reply, &format!("admin {what}")).map(|r| r.status)
    }

    /// Registers a client: its API key and client id.
    pub async fn register(&self, api_key: &str, client_id: &str) -> Result<(), SimClientError> {
        self.admin(
            "clients",
            &json!({"apiKey": api_key, "clientId": client_id}),
        )
        .await
        .map(drop)
    }

    /// Fails the next `count` calls of `route` with `status`.
    pub async fn fault(&self, route: &str, count: u32, status: u16) -> Result<(), SimClientError> {
        let body = json!({"route": route, "count": count, "status": status});
        self.admin("faults", &body).await.map(drop)
    }

    /// Points Portal's custodian webhooks at `url` (`None`: off) with `secret`.
    pub async fn set_webhook(&self, url: Option<&str>, secret: &str) -> Result<(), SimClientError> {
        let body = json!({"url": url, "secret": secret});
        self.admin("webhook", &body).await.map(drop)
    }

    /// `GET /_sim/state`: clients, pairs and call counters.
    pub async fn state(&self) -> Result<Value, SimClientError> {
        let reply = self.call(None, Method::GET, "/_sim/state", None).await?;
        success(reply, "state").map(|r| r.body)
    }

    /// `GET /_sim/pairs/{id}`: one share pair, with its status and stored ciphertext.
    pub async fn pair(&self, id: &str) -> Result<Value, SimClientError> {
        let reply = self
            .call(None, Method::GET, &format!("/_sim/pairs/{id}"), None)
            .await?;
        success(reply, "pair").map(|r| r.body)
    }

    /// How many times `route` was called (a counter of `state().calls`).
    pub async fn calls(&self, route: &str) -> Result<u64, SimClientError> {
        Ok(self.state().await?["calls"][route].as_u64().unwrap_or(0))
    }

    /// `POST /v1/generate` as `api_key`: a fresh generate response (signing shares).
    pub async fn generate(&self, api_key: &str) -> Result<Value, SimClientError> {
        let reply = self
            .call(
                Some(api_key),
                Method::POST,
                "/v1/generate",
                Some(&json!({})),
            )
            .await?;
        success(reply, "generate").map(|r| r.body)
    }

    /// `POST /v1/backup` as `api_key` with `generate` as its JSON string.
    pub async fn backup(&self, api_key: &str, generate: &Value) -> Result<Reply, SimClientError> {
        let body = json!({"generateResponse": generate.to_string()});
        self.call(Some(api_key), Method::POST, "/v1/backup", Some(&body))
            .await
    }
}

fn success(reply: Reply, what: &str) -> Result<Reply, SimClientError> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(SimClientError::Status {
            what: what.to_owned(),
            status: reply.status,
        })
    }
}
