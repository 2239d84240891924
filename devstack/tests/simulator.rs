//! End-to-end tests of the simulator over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use devstack::client::SimClient;
use devstack::sim::{DEMO_API_KEY, DEMO_CLIENT_ID, SimOptions, demo_generate_response, serve};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "test-api-key";
const CLIENT: &str = "client-a";

/// A running simulator and the typed client for it.
struct Sim {
    base: String,
    http: Client,
    client: SimClient,
}

impl Sim {
    async fn start() -> Self {
        Self::start_with(SimOptions::default()).await
    }

    async fn start_with(options: SimOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, options));
        let client = SimClient::new(format!("http://{addr}"));
        let sim = Self {
            base: client.base().to_owned(),
            http: client.http().clone(),
            client,
        };
        sim.admin("clients", json!({"apiKey": KEY, "clientId": CLIENT}))
            .await;
        sim
    }

    /// Sends a Portal call with `key` (or no Authorization header); returns status, headers, body.
    async fn call_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let reply = self
            .client
            .call(key, method, path, body.as_ref())
            .await
            .unwrap();
        (reply.status, reply.headers, reply.body)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_as(Some(KEY), method, path, body).await;
        (status, body)
    }

    async fn admin(&self, what: &str, body: Value) {
        let status = self.client.admin(what, &body).await.unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT, "admin {what}");
    }

    async fn state(&self) -> Value {
        self.client.state().await.unwrap()
    }

    async fn pair(&self, id: &str) -> Value {
        self.client.pair(id).await.unwrap()
    }

    async fn generate(&self) -> Value {
        self.client.generate(KEY).await.unwrap()
    }

    async fn backup(&self, generate: &Value) -> (StatusCode, Value) {
        let reply = self.client.backup(KEY, generate).await.unwrap();
        (reply.status, reply.body)
    }
}

fn decode_share(share: &Value) -> Value {
    let bytes = STANDARD.decode(share.as_str().unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn store_path(id: &Value) -> String {
    format!(
        "/api/v3/clients/me/backup-share-pairs/{}",
        id.as_str().unwrap()
    )
}

#[tokio::test]
async fn auth_missing_and_wrong() {
    let sim = Sim::start().await;
    let (status, _, body) = sim
        .call_as(None, Method::POST, "/v1/generate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!("Authorization header is missing"));

    let (status, _, body) = sim
        .call_as(Some("nope"), Method::GET, "/api/v3/clients/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": {"id": "AUTH_FAILED", "message": "Invalid API key", "code": 401}})
    );
}

#[tokio::test]
async fn generate_shape() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;
    for curve in ["SECP256K1", "ED25519"] {
        let id = generated[curve]["id"].as_str().unwrap();
        assert_eq!(id.len(), 25);
        assert!(id.starts_with("cm"));
        let doc = decode_share(&generated[curve]["share"]);
        assert_eq!(doc["clientId"], CLIENT);
        assert_eq!(doc["signingSharePairId"], id);
        // Decimal strings, as Portal writes its numbers.
        let decimal = |v: &Value| v.as_str().unwrap().bytes().all(|b| b.is_ascii_digit());
        assert!(decimal(&doc["share"]));
        assert!(decimal(&doc["pubkey"]["X"]) && decimal(&doc["pubkey"]["Y"]));
        assert!(doc["ssid"].is_string() && doc["partialPubkey"]["client"]["x"].is_string());
        let pair = sim.pair(id).await;
        assert_eq!(pair["kind"], "signing");
        assert_eq!(pair["curve"], curve);
    }
}

