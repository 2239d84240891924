//! The custody function's entry: Portal's webhooks behind API Gateway, and its own drill
//! (`{"action": "custody-drill", "sample"?}`, invoked by its schedule); nothing else.
//!
//! It runs as a function of its own (`FUNCTION_ROLE=custody`), with its own role, table and key:
//! the backup function can reach neither, and this one can reach neither the client shares' table
//! nor their key. Any other event is refused: it serves no backup, no operator action.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use zeroize::Zeroize;

use super::http::{HttpAnswer, HttpRequest, decode_body};
use super::metrics;
use super::{Answer, Trigger, decode, recognise};
use crate::domain::source::SourceAllowList;
use crate::ports::custody::CustodianStore;
use crate::ports::custody_drill::{CustodyDrillTable, PublicValues};
use crate::ports::envelope::Envelope;
use crate::ports::webhook_secret::SecretSource;
use crate::workflow::custody::{CustodyService, Hook, HookAnswer, HookCall};
use crate::workflow::drill::DrillRequest;
use crate::workflow::retry::Deadline;

/// Everything the custody function needs, built once per process (see `app`).
#[derive(Debug)]
pub struct CustodyHandler<E, S, K> {
    /// The webhooks over the custody table and key.
    pub custody: CustodyService<E, S>,
    /// The secrets Portal's calls must carry (current, and previous during a rotation).
    pub secrets: K,
    /// The addresses Portal's calls come from; any other is refused before anything is read.
    pub sources: SourceAllowList,
    /// The backup table's public values, when the stack lets custody read them
    /// (`PUBLIC_VALUES_TABLE_NAME`): the custody drill compares both domains' public keys.
    pub public_values: Option<S>,
    /// The one drill sample the custody function accepts (`DRILL_SAMPLE`): the schedule's.
    pub drill_sample: Option<u32>,
}

