//! The built bootstrap binary, driven through a local Lambda Runtime API as Lambda drives it,
//! against moto (KMS, DynamoDB) and the Portal simulator.

mod common;

use common::checks::*;
use common::{
    Function, Moto, Sim, Webhooks, failed_ids, function_env, message, operator_env, python_decrypt,
    python_seal_as, sealed_with_key, sqs_event,
};
use devstack::runtime_api::Answer;
use portal_backup::domain::ciphertext::Format;
use serde_json::{Value, json};

#[tokio::test]
async fn self_managed_sqs_message_is_stored_verified_and_marked() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    // As Portal runs self-managed custody: the custodian shares go to the webhooks meanwhile.
    let hooks = Webhooks::start(&moto, &sim).await;
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
    assert_two_trust_domains(&moto).await;
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
        // Portal holds the message in standard base64, nothing around it.
        assert_eq!(Format::of(ct), Format::Esdk);
        assert_eq!(key_of(ct), moto.key_id);
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
    batch_of_ten(&moto, &sim).await;
}

/// The same batch on rustack, the multi-threaded AWS-like backend the bench runs on: the
/// function's calls (transactions, conditions, BatchGetItem, KMS contexts) behave there as on
/// moto, and its backups then verify and drill through the function.
#[tokio::test]
async fn batch_of_ten_on_rustack_then_verified_and_drilled() {
    let (aws, sim) = tokio::join!(Moto::rustack(), Sim::start());
    let good = batch_of_ten(&aws, &sim).await;
    let f = Function::start(&operator_env(&function_env(&aws, &sim, "SELF_MANAGED"))).await;
    for client in &good {
        let v = f
            .respond(
                &json!({"action": "verify", "clientId": client}),
                "verify on rustack",
            )
            .await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let d = f
        .respond(
            &json!({"action": "drill", "sample": 20}),
            "drill on rustack",
        )
        .await;
    assert_eq!(
        (&d["verified"], &d["failed"]),
        (&json!(8), &json!(0)),
        "{d}"
    );
}

/// A batch of ten with a poison message and a refused one; answers the eight clients backed up.
async fn batch_of_ten(moto: &Moto, sim: &Sim) -> Vec<String> {
    let f = Function::start(&function_env(moto, sim, "SELF_MANAGED")).await;
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
        secrets.extend(assert_self_managed_backup(moto, sim, client).await);
    }
    assert!(
        backup_pairs(sim, "client-103").await.is_empty(),
        "the poison message cost no Portal call"
    );
    assert!(backup_pairs(sim, "client-106").await.is_empty());
    assert_eq!(
        sim.calls("backup").await,
        9,
        "eight backups and the refused one"
    );
    assert_eq!(
        share_items(moto).await,
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
    good
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
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    // The webhook samples go to the custody function, with the local stack's secret
    // (scripts/stack); the backup function does not serve them.
    let mut custody_env = moto.custody_env();
    custody_env.push(("WEBHOOK_SECRET".into(), "local-webhook-secret".into()));
    custody_env.push(("ALLOW_PLAINTEXT_WEBHOOK_SECRET".into(), "local-only".into()));
    let custody = Function::start(&custody_env).await;
    // The operator samples go to the operator function; the backup function refuses them.
    let operator = Function::start(&operator_env(&function_env(&moto, &sim, "SELF_MANAGED"))).await;
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
        if name.starts_with("webhook-") {
            let Answer::Response(refused) = f.invoke(&event).await else {
                panic!("{name}: the backup function answers")
            };
            assert_eq!(
                refused["statusCode"], 404,
                "{name}: not the backup function's route"
            );
            check_sample(name, &custody.invoke(&event).await);
            continue;
        }
        if name.starts_with("action-") {
            let Answer::Error(refused) = f.invoke(&event).await else {
                panic!("{name}: the backup function answers an operator action")
            };
            assert_eq!(refused["errorType"], "OperatorActionRefused", "{name}");
            check_sample(name, &operator.invoke(&event).await);
            continue;
        }
        let answer = f.invoke(&event).await;
        check_sample(name, &answer);
    }
    assert_two_trust_domains(&moto).await;
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
    // The API key travels sealed with the shares, as a deployment that requires sealing wants.
    let sealed = sealed_with_key(&moto, &client, &key, &generate);
    assert_eq!(Format::of(&sealed), Format::Esdk);
    let body = |g: Value| json!({"clientId": client, "sealedGenerateResponse": g}).to_string();
    let (_, _, other_generate) = sim.new_client(9).await;
    let sealed_for_other = sealed_with_key(&moto, "client-9", &key, &other_generate);
    // A producer still sealing in the old format: pbe1 input opens too.
    let (old_client, old_key, old_generate) = sim.new_client(10).await;
    let sealed_pbe1 = python_seal_as(
        &moto.endpoint,
        &moto.key_id,
        &old_client,
        &json!({"clientApiKey": old_key, "generateResponse": old_generate}),
        "pbe1",
    );
    assert_eq!(Format::of(&sealed_pbe1), Format::Pbe1);
    let records = [
        ("sealed".to_owned(), body(json!(sealed))),
        (
            "sealed-pbe1".to_owned(),
            json!({"clientId": old_client, "sealedGenerateResponse": sealed_pbe1}).to_string(),
        ),
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
    secrets.extend(secrets_of(&old_key, &old_generate));
    secrets.extend(assert_self_managed_backup(&moto, &sim, &old_client).await);
    assert_eq!(
        sim.calls("backup").await,
        2,
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
