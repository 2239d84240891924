//! The built bootstrap binary, driven through a local Lambda Runtime API as Lambda drives it,
//! against moto (KMS, DynamoDB) and the Portal simulator.

mod common;

use base64::Engine;
use common::{
    Function, Moto, Sim, Webhooks, failed_ids, function_env, message, python_decrypt, python_seal,
    sqs_event,
};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

/// The client's backup pairs at the simulator.
async fn backup_pairs(sim: &Sim, client: &str) -> Vec<Value> {
    let state = sim.state().await;
    state["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup" && p["clientId"] == client)
        .cloned()
        .collect()
}

/// Checks a decrypted `{"share","id"}`: its id, and the share's embedded client and pair ids.
fn check_plaintext(plain: &[u8], client: &str, pair: &str) {
    let doc: Value = serde_json::from_slice(plain).expect("plaintext is JSON");
    assert_eq!(doc["id"], pair);
    let share = base64::engine::general_purpose::STANDARD
        .decode(doc["share"].as_str().unwrap())
        .unwrap();
    let share: Value = serde_json::from_slice(&share).unwrap();
    assert_eq!(share["backupSharePairId"], pair);
    assert_eq!(share["clientId"], client);
}

fn context(client: &str, pair: &Value) -> Value {
    json!({"clientId": client, "backupSharePairId": pair["id"], "curve": pair["curve"]})
}

/// Every completed pair of `client` is stored in the table and decrypts there (Python decryptor).
async fn assert_self_managed_backup(moto: &Moto, sim: &Sim, client: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let pairs = backup_pairs(sim, client).await;
    assert_eq!(pairs.len(), 2, "{client}: one backup pair per curve");
    for pair in &pairs {
        assert_eq!(pair["status"], "completed", "{client}");
        let id = pair["id"].as_str().unwrap();
        let item = moto
            .share_item(client, id)
            .await
            .unwrap_or_else(|| panic!("{client}: item for {id}"));
        assert_eq!(
            item["curve"].as_s().unwrap(),
            pair["curve"].as_str().unwrap()
        );
        let ct = item["cipherText"].as_s().unwrap();
        let plain = python_decrypt(&moto.endpoint, ct, &context(client, pair)).expect("decrypts");
        check_plaintext(&plain, client, id);
        secrets.extend(secrets_of_ciphertext(moto, ct, &context(client, pair)).await);
    }
    secrets
}

/// Every form of a client's secrets a leak could take: the API key, each signing share (base64),
/// and the raw share inside it (hex).
fn secrets_of(key: &str, generate: &Value) -> Vec<String> {
    let mut s = vec![key.to_owned()];
    for curve in ["SECP256K1", "ED25519"] {
        let share = generate[curve]["share"].as_str().unwrap();
        s.push(share.to_owned());
        s.extend(inner_secret(share));
    }
    s
}

/// The `share` field inside a base64 JSON share document.
fn inner_secret(share_b64: &str) -> Option<String> {
    let doc = base64::engine::general_purpose::STANDARD
        .decode(share_b64)
        .ok()?;
    let doc: Value = serde_json::from_slice(&doc).ok()?;
    doc["share"].as_str().map(str::to_owned)
}

/// The secrets a stored backup holds: the client backup share, its raw share, and the plaintext
/// data key (base64 and hex), recovered through KMS from the ciphertext.
async fn secrets_of_ciphertext(moto: &Moto, ct: &str, context: &Value) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let plain = python_decrypt(&moto.endpoint, ct, context).expect("decrypts");
    let doc: Value = serde_json::from_slice(&plain).unwrap();
    let share = doc["share"].as_str().unwrap().to_owned();
    let edk = URL_SAFE_NO_PAD
        .decode(ct.split('.').nth(2).unwrap())
        .unwrap();
    let mut kms_context = std::collections::HashMap::new();
    for k in ["clientId", "backupSharePairId", "curve"] {
        kms_context.insert(k.to_owned(), context[k].as_str().unwrap().to_owned());
    }
    let key = moto
        .kms()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(edk))
        .set_encryption_context(Some(kms_context))
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![STANDARD.encode(&key), URL_SAFE_NO_PAD.encode(&key), hex];
    out.extend(inner_secret(&share));
    out.push(share);
    out
}