/// Handles any invocation of the custody function. The raw event holds a custodian share: it is
/// wiped once read.
pub async fn handle<E, S, K>(
    app: &CustodyHandler<E, S, K>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Answer, Diagnostic>
where
    E: Envelope,
    S: CustodianStore + CustodyDrillTable + PublicValues,
    K: SecretSource,
{
    let mut raw: Box<str> = event.payload.into();
    let deadline = Deadline::from_epoch_ms(event.context.deadline);
    let result = dispatch(app, &raw, &deadline).await;
    raw.zeroize();
    result
}

async fn dispatch<E, S, K>(
    app: &CustodyHandler<E, S, K>,
    raw: &str,
    deadline: &Deadline,
) -> Result<Answer, Diagnostic>
where
    E: Envelope,
    S: CustodianStore + CustodyDrillTable + PublicValues,
    K: SecretSource,
{
    match recognise(raw)? {
        Trigger::Action if is_custody_drill(raw.as_bytes()) => {
            custody_drill(app, raw.as_bytes(), deadline).await
        }
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

/// Whether a direct-invoke payload asks for the custody drill.
fn is_custody_drill(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        action: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(payload).is_ok_and(
        |p| matches!(p.action, Some(serde_json::Value::String(a)) if a == "custody-drill"),
    )
}

/// Runs the custody drill and counts it (a drill that could not run counts as a failure).
async fn custody_drill<E, S, K>(
    app: &CustodyHandler<E, S, K>,
    payload: &[u8],
    deadline: &Deadline,
) -> Result<Answer, Diagnostic>
where
    E: Envelope,
    S: CustodianStore + CustodyDrillTable + PublicValues,
    K: SecretSource,
{
    let refused = |problem: String| Diagnostic {
        error_type: "InvalidInput".into(),
        error_message: problem,
    };
    let request = DrillRequest::parse(payload).map_err(|e| refused(e.to_string()))?;
    if app.drill_sample.is_some_and(|n| n != request.sample) {
        return Err(refused(
            "invalid input: `sample` is not this stack's drill sample (DRILL_SAMPLE)".into(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let answer = app
        .custody
        .drill(app.public_values.as_ref(), request, deadline, now)
        .await;
    metrics::emit_custody_drill(answer.as_ref().ok());
    match answer {
        Ok(answer) => Ok(Answer::CustodyDrill(answer)),
        Err(e) => Err(Diagnostic {
            error_type: "CustodyDrillFailed".into(),
            error_message: e.to_string(),
        }),
    }
}

/// Serves a webhook and counts it (one EMF line per call, never a share).
pub async fn serve_http<E: Envelope, S: CustodianStore, K: SecretSource>(
    app: &CustodyHandler<E, S, K>,
    call: HttpRequest,
) -> HttpAnswer {
    let (hook, answer) = serve_hook(app, call).await;
    // Every call is counted, a refused one on any path too (`other`: not a webhook's route).
    if hook.is_some() || answer.outcome.is_refusal() {
        metrics::emit_webhook(
            hook.map_or("other", Hook::as_str),
            answer.outcome.as_str(),
            answer.outcome.is_refusal(),
            answer.fetched,
        );
    }
    HttpAnswer {
        status: answer.status,
        body: answer.body,
        headers: Vec::new(),
    }
}

/// 403 for an address not listed, before anything else is looked at; 404 for any other path;
/// 401 before the body is read; then 405; then the hook.
async fn serve_hook<E: Envelope, S: CustodianStore, K: SecretSource>(
    app: &CustodyHandler<E, S, K>,
    call: HttpRequest,
) -> (Option<Hook>, HookAnswer) {
    let hook = Hook::from_path(&call.path);
    let source = call.source_ip.as_deref();
    if !app.sources.admits(source) {
        tracing::warn!(
            source = source.unwrap_or("unknown"),
            "webhook call refused: its address is not one of Portal's"
        );
        return (hook, HookAnswer::forbidden_source());
    }
    let Some(hook) = hook else {
        let answer = HookAnswer::error(
            404,
            "NOT_FOUND",
            "no such route".into(),
            crate::workflow::custody::Outcome::Invalid,
        );
        return (None, answer);
    };
    let secrets = app.secrets.secrets().await;
    if !secrets.admits(&call.headers) {
        tracing::warn!(
            hook = hook.as_str(),
            source = source.unwrap_or("unknown"),
            "webhook call refused: wrong or missing secret"
        );
        return (Some(hook), HookAnswer::unauthorized());
    }
    if call.method != http::Method::POST {
        let answer = HookAnswer::error(
            405,
            "METHOD_NOT_ALLOWED",
            "use POST".into(),
            crate::workflow::custody::Outcome::Invalid,
        );
        return (Some(hook), answer);
    }
    let bytes = match decode_body(call.body, call.base64_encoded) {
        Ok(bytes) => bytes,
        Err(answer) => {
            let answer = HookAnswer {
                status: answer.status,
                body: answer.body,
                outcome: crate::workflow::custody::Outcome::Invalid,
                fetched: 0,
            };
            return (Some(hook), answer);
        }
    };
    let answer = app
        .custody
        .serve(
            &secrets,
            HookCall {
                hook,
                headers: &call.headers,
                body: &bytes,
                source: source.unwrap_or("unknown"),
            },
        )
        .await;
    (Some(hook), answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FakeEnvelope, FakeStore};
    use crate::domain::secret::{WebhookSecret, WebhookSecrets};
    use crate::ports::webhook_secret::FixedSecrets;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use http::{HeaderMap, HeaderValue, Method};
    use serde_json::json;
    use zeroize::Zeroizing;

    const PORTAL: &str = "35.203.150.117";

    fn handler() -> CustodyHandler<FakeEnvelope, FakeStore, FixedSecrets> {
        CustodyHandler {
            custody: CustodyService::new(
                FakeEnvelope::default(),
                FakeStore::default(),
                Default::default(),
            ),
            secrets: FixedSecrets(std::sync::Arc::new(WebhookSecrets::only(
                WebhookSecret::new("whsec-1".into()).unwrap(),
            ))),
            sources: SourceAllowList::parse("35.203.150.117/32,104.155.171.139/32").unwrap(),
            public_values: None,
            drill_sample: Some(5),
        }
    }

    fn call(
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: &str,
        b64: bool,
    ) -> HttpRequest {
        call_from(PORTAL, method, path, secret, body, b64)
    }

    fn call_from(
        source: &str,
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
            source_ip: Some(source.into()),
        }
    }

    #[tokio::test]
    async fn webhooks_need_the_secret_and_other_routes_do_not_exist() {
        let h = handler();
        let inner = json!({"clientId": "c1", "share": "s3cr3t"}).to_string();
        let share = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": inner, "backupSharePairId": "bp1"}).to_string();
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
            (200, json!([inner]))
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
    async fn calls_from_other_addresses_are_refused_before_anything_is_read() {
        let h = handler();
        let inner = json!({"clientId": "c1", "share": "s3cr3t"}).to_string();
        let share = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": inner}).to_string();
        for source in ["203.0.113.9", "35.203.150.118", "::1", ""] {
            for (path, secret) in [
                ("/prod/webhook/backup", Some("whsec-1")),
                ("/prod/webhook/backup/fetch", Some("whsec-1")),
                ("/prod/webhook/backup", None),
                ("/elsewhere", None),
            ] {
                let a = serve_http(
                    &h,
                    call_from(source, Method::POST, path, secret, &share, false),
                )
                .await;
                assert_eq!(a.status, 403, "{source} {path}");
                assert_eq!(a.body, json!({"message": "Forbidden"}), "no detail");
            }
        }
        let mut no_source = call(
            Method::POST,
            "/prod/webhook/backup",
            Some("whsec-1"),
            &share,
            false,
        );
        no_source.source_ip = None;
        assert_eq!(serve_http(&h, no_source).await.status, 403);
        assert!(
            h.custody.store().custodian.lock().unwrap().is_empty(),
            "nothing stored"
        );
        let a = serve_http(
            &h,
            call_from(
                "104.155.171.139",
                Method::POST,
                "/prod/webhook/backup",
                Some("whsec-1"),
                &share,
                false,
            ),
        )
        .await;
        assert_eq!(a.status, 200, "a listed address works");
    }

    #[tokio::test]
    async fn backups_and_actions_are_refused() {
        let h = handler();
        for event in [
            json!({"Records": []}),
            json!({"action": "restore", "clientId": "c1"}),
            json!({"clientId": "c1", "generateResponse": {}}),
        ] {
            let e = dispatch(&h, &event.to_string(), &Deadline::none())
                .await
                .unwrap_err();
            assert_eq!(e.error_type, "WrongFunction", "{event}");
        }
    }

    #[tokio::test]
    async fn the_custody_drill_runs_with_the_schedules_sample_only() {
        let h = handler();
        let run = |event: serde_json::Value| {
            let h = &h;
            async move { dispatch(h, &event.to_string(), &Deadline::none()).await }
        };
        let e = run(json!({"action": "custody-drill", "sample": 6}))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "InvalidInput");
        let e = run(json!({"action": "custody-drill", "sample": 5, "clientId": "c1"}))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "InvalidInput");
        let Ok(Answer::CustodyDrill(a)) =
            run(json!({"action": "custody-drill", "sample": 5})).await
        else {
            panic!("the schedule's drill runs")
        };
        assert_eq!((a.verified, a.failed, a.cycle.number), (0, 0, 1));
    }
}
