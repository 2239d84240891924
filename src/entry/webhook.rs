//! The custody function's entry: Portal's webhooks behind API Gateway, and nothing else.
//!
//! It runs as a function of its own (`FUNCTION_ROLE=custody`), with its own role, table and key:
//! the backup function can reach neither, and this one can reach neither the client shares' table
//! nor their key. Any other event is refused: it serves no backup, no operator action.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use zeroize::Zeroize;

use super::http::{HttpAnswer, HttpRequest, decode_body};
use super::{Answer, Trigger, decode, recognise};
use crate::domain::secret::WebhookSecret;
use crate::ports::custody::CustodianStore;
use crate::ports::envelope::Envelope;
use crate::workflow::custody::{CustodyService, Hook};

/// Everything the custody function needs, built once per process (see `app`).
#[derive(Debug)]
pub struct CustodyHandler<E, S> {
    /// The webhooks over the custody table and key.
    pub custody: CustodyService<E, S>,
    /// The secret Portal's calls must carry.
    pub secret: WebhookSecret,
}

/// Handles any invocation of the custody function. The raw event holds a custodian share: it is
/// wiped once read.
pub async fn handle<E, S>(
    app: &CustodyHandler<E, S>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Answer, Diagnostic>
where
    E: Envelope,
    S: CustodianStore,
{
    let mut raw: Box<str> = event.payload.into();
    let result = dispatch(app, &raw).await;
    raw.zeroize();
    result
}

async fn dispatch<E: Envelope, S: CustodianStore>(
    app: &CustodyHandler<E, S>,
    raw: &str,
) -> Result<Answer, Diagnostic> {
    match recognise(raw)? {
        Trigger::HttpApi => {
            let request = serde_json::from_str(raw).map_err(|e| decode("HTTP API", e))?;
            let answer = serve_http(app, HttpRequest::from_v2(request)).await;
            Ok(Answer::HttpApi(answer.into_v2()))
        }
        Trigger::RestApi => {
            let request = serde_json::from_str(raw).map_err(|e| decode("REST API", e))?;
            let answer = serve_http(app, HttpRequest::from_v1(request)).await;
            Ok(Answer::RestApi(answer.into_v1()))
        }
        _ => Err(Diagnostic {
            error_type: "WrongFunction".into(),
            error_message: "this is the custody function: it serves only Portal's webhooks \
                            (POST /webhook/backup and /webhook/backup/fetch through API Gateway); \
                            send backups and operator actions to the backup function"
                .into(),
        }),
    }
}

/// Serves a webhook: 404 for any other path, 401 before anything else is looked at, then 405,
/// then the hook.
pub async fn serve_http<E: Envelope, S: CustodianStore>(
    app: &CustodyHandler<E, S>,
    call: HttpRequest,
) -> HttpAnswer {
    let Some(hook) = Hook::from_path(&call.path) else {
        return HttpAnswer::error(404, "NOT_FOUND", "no such route".into());
    };
    if !app.secret.admits(&call.headers) {
        tracing::warn!(?hook, "webhook call refused: wrong or missing secret");
        let answer = crate::workflow::custody::HookAnswer::unauthorized();
        return HttpAnswer {
            status: answer.status,
            body: answer.body,
            headers: Vec::new(),
        };
    }
    if call.method != http::Method::POST {
        let mut answer = HttpAnswer::error(405, "METHOD_NOT_ALLOWED", "use POST".into());
        answer.headers.push((http::header::ALLOW, "POST".into()));
        return answer;
    }
    let bytes = match decode_body(call.body, call.base64_encoded) {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    let answer = app
        .custody
        .serve(&app.secret, hook, &call.headers, &bytes)
        .await;
    HttpAnswer {
        status: answer.status,
        body: answer.body,
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FakeEnvelope, FakeStore};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderMap, HeaderValue, Method};
    use serde_json::json;
    use zeroize::Zeroizing;

    fn handler() -> CustodyHandler<FakeEnvelope, FakeStore> {
        CustodyHandler {
            custody: CustodyService::new(FakeEnvelope::default(), FakeStore::default()),
            secret: WebhookSecret::new("whsec-1".into()).unwrap(),
        }
    }

    fn call(
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: &str,
        b64: bool,
    ) -> HttpRequest {
        let mut headers = HeaderMap::new();
        if let Some(s) = secret {
            headers.insert("x-webhook-secret", HeaderValue::from_str(s).unwrap());
        }
        let body = if b64 {
            STANDARD.encode(body.as_bytes())
        } else {
            body.to_owned()
        };
        HttpRequest {
            method,
            path: path.into(),
            headers,
            body: Some(Zeroizing::new(body)),
            base64_encoded: b64,
            caller: None,
        }
    }

    #[tokio::test]
    async fn webhooks_need_the_secret_and_other_routes_do_not_exist() {
        let h = handler();
        let share = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": "s3cr3t", "backupSharePairId": "bp1"}).to_string();
        let refused = serve_http(
            &h,
            call(Method::POST, "/prod/webhook/backup", None, &share, false),
        )
        .await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.body, json!({"message": "Unauthorized"}));
        for (path, b64) in [("/prod/webhook/backup", false), ("/webhook/backup/", true)] {
            let a = serve_http(&h, call(Method::POST, path, Some("whsec-1"), &share, b64)).await;
            assert_eq!(a.status, 200, "{path}");
        }
        let a = serve_http(
            &h,
            call(
                Method::POST,
                "/webhook/backup/fetch",
                Some("whsec-1"),
                r#"{"clientId":"c1"}"#,
                false,
            ),
        )
        .await;
        assert_eq!(
            (a.status, a.body["backupShares"].clone()),
            (200, json!(["s3cr3t"]))
        );
        let a = serve_http(
            &h,
            call(Method::GET, "/webhook/backup", Some("whsec-1"), "", false),
        )
        .await;
        assert_eq!(a.status, 405);
        for path in ["/backups", "/clients/c1/backups/restore"] {
            let a = serve_http(&h, call(Method::POST, path, Some("whsec-1"), "{}", false)).await;
            assert_eq!(a.status, 404, "{path}: not the custody function's");
        }
    }

    #[tokio::test]
    async fn backups_and_actions_are_refused() {
        let h = handler();
        for event in [
            json!({"Records": []}),
            json!({"action": "restore", "clientId": "c1"}),
            json!({"clientId": "c1", "generateResponse": {}}),
        ] {
            let e = dispatch(&h, &event.to_string()).await.unwrap_err();
            assert_eq!(e.error_type, "WrongFunction", "{event}");
        }
    }
}
