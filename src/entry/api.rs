//! API Gateway: `POST /backups` with the message as the body, from an HTTP API (payload 2.0) or
//! a REST API proxy integration (1.0). Answers JSON; never echoes the request.

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use http::{Method, header};
use zeroize::Zeroizing;

use super::{Ctx, Role, Services, operator, run_request};
use crate::entry::http::{HttpAnswer, HttpRequest, decode_body, error_answer};
use crate::ports::catalogue::Catalogue;
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;

/// The route this function serves.
pub const ROUTE: &str = "/backups";

/// Handles an HTTP API (payload format 2.0) request.
pub async fn handle_http_api<P: Portal, E: Envelope, S: BackupStore + Checkpoints + Catalogue>(
    services: &Services<P, E, S>,
    ctx: Ctx<'_>,
    request: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let r = HttpRequest::from_v2(request);
    let ctx = Ctx {
        caller: r.caller.as_deref(),
        ..ctx
    };
    serve(services, ctx, &r.method, &r.path, r.body, r.base64_encoded)
        .await
        .into_v2()
}

/// Handles a REST API proxy (payload format 1.0) request.
pub async fn handle_rest_api<P: Portal, E: Envelope, S: BackupStore + Checkpoints + Catalogue>(
    services: &Services<P, E, S>,
    ctx: Ctx<'_>,
    request: ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let r = HttpRequest::from_v1(request);
    let ctx = Ctx {
        caller: r.caller.as_deref(),
        ..ctx
    };
    serve(services, ctx, &r.method, &r.path, r.body, r.base64_encoded)
        .await
        .into_v1()
}

