//! Operator actions through the built bootstrap: list, verify, restore and recover, by direct
//! invoke and on the API; a sealed restore that the recovery role opens and Portal's recover
//! accepts; a recover whose sealed answer backs the wallet up again; and no secret in any answer
//! or log line.

mod common;

use common::checks::*;
use common::{
    Function, Moto, Sim, failed_ids, function_env, message, operator_env, python_decrypt,
    python_seal, sealed_with_key, sqs_event,
};
use devstack::poller::{Queues, poll_once};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};
use std::time::Duration;

/// Invokes an operator action; the answer's JSON, or the function error's.
async fn act(f: &Function, action: &str, client: &str, key: Option<&str>) -> Answer {
    let mut payload = json!({"action": action, "clientId": client});
    if let Some(key) = key {
        payload["clientApiKey"] = json!(key);
    }
    if action == "recover" {
        payload["idempotencyKey"] = json!(format!("recovery-of-{client}"));
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

/// Opens a sealed restore answer as the recovery role would: with the independent Python reader,
/// under the backup-response context of `client`. Any other context fails.
fn open_restored(moto: &Moto, client: &str, answer: &Value) -> String {
    assert!(
        answer.get("backupResponse").is_none(),
        "a restore answers sealed, never in the clear"
    );
    let sealed = answer["sealedBackupResponse"]
        .as_str()
        .expect("sealedBackupResponse");
    assert!(
        python_decrypt(
            &moto.endpoint,
            sealed,
            &json!({"clientId": client, "purpose": "generate-response"})
        )
        .is_err(),
        "a sealed restore opens under its own context only"
    );
    let plain = python_decrypt(
        &moto.endpoint,
        sealed,
        &json!({"clientId": client, "purpose": "backup-response"}),
    )
    .expect("the sealed restore opens under its context");
    String::from_utf8(plain).expect("utf-8")
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
    let op = Function::start(&operator_env(&function_env(&moto, &sim, "SELF_MANAGED"))).await;
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
    let Answer::Response(list) = act(&op, "list", &client, None).await else {
        panic!("list failed: {}", op.logs())
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
    // The wallets' addresses, recorded at backup time, are the simulator's wallets'.
    for p in backup_pairs(&sim, &client).await {
        let curve = p["curve"].as_str().unwrap();
        assert_eq!(backups[0]["addresses"][curve], p["address"], "{list}");
    }

    // verify: ok per curve, and no share in the answer.
    let Answer::Response(verify) = act(&op, "verify", &client, None).await else {
        panic!("verify failed: {}", op.logs())
    };
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["curves"]["SECP256K1"], "ok");
    assert_eq!(verify["curves"]["ED25519"], "ok");
    let mut secrets = secrets_of(&key, &generate);
    secrets.extend(assert_self_managed_backup(&moto, &sim, &client).await);
    assert_no_secret_in(&verify.to_string(), &secrets);

    // restore (sealed) → opened by the recovery role → /v1/recover: Portal accepts the restored
    // backup and issues new signing shares.
    let Answer::Response(restored) = act(&op, "restore", &client, None).await else {
        panic!("restore failed: {}", op.logs())
    };
    let ids: Vec<String> = serde_json::from_value(restored["backupSharePairIds"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter().all(|id| pairs.contains(id)),
        "{ids:?} vs {pairs:?}"
    );
    let backup_response = &open_restored(&moto, &client, &restored);
    let doc: Value = serde_json::from_str(backup_response).unwrap();
    assert_eq!(doc["SECP256K1"]["id"], ids[0].as_str());
    assert_eq!(doc["ED25519"]["id"], ids[1].as_str());
    let r = recover(&sim, &key, backup_response).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let recovered: Value = r.json().await.unwrap();
    assert!(recovered["SECP256K1"]["share"].is_string() && recovered["ED25519"]["id"].is_string());

    // Portal-managed: read back from Portal, which needs the client's key.
    let Answer::Error(e) = act(&op, "restore", &pm_client, None).await else {
        panic!("a Portal-managed restore without a key must fail")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    assert!(e["errorMessage"].as_str().unwrap().contains("clientApiKey"));
    let Answer::Response(pm) = act(&op, "restore", &pm_client, Some(&pm_key)).await else {
        panic!("Portal-managed restore failed: {}", op.logs())
    };
    let pm_response = open_restored(&moto, &pm_client, &pm);
    let r = recover(&sim, &pm_key, &pm_response).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // The same actions on the IAM-authenticated API routes.
    let (status, list) = api_act(&op, "GET", &format!("/clients/{client}/backups"), None).await;
    assert_eq!(
        (status, &list["backups"][0]["status"]),
        (200, &json!("COMPLETED")),
        "{list}"
    );
    let (status, verify) = api_act(
        &op,
        "POST",
        &format!("/clients/{client}/backups/verify"),
        None,
    )
    .await;
    assert_eq!((status, &verify["ok"]), (200, &json!(true)), "{verify}");
    let (status, restored) = api_act(
        &op,
        "POST",
        &format!("/clients/{client}/backups/restore"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    let r = recover(&sim, &key, &open_restored(&moto, &client, &restored)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let path = format!("/clients/{pm_client}/backups/restore");
    let (status, e) = api_act(&op, "POST", &path, None).await;
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("clientApiKey")),
        "{e}"
    );
    let (status, pm_api) = api_act(&op, "POST", &path, Some(json!({"clientApiKey": pm_key}))).await;
    assert_eq!(status, 200, "{pm_api}");
    assert_eq!(pm_api["backupSharePairIds"], pm["backupSharePairIds"]);
    assert_eq!(open_restored(&moto, &pm_client, &pm_api), pm_response);
    let (status, e) = api_act(&op, "POST", "/clients/nobody/backups/verify", None).await;
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
    let Answer::Response(verify) = act(&op, "verify", &client, None).await else {
        panic!("verify of a tampered backup still answers: {}", op.logs())
    };
    assert_eq!(verify["ok"], false, "{verify}");
    assert_ne!(verify["curves"]["SECP256K1"], "ok");
    assert_eq!(verify["curves"]["ED25519"], "ok");
    let Answer::Error(e) = act(&op, "restore", &client, None).await else {
        panic!("a tampered backup must not restore")
    };
    assert_eq!(e["errorType"], "DEPENDENCY_FAILED", "{e}");

    // A client with no backup, and a malformed action.
    let Answer::Error(e) = act(&op, "restore", "nobody", None).await else {
        panic!("no backup, no restore")
    };
    assert_eq!(e["errorType"], "NO_COMPLETED_BACKUP", "{e}");
    let Answer::Error(e) = act(&op, "drop", &client, None).await else {
        panic!("unknown action")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    // The right to back up is not the right to restore: the backup function refuses every
    // operator action by name, and the operator function refuses backups.
    for action in ["list", "verify", "restore", "recover", "rotate", "drill"] {
        let Answer::Error(e) = act(&f, action, &client, Some("k")).await else {
            panic!("{action} answered by the backup function")
        };
        assert_eq!(e["errorType"], "OperatorActionRefused", "{e}");
        assert!(
            e["errorMessage"]
                .as_str()
                .unwrap()
                .contains(&format!("`{action}`"))
        );
    }
    let (status, _) = api_act(
        &f,
        "POST",
        &format!("/clients/{client}/backups/restore"),
        None,
    )
    .await;
    assert_eq!(
        status, 404,
        "the operator routes are not the backup function's"
    );
    let Answer::Error(e) = op.invoke(&sqs_event(&[("m".into(), "{}".into())])).await else {
        panic!("a backup answered by the operator function")
    };
    assert_eq!(e["errorType"], "WrongFunction", "{e}");
    assert_no_secret_in(&format!("{}{}", f.logs(), op.logs()), &secrets);
}

/// Opens a sealed generate response (a recover answer) to learn its secrets, as the test's
/// leak check needs them; the function never shows them.
fn open_recovered(moto: &Moto, client: &str, sealed: &str) -> Value {
    let plain = python_decrypt(
        &moto.endpoint,
        sealed,
        &json!({"clientId": client, "purpose": "generate-response"}),
    )
    .expect("a recover answer opens under the generate-response context");
    serde_json::from_slice(&plain).expect("JSON")
}

#[tokio::test]
async fn recover_answers_new_signing_shares_sealed_that_back_the_wallet_up_again_and_nothing_leaks()
{
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    // The deployed default: sealed input required (the API key sealed too).
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.retain(|(k, _)| k != "REQUIRE_SEALED_INPUT");
    let f = Function::start(&env).await;
    // The operator function enqueues the recovered shares on the backup function's queue.
    let queue = Queues::create(
        &moto.sdk,
        "portal-backup-recovered",
        Duration::from_secs(30),
        3,
    )
    .await
    .expect("queue");
    let mut op_env = operator_env(&env);
    op_env.push(("BACKUP_QUEUE_URL".into(), queue.url.clone()));
    let op = Function::start(&op_env).await;
    let (client, key, generate) = sim.new_client(31).await;
    let sealed = sealed_with_key(&moto, &client, &key, &generate);
    let records = [
        (
            "key-sealed".to_owned(),
            json!({"clientId": client, "sealedGenerateResponse": sealed}).to_string(),
        ),
        (
            "key-in-the-clear".to_owned(),
            json!({"clientId": client, "clientApiKey": key,
                   "sealedGenerateResponse": python_seal(&moto.endpoint, &moto.key_id, &client, &generate)})
            .to_string(),
        ),
    ];
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), ["key-in-the-clear"], "{}", f.logs());
    assert!(
        f.logs().contains("seal it with the generate response"),
        "the clear key is refused by name"
    );
    let mut secrets = secrets_of(&key, &generate);
    secrets.extend(assert_self_managed_backup(&moto, &sim, &client).await);

    // recover needs the key (Portal authenticates the client) and costs no Portal call without it.
    let Answer::Error(e) = act(&op, "recover", &client, None).await else {
        panic!("recover without a key must fail")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    assert_eq!(sim.calls("recover").await, 0);
    let Answer::Response(recovered) = act(&op, "recover", &client, Some(&key)).await else {
        panic!("recover failed: {}", op.logs())
    };
    assert_eq!(sim.calls("recover").await, 1);
    let new_ids: Vec<String> =
        serde_json::from_value(recovered["signingSharePairIds"].clone()).unwrap();
    let sealed_new = recovered["sealedGenerateResponse"].as_str().unwrap();
    let opened = open_recovered(&moto, &client, sealed_new);
    assert_eq!(
        opened["clientApiKey"],
        key.as_str(),
        "the key is sealed with the shares"
    );
    assert_eq!(
        opened["generateResponse"]["SECP256K1"]["id"],
        new_ids[0].as_str()
    );
    assert_eq!(
        opened["generateResponse"]["ED25519"]["id"],
        new_ids[1].as_str()
    );
    secrets.extend(secrets_of(&key, &opened["generateResponse"]));

    // A repeat under the same key (an answer lost on the way): the same sealed shares, and
    // Portal is not called again.
    let Answer::Response(repeated) = act(&op, "recover", &client, Some(&key)).await else {
        panic!("repeat failed: {}", op.logs())
    };
    assert_eq!(sim.calls("recover").await, 1, "Portal called once");
    assert_eq!(repeated["sealedGenerateResponse"], sealed_new);
    assert_eq!(repeated["repeated"], true);
    assert_eq!(repeated["backupMessageId"], recovered["backupMessageId"]);
    assert!(recovered["backupMessageId"].is_string(), "{recovered}");

    // No caller sends anything: the backup function takes the enqueued shares from its queue
    // (as the event source mapping would) and backs the wallet up again.
    let backup_fn = &f;
    let poll = poll_once(&queue, 10, |ev| async move {
        backup_fn.invoke_within(&ev, Duration::from_secs(60)).await
    })
    .await
    .expect("poll");
    assert_eq!(
        (poll.received, poll.deleted),
        (1, 1),
        "{poll:?}: {}",
        f.logs()
    );
    assert_eq!(queue.depth(&queue.url).await.unwrap(), 0);
    let Answer::Response(list) = act(&op, "list", &client, None).await else {
        panic!("list failed: {}", op.logs())
    };
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{list}");
    assert!(
        backups
            .iter()
            .any(|b| b["status"] == "COMPLETED" && b["signingSharePairIds"] == json!(new_ids)),
        "the recovered signing shares are backed up: {list}"
    );

    // On the API, the audit line names the IAM caller.
    let path = format!("/clients/{client}/backups/recover");
    let (status, api_recovered) = api_act(
        &op,
        "POST",
        &path,
        Some(json!({"clientApiKey": key, "idempotencyKey": "recovery-on-the-api"})),
    )
    .await;
    assert_eq!(status, 200, "{api_recovered}");
    let api_opened = open_recovered(
        &moto,
        &client,
        api_recovered["sealedGenerateResponse"].as_str().unwrap(),
    );
    secrets.extend(secrets_of(&key, &api_opened["generateResponse"]));

    // A deployment that allows plaintext restore answers it in the clear; this one never does.
    let Answer::Response(sealed_restore) = act(&op, "restore", &client, None).await else {
        panic!("restore failed: {}", op.logs())
    };
    let restored: Value =
        serde_json::from_str(&open_restored(&moto, &client, &sealed_restore)).unwrap();
    for curve in ["SECP256K1", "ED25519"] {
        secrets.push(restored[curve]["share"].as_str().unwrap().to_owned());
    }
    let mut plain_env = env.clone();
    plain_env.push(("ALLOW_PLAINTEXT_RESTORE".into(), "true".into()));
    let plain = Function::start(&operator_env(&plain_env)).await;
    let Answer::Response(plain_restore) = act(&plain, "restore", &client, None).await else {
        panic!("plaintext restore failed: {}", plain.logs())
    };
    assert!(plain_restore.get("sealedBackupResponse").is_none());
    let plain_doc: Value =
        serde_json::from_str(plain_restore["backupResponse"].as_str().unwrap()).unwrap();
    assert_eq!(
        plain_doc, restored,
        "the same backup, in the clear where allowed"
    );

    // Every restore and recover is audited with its caller and counted; nothing secret in any
    // answer or log line.
    let logs = format!("{}{}", f.logs(), op.logs());
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("backup key material answered"))
        .collect();
    // recover, its repeat (answered from the record), recover on the API, restore.
    assert_eq!(audit.len(), 4, "{logs}");
    assert!(
        audit.iter().any(
            |l| l.contains(r#""caller":"arn:aws:iam::123456789012:user/operator""#)
                && l.contains("claimed by the event")
        ),
        "an event's caller is marked as the event's claim: {audit:?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("CloudTrail data events")),
        "a direct invoke says where its caller is recorded: {audit:?}"
    );
    let restores = logs
        .lines()
        .filter(|l| l.contains("CloudWatchMetrics") && l.contains(r#""Restores":1"#))
        .count();
    assert_eq!(
        restores, 4,
        "one Restores metric per answered restore and recover (a repeat hands the shares out again)"
    );
    assert!(
        logs.contains("restore refused or failed"),
        "a refused recover is audited too"
    );
    for text in [
        recovered.to_string(),
        api_recovered.to_string(),
        sealed_restore.to_string(),
        logs,
    ] {
        assert_no_secret_in(&text, &secrets);
    }
}