fn assert_no_secret_in(logs: &str, secrets: &[String]) {
    assert!(!logs.is_empty());
    for s in secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret appears in the function's output"
        );
    }
}

#[tokio::test]
async fn self_managed_sqs_message_is_stored_verified_and_marked() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    // As Portal runs self-managed custody: the custodian shares go to the webhooks meanwhile.
    let hooks = Webhooks::start(&moto, &sim, &function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(1).await;
    let answer = f
        .invoke(&sqs_event(&[(
            "m-1".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let mut secrets = secrets_of(&key, &generate);
    secrets.extend(assert_self_managed_backup(&moto, &sim, &client).await);
    assert_eq!(sim.calls("backup").await, 1);
    assert_eq!(sim.calls("store-cipher-text").await, 0);
    assert_eq!(sim.calls("mark-stored").await, 1);
    assert_eq!(
        sim.calls("webhook-backup").await,
        2,
        "custodian shares sent"
    );
    assert_eq!(sim.calls("webhook-fetch").await, 1);
    secrets.push(hooks.secret.clone());
    for s in sim.state().await["custodianShares"].as_array().unwrap() {
        let share = s["share"].as_str().unwrap();
        secrets.push(share.to_owned());
        secrets.extend(inner_secret(share));
    }
    assert_no_secret_in(&hooks.function.logs(), &secrets);
    let logs = f.logs();
    assert!(
        logs.contains("backup completed") && logs.contains("m-1") && logs.contains("req-"),
        "correlated logs"
    );
    assert_no_secret_in(&logs, &secrets);
    let Answer::Response(answer) = answer else {
        unreachable!()
    };
    assert_no_secret_in(&answer.to_string(), &secrets);
}

#[tokio::test]
async fn portal_managed_sqs_message_stores_ciphertexts_with_portal() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    // Default mode self-managed; the message asks for Portal-managed.
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(2).await;
    let body = message(
        &client,
        &key,
        &Value::String(generate.to_string()),
        Some("PORTAL_MANAGED"),
    );
    let answer = f.invoke(&sqs_event(&[("m-2".into(), body)])).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let pairs = backup_pairs(&sim, &client).await;
    assert_eq!(pairs.len(), 2);
    let mut secrets = secrets_of(&key, &generate);
    for pair in &pairs {
        assert_eq!(pair["status"], "completed");
        let ct = pair["clientCipherText"]
            .as_str()
            .expect("ciphertext stored with Portal");
        let plain = python_decrypt(&moto.endpoint, ct, &context(&client, pair)).expect("decrypts");
        check_plaintext(&plain, &client, pair["id"].as_str().unwrap());
        secrets.extend(secrets_of_ciphertext(&moto, ct, &context(&client, pair)).await);
    }
    assert_eq!(
        share_items(&moto).await,
        0,
        "no share in the table for a Portal-managed backup (only its checkpoint)"
    );
    assert_eq!(
        sim.calls("get-cipher-text").await,
        2,
        "both read back before marking"
    );
    assert_no_secret_in(&f.logs(), &secrets);
}

#[tokio::test]
async fn batch_of_ten_reports_exactly_the_poison_and_the_refused_message() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let mut records = Vec::new();
    let mut good = Vec::new();
    let mut secrets = Vec::new();
    for n in 0..10 {
        let (client, key, generate) = sim.new_client(100 + n).await;
        secrets.extend(secrets_of(&key, &generate));
        let id = format!("msg-{n}");
        let body = match n {
            3 => {
                r#"{"clientId": "client-103", "clientApiKey": "#.to_owned()
                    + &format!("\"{key}\"")
                    + ", \"generateResponse\": "
            }
            6 => message(&client, "revoked-key", &generate, None),
            _ => {
                good.push(client.clone());
                message(&client, &key, &generate, None)
            }
        };
        records.push((id, body));
    }
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), ["msg-3", "msg-6"], "{}", f.logs());
    for client in &good {
        secrets.extend(assert_self_managed_backup(&moto, &sim, client).await);
    }
    assert!(
        backup_pairs(&sim, "client-103").await.is_empty(),
        "the poison message cost no Portal call"
    );
    assert!(backup_pairs(&sim, "client-106").await.is_empty());
    assert_eq!(
        sim.calls("backup").await,
        9,
        "eight backups and the refused one"
    );
    assert_eq!(
        share_items(&moto).await,
        16,
        "two items for each of the eight"
    );
    let logs = f.logs();
    assert!(
        logs.contains(r#""field":"body""#),
        "the poison's log names the field at fault"
    );
    assert!(
        logs.contains("HTTP 401"),
        "the refusal names Portal's status"
    );
    assert_no_secret_in(&logs, &secrets);
}

#[tokio::test]
async fn a_portal_outage_fails_the_message_without_marking_anything() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "PORTAL_MANAGED")).await;
    let (client, key, generate) = sim.new_client(3).await;
    // One 503 is retried inside the invocation; an outage that outlasts the retries fails it.
    sim.fault("get-cipher-text", 1, 503).await;
    let (c2, k2, g2) = sim.new_client(4).await;
    let answer = f
        .invoke(&sqs_event(&[("m-4".into(), message(&c2, &k2, &g2, None))]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    assert_eq!(
        sim.calls("get-cipher-text").await,
        3,
        "two reads and one retry"
    );
    sim.fault("get-cipher-text", 10, 503).await;
    let answer = f
        .invoke(&sqs_event(&[(
            "m-3".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), ["m-3"]);
    assert_eq!(
        sim.calls("mark-stored").await,
        1,
        "only the first message was marked: never when the read-back failed"
    );
    for pair in backup_pairs(&sim, &client).await {
        assert_eq!(pair["status"], "incomplete");
    }
    let logs = f.logs();
    assert!(
        logs.contains(r#""step":"verify""#) && logs.contains(r#""kind":"transient""#),
        "{logs}"
    );
}

/// What each sample event must produce.
fn check_sample(name: &str, answer: &Answer) {
    match name {
        "sqs-batch-with-poison.json" => {
            assert_eq!(
                failed_ids(answer),
                ["0c6f6a4e-0000-4000-8000-000000000004"],
                "{name}"
            );
        }
        n if n.starts_with("sqs-") => {
            assert_eq!(failed_ids(answer), Vec::<String>::new(), "{name}")
        }
        "http-api.json" | "rest-api.json" => {
            let Answer::Response(r) = answer else {
                panic!("{name}: {answer:?}")
            };
            assert_eq!(r["statusCode"], 200, "{name}: {r}");
            assert_eq!(r["headers"]["content-type"], "application/json");
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            let mode = if name == "http-api.json" {
                "SELF_MANAGED"
            } else {
                "PORTAL_MANAGED"
            };
            assert_eq!(body["backupMode"], mode, "{name}");
            assert_eq!(body["clientId"], "demo-client");
            assert_eq!(body["status"], "COMPLETED");
            assert_eq!(body["backupSharePairIds"].as_array().unwrap().len(), 2);
        }
        "direct.json" => {
            let Answer::Response(r) = answer else {
                panic!("{name}: {answer:?}")
            };
            assert_eq!(r["status"], "COMPLETED", "{name}: {r}");
            assert_eq!(r["backupMode"], "SELF_MANAGED");
        }
        "webhook-backup.json" | "webhook-fetch.json" => {
            let Answer::Response(r) = answer else {
                panic!("{name}: {answer:?}")
            };
            assert_eq!(r["statusCode"], 200, "{name}: {r}");
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            if name == "webhook-fetch.json" {
                // The custodian share webhook-backup.json stored, exactly as sent.
                let sent: Value = serde_json::from_str(
                    &std::fs::read_to_string(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/events/webhook-backup.json"
                    ))
                    .unwrap(),
                )
                .unwrap();
                let sent: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
                assert_eq!(body["backupShares"], json!([sent["share"]]), "{name}");
            }
        }
        "action-verify.json" => {
            let Answer::Response(r) = answer else {
                panic!("{name}: {answer:?}")
            };
            assert_eq!(r["ok"], true, "{name}: {r}");
            assert_eq!(r["clientId"], "demo-client");
        }
        other => panic!("no expectation for events/{other}: add one here"),
    }
}

#[tokio::test]
async fn every_sample_event_runs_against_a_fresh_stack() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    // The webhook samples carry the local stack's secret (scripts/stack).
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.push(("WEBHOOK_SECRET".into(), "local-webhook-secret".into()));
    let f = Function::start(&env).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    // Operator actions last: they act on the backups the other samples make.
    names.sort_by_key(|n| (n.starts_with("action-"), n.clone()));
    assert_eq!(names.len(), 9, "{names:?}");
    for name in &names {
        let event: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap())
                .unwrap();
        let answer = f.invoke(&event).await;
        check_sample(name, &answer);
    }
    // Self-managed: sqs-self-managed, one message of the batch, http-api and direct; two items each.
    assert_self_managed_backup_count(&moto, 8).await;
    let completed = sim.state().await["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup" && p["status"] == "completed")
        .count();
    assert_eq!(
        completed,
        2 * 7,
        "seven backups: four in the table, three with Portal"
    );
    assert!(!f.logs().contains("demo-client-api-key"));
}

#[tokio::test]
async fn api_and_direct_failures_are_structured_and_name_the_problem() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let http: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/http-api.json")).unwrap())
            .unwrap();
    let (client, key, generate) = sim.new_client(7).await;

    // HTTP API: a missing field is a 400 naming it.
    let mut bad = http.clone();
    bad["body"] = json!(json!({"clientId": client, "generateResponse": generate}).to_string());
    let Answer::Response(r) = f.invoke(&bad).await else {
        panic!()
    };
    assert_eq!(r["statusCode"], 400);
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (Some("INVALID_INPUT"), Some("clientApiKey"))
    );

    // HTTP API: Portal refusing the key passes through as 401, without echoing it.
    let mut refused = http.clone();
    refused["body"] = json!(message(&client, "wrong-key-123", &generate, None));
    let Answer::Response(r) = f.invoke(&refused).await else {
        panic!()
    };
    assert_eq!(r["statusCode"], 401, "{r}");
    assert!(!r.to_string().contains("wrong-key-123"));

    // HTTP API: a rate limit longer than the invocation has left is not waited out: 503 with
    // Portal's Retry-After.
    sim.admin(
        "faults",
        json!({"route": "backup", "count": 1, "status": 429, "retryAfter": 600}),
    )
    .await;
    let mut limited = http.clone();
    limited["body"] = json!(message(&client, &key, &generate, None));
    let Answer::Response(r) = f.invoke(&limited).await else {
        panic!()
    };
    assert_eq!(
        (
            r["statusCode"].as_i64(),
            r["headers"]["retry-after"].as_str()
        ),
        (Some(503), Some("600")),
        "{r}"
    );

    // Direct invoke: a bad payload is a function error naming the field.
    let Answer::Error(e) = f
        .invoke(&json!({"clientId": client, "clientApiKey": key}))
        .await
    else {
        panic!()
    };
    assert_eq!(e["errorType"], "INVALID_INPUT");
    assert!(
        e["errorMessage"]
            .as_str()
            .unwrap()
            .contains("generateResponse"),
        "{e}"
    );

    // An event of no known shape is a clear error, not a panic; the function keeps serving.
    let Answer::Error(e) = f
        .invoke(&json!({"source": "aws.events", "detail": {}}))
        .await
    else {
        panic!()
    };
    assert_eq!(e["errorType"], "UnrecognizedEvent");
    // Each failure is logged once, as structured fields: the runtime's echo of the error as
    // Debug text is dropped, and every log line is JSON.
    let logs = f.logs();
    assert!(!logs.contains("Diagnostic {"), "{logs}");
    assert!(logs.contains("\"step\":\"input\""), "{logs}");
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "a log line that is not JSON: {line}"
        );
    }
    let Answer::Response(r) = f
        .invoke(&json!({"clientId": client, "clientApiKey": key, "generateResponse": generate}))
        .await
    else {
        panic!()
    };
    assert_eq!(r["status"], "COMPLETED");
    assert_no_secret_in(&f.logs(), &secrets_of(&key, &generate));
}

