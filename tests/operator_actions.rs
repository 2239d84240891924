//! Operator actions through the built bootstrap: list, verify and restore, by direct invoke and
//! on the API, and a restored backup that Portal's recover accepts.

mod common;

use common::checks::*;
use common::{Function, Moto, Sim, failed_ids, function_env, message, sqs_event};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

/// Invokes an operator action; the answer's JSON, or the function error's.
async fn act(f: &Function, action: &str, client: &str, key: Option<&str>) -> Answer {
    let mut payload = json!({"action": action, "clientId": client});
    if let Some(key) = key {
        payload["clientApiKey"] = json!(key);
    }
    f.invoke(&payload).await
}

/// An operator route through API Gateway (HTTP API 2.0, IAM authorizer): status and JSON body.
async fn api_act(f: &Function, method: &str, path: &str, body: Option<Value>) -> (i64, Value) {
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "stage": "$default",
            "requestId": "op-req", "routeKey": format!("{method} {path}"),
            "authorizer": {"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
                                   "callerId": "AIDAEXAMPLE", "userArn": "arn:aws:iam::123456789012:user/operator",
                                   "userId": "AIDAEXAMPLE"}},
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "test"},
            "time": "25/Nov/2026:12:00:00 +0000", "timeEpoch": 1795608000000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    let Answer::Response(r) = f.invoke(&event).await else {
        panic!("{method} {path} failed as a function: {}", f.logs())
    };
    let body = serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (r["statusCode"].as_i64().unwrap_or(0), body)
}

/// `POST /v1/recover` at the simulator with a restored `backupResponse`.
async fn recover(sim: &Sim, key: &str, backup_response: &str) -> reqwest::Response {
    sim.http
        .post(format!("{}/v1/recover", sim.url))
        .bearer_auth(key)
        .json(&json!({"backupResponse": backup_response}))
        .send()
        .await
        .expect("recover")
}

