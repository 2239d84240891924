//! Portal-managed eject through the simulator over real HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use devstack::client::SimClient;
use devstack::sim::{SimOptions, serve};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "test-api-key";
const CLIENT: &str = "client-a";

struct Sim {
    client: SimClient,
}

impl Sim {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, SimOptions::default()));
        let sim = Self {
            client: SimClient::new(format!("http://{addr}")),
        };
        sim.client.register(KEY, CLIENT).await.unwrap();
        sim
    }

    async fn call_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, (), Value) {
        let reply = self
            .client
            .call(key, method, path, body.as_ref())
            .await
            .unwrap();
        (reply.status, (), reply.body)
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

/// Portal-managed eject: the custodian enables it for one wallet, the client fetches the
/// custodian share and its own stored cipher text of the newest stored backup, then completes.
#[tokio::test]
async fn portal_managed_eject_endpoints() {
    let sim = Sim::start().await;
    sim.admin("custodians", json!({"apiKey": "cust-key"})).await;
    let generated = sim.generate().await;
    let (_, backup) = sim.backup(&generated).await;
    let pair_id = backup["SECP256K1"]["id"].as_str().unwrap().to_owned();
    let (status, _) = sim
        .call(
            Method::PATCH,
            &store_path(&backup["SECP256K1"]["id"]),
            Some(json!({"clientCipherText": "sealed-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sim
        .call(
            Method::PATCH,
            "/api/v3/clients/me/backup-share-pairs",
            Some(json!({"status": "STORED_CLIENT_BACKUP_SHARE", "backupSharePairIds": [pair_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, me) = sim.call(Method::GET, "/api/v3/clients/me", None).await;
    let wallet = me["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["curve"] == "SECP256K1")
        .unwrap();
    let wallet_id = wallet["id"].as_str().unwrap();
    let shares_path = format!("/api/v3/clients/me/wallets/{wallet_id}/ejectable-backup-shares");
    let complete_path = format!("/api/v3/clients/me/wallets/{wallet_id}/complete-eject");
    let enable_path = format!("/api/v3/custodians/me/clients/{CLIENT}/enable-eject");

    // Not enabled yet; the client's key is not a custodian's.
    let (status, body) = sim.call(Method::GET, &shares_path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = sim
        .call_as(
            Some(KEY),
            Method::PATCH,
            &enable_path,
            Some(json!({"walletId": wallet_id})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = sim
        .call_as(
            Some("cust-key"),
            Method::PATCH,
            &enable_path,
            Some(json!({"walletId": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, _, body) = sim
        .call_as(
            Some("cust-key"),
            Method::PATCH,
            &enable_path,
            Some(json!({"walletId": wallet_id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["ejectableUntil"].as_str().unwrap().ends_with('Z'));
    let (status, body) = sim.call(Method::GET, &shares_path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["encryptedClientBackupShare"], "sealed-1");
    let custodian: Value =
        serde_json::from_str(body["custodianBackupShare"].as_str().unwrap()).unwrap();
    assert_eq!(custodian["clientId"], CLIENT);
    // The custodian half and the client half name the same wallet public key.
    let client_half = decode_share(&backup["SECP256K1"]["share"]);
    assert_eq!(custodian["x"], client_half["pubkey"]["x"]);
    assert_eq!(custodian["serverBk"], client_half["bks"]["server"]["x"]);

    let (status, _) = sim
        .call(Method::PATCH, &complete_path, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = sim.call(Method::GET, &shares_path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let state = sim.state().await;
    assert_eq!(state["calls"]["enable-eject"], 3);
    assert_eq!(state["calls"]["ejectable-backup-shares"], 3);
    assert_eq!(state["calls"]["complete-eject"], 1);
}