async fn assert_self_managed_backup_count(moto: &Moto, n: usize) {
    assert_eq!(share_items(moto).await, n);
}

/// Share items in the table (checkpoint records, `sk` = `BACKUP#…`, are not counted).
async fn share_items(moto: &Moto) -> usize {
    let scan = moto
        .dynamodb()
        .scan()
        .table_name(&moto.table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scan.items()
        .iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with("SHARE#"))
        .count()
}

#[tokio::test]
async fn a_wrong_configuration_stops_the_cold_start_with_a_clear_error() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.retain(|(k, _)| k != "KMS_KEY_ID");
    let f = Function::start(&env).await;
    let event = sqs_event(&[("m".into(), "{}".into())]);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), f.invoke(&event)).await;
    assert!(answer.is_err() || matches!(answer, Ok(Answer::Error(_))));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(f.logs().contains("KMS_KEY_ID is required"), "{}", f.logs());
}

#[tokio::test]
async fn sealed_generate_responses_are_opened_and_clear_ones_refused_when_required() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.push(("REQUIRE_SEALED_INPUT".into(), "true".into()));
    let f = Function::start(&env).await;
    let (client, key, generate) = sim.new_client(8).await;
    let sealed = python_seal(&moto.endpoint, &moto.key_id, &client, &generate);
    assert!(sealed.starts_with("pbe1."));
    let body = |g: Value| {
        json!({"clientId": client, "clientApiKey": key, "sealedGenerateResponse": g}).to_string()
    };
    let (_, _, other_generate) = sim.new_client(9).await;
    let sealed_for_other = python_seal(&moto.endpoint, &moto.key_id, "client-9", &other_generate);
    let records = [
        ("sealed".to_owned(), body(json!(sealed))),
        ("clear".to_owned(), message(&client, &key, &generate, None)),
        ("other-client".to_owned(), body(json!(sealed_for_other))),
    ];
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(
        failed_ids(&answer),
        ["clear", "other-client"],
        "{}",
        f.logs()
    );
    let mut secrets = secrets_of(&key, &generate);
    secrets.extend(assert_self_managed_backup(&moto, &sim, &client).await);
    secrets.extend(secrets_of(&key, &other_generate));
    assert_eq!(
        sim.calls("backup").await,
        1,
        "refused input costs no Portal call"
    );
    let logs = f.logs();
    assert!(
        logs.contains("REQUIRE_SEALED_INPUT"),
        "the clear message is refused by name"
    );
    assert!(
        logs.contains(r#""step":"unseal""#),
        "the misbound one fails at unseal"
    );
    assert_no_secret_in(&logs, &secrets);
}

/// The sim's backup pair ids of a direct-invoke answer.
fn outcome_ids(answer: &Answer) -> Vec<String> {
    let Answer::Response(r) = answer else {
        panic!("function error: {answer:?}")
    };
    r["backupSharePairIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

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