#[tokio::test]
async fn a_backup_lists_verifies_and_restores_into_a_recover_portal_accepts() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(1).await;
    let (pm_client, pm_key, pm_generate) = sim.new_client(2).await;
    let answer = f
        .invoke(&sqs_event(&[
            ("m-1".into(), message(&client, &key, &generate, None)),
            (
                "m-2".into(),
                message(&pm_client, &pm_key, &pm_generate, Some("PORTAL_MANAGED")),
            ),
        ]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let pairs: Vec<String> = backup_pairs(&sim, &client)
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();

    // list: state and timestamps, no ciphertexts.
    let Answer::Response(list) = act(&f, "list", &client, None).await else {
        panic!("list failed: {}", f.logs())
    };
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{list}");
    assert_eq!(backups[0]["status"], "COMPLETED");
    assert_eq!(backups[0]["backupMode"], "SELF_MANAGED");
    assert!(
        backups[0]["completedAt"].as_u64().unwrap() >= backups[0]["createdAt"].as_u64().unwrap()
    );
    assert!(
        !list.to_string().contains("pbe1."),
        "a listing carries no ciphertext"
    );

    // verify: ok per curve, and no share in the answer.
    let Answer::Response(verify) = act(&f, "verify", &client, None).await else {
        panic!("verify failed: {}", f.logs())
    };
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["curves"]["SECP256K1"], "ok");
    assert_eq!(verify["curves"]["ED25519"], "ok");
    let mut secrets = secrets_of(&key, &generate);
    secrets.extend(assert_self_managed_backup(&moto, &sim, &client).await);
    assert_no_secret_in(&verify.to_string(), &secrets);

    // restore → /v1/recover: Portal accepts the restored backup and issues new signing shares.
    let Answer::Response(restored) = act(&f, "restore", &client, None).await else {
        panic!("restore failed: {}", f.logs())
    };
    let ids: Vec<String> = serde_json::from_value(restored["backupSharePairIds"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter().all(|id| pairs.contains(id)),
        "{ids:?} vs {pairs:?}"
    );
    let backup_response = restored["backupResponse"].as_str().unwrap();
    let doc: Value = serde_json::from_str(backup_response).unwrap();
    assert_eq!(doc["SECP256K1"]["id"], ids[0].as_str());
    assert_eq!(doc["ED25519"]["id"], ids[1].as_str());
    let r = recover(&sim, &key, backup_response).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let recovered: Value = r.json().await.unwrap();
    assert!(recovered["SECP256K1"]["share"].is_string() && recovered["ED25519"]["id"].is_string());

    // Portal-managed: read back from Portal, which needs the client's key.
    let Answer::Error(e) = act(&f, "restore", &pm_client, None).await else {
        panic!("a Portal-managed restore without a key must fail")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    assert!(e["errorMessage"].as_str().unwrap().contains("clientApiKey"));
    let Answer::Response(pm) = act(&f, "restore", &pm_client, Some(&pm_key)).await else {
        panic!("Portal-managed restore failed: {}", f.logs())
    };
    let r = recover(&sim, &pm_key, pm["backupResponse"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // The same actions on the IAM-authenticated API routes.
    let (status, list) = api_act(&f, "GET", &format!("/clients/{client}/backups"), None).await;
    assert_eq!(
        (status, &list["backups"][0]["status"]),
        (200, &json!("COMPLETED")),
        "{list}"
    );
    let (status, verify) = api_act(
        &f,
        "POST",
        &format!("/clients/{client}/backups/verify"),
        None,
    )
    .await;
    assert_eq!((status, &verify["ok"]), (200, &json!(true)), "{verify}");
    let (status, restored) = api_act(
        &f,
        "POST",
        &format!("/clients/{client}/backups/restore"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    let r = recover(&sim, &key, restored["backupResponse"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let path = format!("/clients/{pm_client}/backups/restore");
    let (status, e) = api_act(&f, "POST", &path, None).await;
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("clientApiKey")),
        "{e}"
    );
    let (status, pm_api) = api_act(&f, "POST", &path, Some(json!({"clientApiKey": pm_key}))).await;
    assert_eq!(status, 200, "{pm_api}");
    assert_eq!(pm_api["backupSharePairIds"], pm["backupSharePairIds"]);
    assert_eq!(pm_api["backupResponse"], pm["backupResponse"]);
    let (status, e) = api_act(&f, "POST", "/clients/nobody/backups/verify", None).await;
    assert_eq!(
        (status, &e["error"]["code"]),
        (404, &json!("NO_COMPLETED_BACKUP")),
        "{e}"
    );

    // A share item swapped for the other curve's ciphertext: verify names it, restore refuses.
    let ddb = moto.dynamodb();
    let other = moto.share_item(&client, &ids[1]).await.unwrap()["cipherText"].clone();
    let mut item = moto.share_item(&client, &ids[0]).await.unwrap();
    item.insert("cipherText".into(), other);
    ddb.put_item()
        .table_name(&moto.table)
        .set_item(Some(item))
        .send()
        .await
        .expect("tamper");
    let Answer::Response(verify) = act(&f, "verify", &client, None).await else {
        panic!("verify of a tampered backup still answers: {}", f.logs())
    };
    assert_eq!(verify["ok"], false, "{verify}");
    assert_ne!(verify["curves"]["SECP256K1"], "ok");
    assert_eq!(verify["curves"]["ED25519"], "ok");
    let Answer::Error(e) = act(&f, "restore", &client, None).await else {
        panic!("a tampered backup must not restore")
    };
    assert_eq!(e["errorType"], "DEPENDENCY_FAILED", "{e}");

    // A client with no backup, and a malformed action.
    let Answer::Error(e) = act(&f, "restore", "nobody", None).await else {
        panic!("no backup, no restore")
    };
    assert_eq!(e["errorType"], "NO_COMPLETED_BACKUP", "{e}");
    let Answer::Error(e) = act(&f, "drop", &client, None).await else {
        panic!("unknown action")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    assert_no_secret_in(&f.logs(), &secrets);
}