#[tokio::test]
async fn full_portal_managed_flow() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;
    let (status, backup) = sim.backup(&generated).await;
    assert_eq!(status, StatusCode::OK);

    let mut ids = Vec::new();
    for curve in ["SECP256K1", "ED25519"] {
        let id = &backup[curve]["id"];
        let doc = decode_share(&backup[curve]["share"]);
        assert_eq!(&doc["backupSharePairId"], id);
        assert_eq!(doc["signingSharePairId"], generated[curve]["id"]);
        assert_eq!(doc["clientId"], CLIENT);
        let pair = sim.pair(id.as_str().unwrap()).await;
        assert_eq!(pair["kind"], "backup");
        assert_eq!(pair["status"], "incomplete");
        assert_eq!(pair["backupMethod"], "CUSTOM");
        assert_eq!(pair["signingSharePairId"], generated[curve]["id"]);

        let cipher = format!("cipher-{curve}");
        let (status, body) = sim
            .call(
                Method::PATCH,
                &store_path(id),
                Some(json!({"clientCipherText": cipher})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({}));
        let (status, body) = sim
            .call(
                Method::GET,
                &format!("{}/cipher-text", store_path(id)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"cipherText": cipher}));
        ids.push(id.clone());
    }

    let (status, body) = sim
        .call(
            Method::PATCH,
            "/api/v3/clients/me/backup-share-pairs",
            Some(json!({"status": "STORED_CLIENT_BACKUP_SHARE", "backupSharePairIds": ids})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);

    let state = sim.state().await;
    let backups: Vec<&Value> = state["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup")
        .collect();
    assert_eq!(backups.len(), 2);
    for pair in backups {
        assert_eq!(pair["status"], "completed");
        assert_eq!(pair["clientId"], CLIENT);
        assert!(pair["clientCipherText"].is_string());
    }
    assert_eq!(state["calls"]["generate"], 1);
    assert_eq!(state["calls"]["backup"], 1);
    assert_eq!(state["calls"]["store-cipher-text"], 2);
    assert_eq!(state["calls"]["get-cipher-text"], 2);
    assert_eq!(state["calls"]["mark-stored"], 1);
    assert_eq!(state["calls"]["recover"], 0);

    let (status, me) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], CLIENT);
    let wallets = me["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 2);
    for wallet in wallets {
        let backups = wallet["backupSharePairs"].as_array().unwrap();
        assert_eq!(backups.len(), 1);
        assert_eq!(backups[0]["status"], "completed");
        assert_eq!(backups[0]["backupMethod"], "CUSTOM");
        assert!(backups[0]["createdAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(wallet["signingSharePairs"][0]["status"], "completed");
    }

    // Recover with the seed-guide form of the backup response.
    let seed_form = json!({
        "secp256k1Share": backup["SECP256K1"],
        "ed25519Share": backup["ED25519"],
    });
    let (status, recovered) = sim
        .call(
            Method::POST,
            "/v1/recover",
            Some(json!({"backupResponse": seed_form.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for curve in ["SECP256K1", "ED25519"] {
        let doc = decode_share(&recovered[curve]["share"]);
        assert_eq!(doc["signingSharePairId"], recovered[curve]["id"]);
        let original = decode_share(&generated[curve]["share"]);
        assert_eq!(doc["pubkey"], original["pubkey"]);
    }
}

#[tokio::test]
async fn backup_rejects_bad_input() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;

    let mut unknown = generated.clone();
    unknown["SECP256K1"]["id"] = json!("cmunknownunknownunknown00");
    let (status, body) = sim.backup(&unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["id"], "SHARE_PARSING_FAILED");
    assert_eq!(body["error"]["code"], 400);

    let mut tampered = generated.clone();
    tampered["ED25519"]["share"] = generated["SECP256K1"]["share"].clone();
    let (status, body) = sim.backup(&tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["id"], "SHARE_PARSING_FAILED");

    let missing_curve = json!({"SECP256K1": generated["SECP256K1"]});
    let (status, body) = sim.backup(&missing_curve).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["id"], "BAD_REQUEST");
    assert!(body["message"].is_string());

    let (status, body) = sim
        .call(
            Method::POST,
            "/v1/backup",
            Some(json!({"generateResponse": "{not json"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["id"], "BAD_REQUEST");

    // Another client's signing pairs are unknown to this client.
    sim.admin(
        "clients",
        json!({"apiKey": "key-b", "clientId": "client-b"}),
    )
    .await;
    let body = json!({"generateResponse": generated.to_string()});
    let (status, _, body) = sim
        .call_as(Some("key-b"), Method::POST, "/v1/backup", Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["id"], "SHARE_PARSING_FAILED");

    // Lowercase curve keys are accepted.
    let lower = json!({"secp256k1": generated["SECP256K1"], "ed25519": generated["ED25519"]});
    let (status, _) = sim.backup(&lower).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn each_response_form() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;
    for (form, keys) in [
        ("upper", ["SECP256K1", "ED25519"]),
        ("lower", ["secp256k1", "ed25519"]),
        ("seed", ["secp256k1Share", "ed25519Share"]),
    ] {
        sim.admin("config", json!({"responseForm": form})).await;
        let (status, body) = sim.backup(&generated).await;
        assert_eq!(status, StatusCode::OK, "{form}");
        let object = body.as_object().unwrap();
        assert_eq!(object.len(), 2, "{form}");
        for key in keys {
            let doc = decode_share(&body[key]["share"]);
            assert_eq!(doc["backupSharePairId"], body[key]["id"], "{form}");
        }
    }
    // Each backup created two new pairs.
    let state = sim.state().await;
    let backups = state["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup")
        .count();
    assert_eq!(backups, 6);
}

#[tokio::test]
async fn fault_once_then_ok() {
    let sim = Sim::start().await;
    sim.admin(
        "faults",
        json!({"route": "generate", "count": 1, "status": 503, "retryAfter": 2}),
    )
    .await;
    let (status, headers, body) = sim
        .call_as(Some(KEY), Method::POST, "/v1/generate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(body["error"]["code"], 503);
    assert!(body["error"]["id"].is_string());
    sim.generate().await;

    sim.admin(
        "faults",
        json!({"route": "me", "status": 429, "body": {"custom": true}}),
    )
    .await;
    let (status, body) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, json!({"custom": true}));

    let state = sim.state().await;
    assert_eq!(state["calls"]["generate"], 2);
    assert_eq!(state["calls"]["me"], 1);
}

#[tokio::test]
async fn hang_fault_does_not_block_others() {
    let sim = Sim::start().await;
    sim.admin("faults", json!({"route": "generate", "hang": true}))
        .await;
    let hung = sim
        .http
        .post(format!("{}/v1/generate", sim.base))
        .bearer_auth(KEY)
        .json(&json!({}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    let (status, _) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    assert_eq!(status, StatusCode::OK);
    sim.generate().await;
}

#[tokio::test]
async fn store_cipher_text_methods_and_errors() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;
    let (_, backup) = sim.backup(&generated).await;
    let path = store_path(&backup["SECP256K1"]["id"]);
    let body = json!({"clientCipherText": "c1"});

    let (status, _) = sim.call(Method::POST, &path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK);

    sim.admin("config", json!({"postAllowed": false})).await;
    let (status, headers, _) = sim
        .call_as(Some(KEY), Method::POST, &path, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "PATCH");
    let (status, _) = sim.call(Method::PATCH, &path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK);

    sim.admin(
        "config",
        json!({"postAllowed": true, "patchAllowed": false}),
    )
    .await;
    let (status, _) = sim.call(Method::PATCH, &path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = sim
        .call(Method::POST, &path, Some(json!({"clientCipherText": "c2"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let pair = sim.pair(backup["SECP256K1"]["id"].as_str().unwrap()).await;
    assert_eq!(pair["clientCipherText"], "c2");

    // Bad body, unknown pair, signing pair, other client's pair.
    let (status, body_out) = sim
        .call(Method::POST, &path, Some(json!({"clientCipherText": ""})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body_out["id"], "BAD_REQUEST");
    let not_found = json!({"error": {"id": "NOT_FOUND", "message": "Backup share pair not found", "code": 404}});
    for bad in [
        store_path(&json!("cmunknownunknownunknown00")),
        store_path(&generated["SECP256K1"]["id"]),
    ] {
        let (status, out) = sim.call(Method::POST, &bad, Some(body.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(out, not_found);
    }
    sim.admin(
        "clients",
        json!({"apiKey": "key-b", "clientId": "client-b"}),
    )
    .await;
    let (status, _, _) = sim
        .call_as(Some("key-b"), Method::POST, &path, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No cipher text stored yet for the other curve.
    let other = format!("{}/cipher-text", store_path(&backup["ED25519"]["id"]));
    let (status, out) = sim.call(Method::GET, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(out["error"]["id"], "NOT_FOUND");
}

#[tokio::test]
async fn mark_stored_validation_is_atomic() {
    let sim = Sim::start().await;
    let generated = sim.generate().await;
    let (_, backup) = sim.backup(&generated).await;
    let id = backup["SECP256K1"]["id"].clone();
    let path = "/api/v3/clients/me/backup-share-pairs";

    let (status, body) = sim
        .call(
            Method::PATCH,
            path,
            Some(json!({"status": "STORED_CLIENT_BACKUP_SHARE", "backupSharePairIds": [id, "cmnope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["id"], "NOT_FOUND");
    assert_eq!(sim.pair(id.as_str().unwrap()).await["status"], "incomplete");

    for bad in [
        json!({"status": "DONE", "backupSharePairIds": [id]}),
        json!({"status": "STORED_CLIENT_BACKUP_SHARE", "backupSharePairIds": []}),
        json!({"status": "STORED_CLIENT_BACKUP_SHARE"}),
    ] {
        let (status, body) = sim.call(Method::PATCH, path, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["id"], "BAD_REQUEST");
    }

    // Recover needs completed backup pairs.
    let (status, body) = sim
        .call(
            Method::POST,
            "/v1/recover",
            Some(json!({"backupResponse": backup.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["id"], "SHARE_PARSING_FAILED");

    let (status, _) = sim
        .call(
            Method::PATCH,
            path,
            Some(json!({"status": "STORED_CLIENT_BACKUP_SHARE_KEY", "backupSharePairIds": [id]})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.pair(id.as_str().unwrap()).await["status"], "completed");
}

#[tokio::test]
async fn demo_client_and_reset() {
    let sim = Sim::start().await;
    let demo = demo_generate_response();
    assert_eq!(demo["SECP256K1"]["id"], "cmdemosecp256k1signing000");
    assert_eq!(demo["ED25519"]["id"], "cmdemoed25519signing0000");
    let body = json!({"generateResponse": demo.to_string()});
    for _ in 0..2 {
        let (status, _, out) = sim
            .call_as(
                Some(DEMO_API_KEY),
                Method::POST,
                "/v1/backup",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            decode_share(&out["SECP256K1"]["share"])["clientId"],
            DEMO_CLIENT_ID
        );
    }
    assert_eq!(sim.state().await["pairs"].as_array().unwrap().len(), 6);

    sim.admin("faults", json!({"route": "backup", "count": 5}))
        .await;
    sim.admin("config", json!({"responseForm": "seed"})).await;
    sim.admin("reset", json!({})).await;
    let state = sim.state().await;
    assert_eq!(state["pairs"].as_array().unwrap().len(), 2);
    assert_eq!(state["calls"]["backup"], 0);
    // Faults and config are gone; clients are kept.
    let (status, _, out) = sim
        .call_as(Some(DEMO_API_KEY), Method::POST, "/v1/backup", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(out.get("SECP256K1").is_some());
    let (status, _) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn no_demo_and_unknown_routes() {
    let sim = Sim::start_with(SimOptions {
        latency: Duration::from_millis(1),
        demo: false,
    })
    .await;
    let (status, _, _) = sim
        .call_as(Some(DEMO_API_KEY), Method::GET, "/api/v3/clients/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(sim.state().await["pairs"].as_array().unwrap().is_empty());

    let (status, _) = sim.call(Method::GET, "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = sim
        .http
        .get(format!("{}/_sim/pairs/cmnope", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = sim
        .http
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"route": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn latency_is_applied() {
    let sim = Sim::start().await;
    sim.admin("config", json!({"latencyMs": 150})).await;
    let started = std::time::Instant::now();
    let (status, _) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

/// A customer's webhook server for the tests: stores shares per client, checks the secret.
async fn webhook_server(secret: &'static str, lose_shares: bool) -> String {
    use axum::Json;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    type Store = Arc<Mutex<Vec<(String, String)>>>;
    let store: Store = Arc::default();
    let ok = move |h: &HeaderMap| h.get("x-webhook-secret").is_some_and(|v| v == secret);
    let backup = {
        let store = store.clone();
        move |h: HeaderMap, Json(body): Json<Value>| async move {
            if !ok(&h) {
                return StatusCode::UNAUTHORIZED;
            }
            assert_eq!(body["backupMethod"], "CUSTOM");
            if !lose_shares {
                let client = body["clientId"].as_str().unwrap().to_owned();
                let share = body["share"].as_str().unwrap().to_owned();
                store.lock().unwrap().push((client, share));
            }
            StatusCode::OK
        }
    };
    let fetch = move |h: HeaderMap, Json(body): Json<Value>| async move {
        if !ok(&h) {
            return (StatusCode::UNAUTHORIZED, Json(Value::Null));
        }
        let shares: Vec<String> = store
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| body["clientId"] == c.as_str())
            .map(|(_, s)| s.clone())
            .collect();
        (StatusCode::OK, Json(json!({ "backupShares": shares })))
    };
    let app = axum::Router::new()
        .route("/hooks/backup", post(backup))
        .route("/hooks/backup/fetch", post(fetch));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hooks")
}

#[tokio::test]
async fn self_managed_custody_calls_the_webhooks_during_backup() {
    let sim = Sim::start().await;
    let url = webhook_server("whsec", false).await;
    sim.admin("webhook", json!({"url": url, "secret": "whsec"}))
        .await;
    let generate = sim.generate().await;
    let (status, body) = sim.backup(&generate).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = sim.state().await;
    assert_eq!(state["calls"]["webhook-backup"], 2, "one share per curve");
    assert_eq!(state["calls"]["webhook-fetch"], 1);
    assert_eq!(state["calls"]["webhook-failed"], Value::Null);
    let sent = state["custodianShares"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    for s in sent {
        assert_eq!(s["clientId"], CLIENT);
        // Portal's flat custodian share, as JSON text; the pair id travels beside it.
        let doc: Value = serde_json::from_str(s["share"].as_str().unwrap()).unwrap();
        assert_eq!(doc["clientId"], CLIENT);
        assert!(doc["clientBk"].is_string() && doc["serverPartialPubKey_x"].is_string());
        assert!(s["backupSharePairId"].is_string());
    }
    // Switched off: no more calls.
    sim.admin("webhook", json!({"url": null})).await;
    let (status, _) = sim.backup(&generate).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.state().await["calls"]["webhook-backup"], 2);
}

#[tokio::test]
async fn a_failing_webhook_fails_the_backup_with_webhook_failed() {
    let sim = Sim::start().await;
    let generate = sim.generate().await;
    for (secret, lose, why) in [
        ("wrong", false, "answered 401"),
        ("whsec", true, "did not return the share"),
    ] {
        let url = webhook_server("whsec", lose).await;
        sim.admin(
            "webhook",
            json!({"url": url, "secret": secret, "clientId": CLIENT}),
        )
        .await;
        let (status, body) = sim.backup(&generate).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["error"]["id"], "WEBHOOK_FAILED");
        assert_eq!(body["error"]["code"], 502);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(why) && !message.contains(secret),
            "{message}"
        );
    }
    let state = sim.state().await;
    assert_eq!(state["calls"]["webhook-failed"], 2);
    let backups = state["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup" && p["clientId"] == CLIENT)
        .count();
    assert_eq!(backups, 0, "a failed backup leaves no pair behind");
    assert_eq!(state["custodianShares"], json!([]));
    let (status, _, _) = sim
        .call_as(Some(KEY), Method::POST, "/v1/backup", Some(json!({})))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "bad input is still refused first"
    );
}