/// Routes, decodes and runs one request.
pub async fn serve<P: Portal, E: Envelope, S: BackupStore + Checkpoints + Catalogue>(
    services: &Services<P, E, S>,
    ctx: Ctx<'_>,
    method: &Method,
    path: &str,
    body: Option<Zeroizing<String>>,
    base64_encoded: bool,
) -> HttpAnswer {
    // Portal's webhooks are the custody function's (its own role, table and key), never this one's;
    // the operator routes are the operator function's, `POST /backups` the backup function's.
    if let Some(op) = operator::route(path) {
        if ctx.role != Role::Operator {
            return HttpAnswer::error(
                404,
                "NOT_FOUND",
                "operator routes are served by the operator function".into(),
            );
        }
        return match decode_body(body, base64_encoded) {
            Ok(bytes) => operator::serve(&services.restore, method, op, &bytes, ctx.caller).await,
            Err(answer) => answer,
        };
    }
    if !path.trim_end_matches('/').ends_with(ROUTE) || ctx.role != Role::Backup {
        return HttpAnswer::error(404, "NOT_FOUND", format!("no such route; use POST {ROUTE}"));
    }
    if method != Method::POST {
        let mut answer = HttpAnswer::error(405, "METHOD_NOT_ALLOWED", format!("use POST {ROUTE}"));
        answer.headers.push((header::ALLOW, "POST".into()));
        return answer;
    }
    let bytes = match decode_body(body, base64_encoded) {
        Ok(bytes) => bytes,
        Err(answer) => return answer,
    };
    match run_request(&services.backup, ctx, &bytes).await {
        Ok(outcome) => HttpAnswer {
            status: 200,
            body: serde_json::to_value(&outcome).unwrap_or_default(),
            headers: Vec::new(),
        },
        Err(err) => error_answer(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FakeEnvelope, FakePortal, FakeStore};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    type Svc = Services<FakePortal, FakeEnvelope, FakeStore>;

    fn svc(portal: FakePortal) -> Svc {
        Services::new(portal, FakeEnvelope::default(), FakeStore::default())
    }

    fn good() -> Zeroizing<String> {
        Zeroizing::new(
            json!({"clientId": "c1", "clientApiKey": "sk_live_k",
                   "generateResponse": crate::adapters::memory::fake_generate("c1", "s1", "e1")})
            .to_string(),
        )
    }

    async fn call(
        s: &Svc,
        method: Method,
        path: &str,
        body: Option<Zeroizing<String>>,
        b64: bool,
    ) -> HttpAnswer {
        // Each route goes to the function that serves it, as the template wires them.
        let role = if operator::route(path).is_some() {
            Role::Operator
        } else {
            Role::Backup
        };
        let ctx = Ctx {
            role,
            ..crate::entry::test_ctx()
        };
        serve(s, ctx, &method, path, body, b64).await
    }

    #[tokio::test]
    async fn each_function_serves_its_own_routes_only() {
        let s = svc(FakePortal::default());
        for (role, path, method) in [
            (Role::Backup, "/clients/c1/backups", Method::GET),
            (Role::Backup, "/clients/c1/backups/restore", Method::POST),
            (Role::Backup, "/clients/c1/backups/recover", Method::POST),
            (Role::Operator, "/backups", Method::POST),
        ] {
            let ctx = Ctx {
                role,
                ..crate::entry::test_ctx()
            };
            let a = serve(&s, ctx, &method, path, Some(good()), false).await;
            assert_eq!(a.status, 404, "{role:?} {path}");
        }
    }

    #[tokio::test]
    async fn success_answers_the_outcome() {
        let a = call(
            &svc(FakePortal::default()),
            Method::POST,
            "/backups",
            Some(good()),
            false,
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["clientId"], "c1");
        assert_eq!(a.body["backupMode"], "SELF_MANAGED");
        assert_eq!(a.body["status"], "COMPLETED");
        assert_eq!(a.body["backupSharePairIds"].as_array().unwrap().len(), 2);
        let b64 = Zeroizing::new(STANDARD.encode(good().as_bytes()));
        let a = call(
            &svc(FakePortal::default()),
            Method::POST,
            "/prod/backups",
            Some(b64),
            true,
        )
        .await;
        assert_eq!(
            a.status, 200,
            "base64 bodies and stage prefixes are accepted"
        );
    }

    #[tokio::test]
    async fn routing_and_bad_input() {
        let s = svc(FakePortal::default());
        assert_eq!(
            call(&s, Method::POST, "/other", Some(good()), false)
                .await
                .status,
            404
        );
        let a = call(&s, Method::GET, "/backups", None, false).await;
        assert_eq!(a.status, 405);
        assert!(a.headers.contains(&(header::ALLOW, "POST".into())));
        let a = call(&s, Method::POST, "/backups", None, false).await;
        assert_eq!(
            (a.status, a.body["error"]["field"].as_str()),
            (400, Some("body"))
        );
        let a = call(
            &s,
            Method::POST,
            "/backups",
            Some(Zeroizing::new("{bad".into())),
            false,
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (400, Some("INVALID_INPUT"))
        );
        let no_key = Zeroizing::new(good().replace("\"clientApiKey\":\"sk_live_k\",", ""));
        let a = call(&s, Method::POST, "/backups", Some(no_key), false).await;
        assert_eq!(a.body["error"]["field"], "clientApiKey");
        let huge = Zeroizing::new(format!("{{\"clientId\": \"{}\"}}", "x".repeat(300 * 1024)));
        let a = call(&s, Method::POST, "/backups", Some(huge), false).await;
        assert_eq!(
            (a.status, a.body["error"]["field"].as_str()),
            (400, Some("body"))
        );
        assert_eq!(
            call(
                &s,
                Method::POST,
                "/backups",
                Some(Zeroizing::new("%%".into())),
                true
            )
            .await
            .status,
            400
        );
    }

    #[tokio::test]
    async fn portal_failures_map_to_clear_statuses_without_secrets() {
        for (portal_status, status, code, retry) in [
            (401, 401, "PORTAL_UNAUTHORIZED", None),
            (403, 403, "PORTAL_UNAUTHORIZED", None),
            (429, 503, "PORTAL_RATE_LIMITED", Some("60")),
            (500, 502, "PORTAL_UNAVAILABLE", Some("5")),
            (400, 400, "PORTAL_REJECTED", None),
        ] {
            let portal = FakePortal {
                fail_backup: Some(portal_status),
                ..Default::default()
            };
            let a = call(&svc(portal), Method::POST, "/backups", Some(good()), false).await;
            assert_eq!(
                (a.status, a.body["error"]["code"].as_str()),
                (status, Some(code)),
                "{portal_status}"
            );
            let after = a
                .headers
                .iter()
                .find(|(n, _)| n == header::RETRY_AFTER)
                .map(|(_, v)| v.as_str());
            assert_eq!(after, retry, "{portal_status}");
            assert!(!a.body.to_string().contains("sk_live_k"));
        }
    }

    #[tokio::test]
    async fn dependency_failures_are_upstream_errors() {
        let store = FakeStore {
            fail_put: true,
            ..Default::default()
        };
        let s = Services::new(FakePortal::default(), FakeEnvelope::default(), store);
        let a = call(&s, Method::POST, "/backups", Some(good()), false).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (503, Some("DEPENDENCY_UNAVAILABLE"))
        );
        assert_eq!(a.body["error"]["step"], "store");
        assert_eq!(a.body["error"]["retryable"], true);
    }

    #[tokio::test]
    async fn webhook_routes_are_not_the_backup_functions() {
        let s = svc(FakePortal::default());
        for path in ["/webhook/backup", "/prod/webhook/backup/fetch"] {
            let body = Some(Zeroizing::new(r#"{"clientId":"c1"}"#.to_owned()));
            let a = serve(
                &s,
                crate::entry::test_ctx(),
                &Method::POST,
                path,
                body,
                false,
            )
            .await;
            assert_eq!(a.status, 404, "{path}");
        }
    }

    #[tokio::test]
    async fn operator_routes_list_verify_and_restore_a_backup_made_through_the_api() {
        let s = svc(FakePortal::default());
        let made = call(&s, Method::POST, "/backups", Some(good()), false).await;
        assert_eq!(made.status, 200, "{}", made.body);
        let ids = made.body["backupSharePairIds"].clone();

        let list = call(&s, Method::GET, "/prod/clients/c1/backups", None, false).await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert_eq!(list.body["clientId"], "c1");
        assert_eq!(list.body["backups"][0]["status"], "COMPLETED");
        assert_eq!(list.body["backups"][0]["backupSharePairIds"], ids);

        let verify = call(&s, Method::POST, "/clients/c1/backups/verify", None, false).await;
        assert_eq!(verify.status, 200, "{}", verify.body);
        assert_eq!(verify.body["ok"], true);
        assert!(verify.body.get("backupResponse").is_none());

        let key = Zeroizing::new(STANDARD.encode(br#"{"clientApiKey":"sk_live_k"}"#));
        let restore = call(
            &s,
            Method::POST,
            "/clients/c1/backups/restore",
            Some(key),
            true,
        )
        .await;
        assert_eq!(restore.status, 200, "{}", restore.body);
        assert_eq!(restore.body["backupSharePairIds"], ids);
        // Sealed, never in the clear: the recovery role opens it.
        assert!(
            restore.body.get("backupResponse").is_none(),
            "{}",
            restore.body
        );
        let sealed = restore.body["sealedBackupResponse"].as_str().unwrap();
        assert!(
            sealed.contains(r#""purpose":"backup-response""#),
            "{sealed}"
        );
        assert!(!restore.body.to_string().contains("sk_live_k"));

        // recover: the same backup through Portal's /v1/recover, answered sealed.
        let recover = call(
            &s,
            Method::POST,
            "/clients/c1/backups/recover",
            Some(Zeroizing::new(
                r#"{"clientApiKey":"sk_live_k","idempotencyKey":"r-1"}"#.into(),
            )),
            false,
        )
        .await;
        assert_eq!(recover.status, 200, "{}", recover.body);
        assert_eq!(recover.body["backupSharePairIds"], ids);
        assert!(recover.body["sealedGenerateResponse"].is_string());
        let no_idempotency =
            call(&s, Method::POST, "/clients/c1/backups/recover", None, false).await;
        assert_eq!(no_idempotency.status, 400, "{}", no_idempotency.body);
        assert_eq!(no_idempotency.body["error"]["field"], "idempotencyKey");
        let no_key = Some(Zeroizing::new(r#"{"idempotencyKey":"r-2"}"#.into()));
        let no_key = call(
            &s,
            Method::POST,
            "/clients/c1/backups/recover",
            no_key,
            false,
        )
        .await;
        assert_eq!(no_key.status, 400, "{}", no_key.body);
        assert_eq!(no_key.body["error"]["field"], "clientApiKey");
    }

    #[tokio::test]
    async fn operator_routes_refuse_wrong_methods_bodies_and_unknown_clients() {
        let s = svc(FakePortal::default());
        let a = call(&s, Method::POST, "/clients/c1/backups", None, false).await;
        assert_eq!(a.status, 405);
        assert!(a.headers.contains(&(header::ALLOW, "GET".into())));
        let a = call(&s, Method::GET, "/clients/c1/backups/restore", None, false).await;
        assert!(a.headers.contains(&(header::ALLOW, "POST".into())));
        let extra = Zeroizing::new(r#"{"clientApiKey":"sk_live_k","action":"list"}"#.into());
        let a = call(
            &s,
            Method::POST,
            "/clients/c1/backups/verify",
            Some(extra),
            false,
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["field"].as_str()),
            (400, Some("action"))
        );
        assert!(!a.body.to_string().contains("sk_live_k"));
        let a = call(
            &s,
            Method::POST,
            "/clients/nobody/backups/restore",
            None,
            false,
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (404, Some("NO_COMPLETED_BACKUP"))
        );
        let a = call(&s, Method::GET, "/clients/nobody/backups", None, false).await;
        assert_eq!((a.status, a.body["backups"].clone()), (200, json!([])));
    }
}
