//! Exactly-once effect through the built bootstrap: duplicates, a reused idempotency key, and a
//! process killed mid-step, against moto and the Portal simulator.

mod common;

use common::checks::*;
use common::{Function, Moto, Sim, failed_ids, function_env, message, sqs_event};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

#[tokio::test]
async fn redelivered_and_concurrent_duplicates_create_one_backup() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(20).await;
    let body = message(&client, &key, &generate, None);

    // The same message three times in one batch: one lease wins, the others back off.
    let records: Vec<(String, String)> = (1..=3)
        .map(|n| (format!("dup-{n}"), body.clone()))
        .collect();
    let failed = failed_ids(&f.invoke(&sqs_event(&records)).await);
    assert!(
        failed.len() <= 2,
        "at least one delivery completes: {failed:?}"
    );
    assert_eq!(
        sim.calls("backup").await,
        1,
        "one /v1/backup for three deliveries"
    );
    // SQS redelivers the ones that backed off: they answer with the completed backup.
    let again: Vec<(String, String)> = failed.iter().map(|id| (id.clone(), body.clone())).collect();
    if !again.is_empty() {
        assert_eq!(
            failed_ids(&f.invoke(&sqs_event(&again)).await),
            Vec::<String>::new()
        );
    }
    // And a later redelivery (direct invoke, to see the answer) gets the same backup back.
    let direct: Value = serde_json::from_str(&body).unwrap();
    let first = outcome_ids(&f.invoke(&direct).await);
    let second = outcome_ids(&f.invoke(&direct).await);
    assert_eq!(first, second);
    assert_eq!(sim.calls("backup").await, 1, "never a second backup");
    assert_eq!(sim.calls("mark-stored").await, 1, "marked once");
    assert_eq!(share_items(&moto).await, 2);
    assert_self_managed_backup(&moto, &sim, &client).await;
    let logs = f.logs();
    assert!(logs.contains(r#""resumed_from":"COMPLETED""#));
    // Metrics: one EMF line per delivery, resumed ones counted.
    let emf: Vec<Value> = logs
        .lines()
        .filter(|l| l.contains("CloudWatchMetrics"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total = |name: &str| {
        emf.iter()
            .map(|d| d[name].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(total("BackupCalls"), 1);
    assert!(total("ResumedCheckpoints") >= 2, "{emf:?}");
    assert_eq!(
        total("BackupsCompleted") + total("BackupFailures"),
        emf.len() as u64
    );
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_wallet_is_refused_never_answered_with_the_old_backup()
 {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(21).await;
    let with_key = |generate: &Value| {
        let mut body: Value =
            serde_json::from_str(&message(&client, &key, generate, None)).unwrap();
        body["idempotencyKey"] = json!("one-key-two-wallets");
        body
    };
    let Answer::Response(first) = f.invoke(&with_key(&generate)).await else {
        panic!("the first backup completes")
    };
    assert_eq!(first["status"], "COMPLETED", "{first}");
    // A second wallet of the same client, sent with the same key.
    let second = sim.generate(&key).await;
    let Answer::Error(e) = f.invoke(&with_key(&second)).await else {
        panic!("a reused key with another wallet must fail")
    };
    assert_eq!(e["errorType"], "IDEMPOTENCY_KEY_REUSED", "{e}");
    assert_eq!(
        sim.calls("backup").await,
        1,
        "no backup was made for the second wallet"
    );
    // Through the API the same refusal is a 422 with its code, and SQS fails the message.
    let (status, body) = api_act_body(&f, &with_key(&second)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED")),
        "{body}"
    );
    let failed = failed_ids(
        &f.invoke(&sqs_event(&[("m-1".into(), with_key(&second).to_string())]))
            .await,
    );
    assert_eq!(failed, ["m-1"]);
    // The first wallet's own retry still answers its backup.
    let Answer::Response(again) = f.invoke(&with_key(&generate)).await else {
        panic!("the first wallet's retry answers")
    };
    assert_eq!(again["backupSharePairIds"], first["backupSharePairIds"]);
    assert_eq!(sim.calls("backup").await, 1);
}

/// `POST /backups` through the HTTP API with `body`: the status and the JSON answer.
async fn api_act_body(f: &Function, body: &Value) -> (i64, Value) {
    let event = json!({
        "version": "2.0", "routeKey": "POST /backups", "rawPath": "/backups",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/backups"}},
        "body": body.to_string(), "isBase64Encoded": false
    });
    let Answer::Response(r) = f.invoke(&event).await else {
        panic!("the API answers")
    };
    let answer = serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (r["statusCode"].as_i64().unwrap_or(0), answer)
}

/// Kills the function while Portal hangs on `route`, then redelivers to a fresh process once
/// the dead attempt's lease has expired: the backup completes without a second `/v1/backup`.
async fn crash_while(route: &str, mode: &str) -> (Sim, Moto, String) {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, mode);
    env.push(("PORTAL_REQUEST_TIMEOUT_MS".into(), "60000".into()));
    let mut f = Function::start(&env).await;
    let (client, key, generate) = sim.new_client(30).await;
    let event = sqs_event(&[("m-crash".into(), message(&client, &key, &generate, None))]);
    sim.admin("faults", json!({"route": route, "count": 1, "hang": true}))
        .await;
    let started = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(6);
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        f.invoke_within(&event, deadline),
    )
    .await;
    assert!(answer.is_err(), "the function hangs in {route}");
    f.kill().await;
    tokio::time::sleep(
        deadline.saturating_sub(started.elapsed()) + std::time::Duration::from_millis(500),
    )
    .await;
    let f2 = Function::start(&env).await;
    let answer = f2.invoke(&event).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f2.logs());
    assert_eq!(
        sim.calls("backup").await,
        1,
        "crash in {route}: no second /v1/backup"
    );
    for pair in backup_pairs(&sim, &client).await {
        assert_eq!(pair["status"], "completed");
    }
    (sim, moto, f2.logs())
}

#[tokio::test]
async fn a_crash_while_storing_resumes_from_the_backed_up_checkpoint() {
    let (sim, _moto, logs) = crash_while("store-cipher-text", "PORTAL_MANAGED").await;
    assert!(logs.contains(r#""resumed_from":"BACKED_UP""#), "{logs}");
    assert_eq!(sim.calls("mark-stored").await, 1);
}

#[tokio::test]
async fn a_crash_while_marking_resumes_from_the_backed_up_checkpoint_and_proves_again() {
    // A mark that succeeds at once needs no STORED checkpoint, so a crash mid-mark leaves
    // BACKED_UP: the retry rewrites the same ciphertexts, reads them back, opens them and marks.
    let (sim, moto, logs) = crash_while("mark-stored", "SELF_MANAGED").await;
    assert!(logs.contains(r#""resumed_from":"BACKED_UP""#), "{logs}");
    assert_eq!(
        sim.calls("mark-stored").await,
        2,
        "the hung PATCH and its repeat: safe to re-send"
    );
    assert_eq!(
        share_items(&moto).await,
        2,
        "the same two items, written again"
    );
}
