//! Restore drills through the built binary, as the schedule invokes it, against moto and the
//! Portal simulator: every stored backup proven, then one damaged byte found by curve, with the
//! metrics the alarm watches and no share in the answer or the logs.

mod common;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use common::checks::{assert_no_secret_in, backup_pairs, secrets_of};
use common::{Function, Moto, Sim, failed_ids, function_env, message, operator_env, sqs_event};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

async fn drill(f: &Function, sample: u32) -> Value {
    match f
        .invoke(&json!({"action": "drill", "sample": sample}))
        .await
    {
        Answer::Response(v) => v,
        other => panic!("drill failed: {other:?}\n{}", f.logs()),
    }
}

/// The EMF lines of drills in the function's output, in order.
fn drill_metrics(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("DrillFailures").is_some())
        .collect()
}

#[tokio::test]
async fn drills_prove_every_backup_and_find_one_damaged_byte_by_its_curve() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    // Drills are operator actions: the operator function runs them, over the same table and key.
    let op = Function::start(&operator_env(&function_env(&moto, &sim, "SELF_MANAGED"))).await;
    let mut records = Vec::new();
    let mut secrets = Vec::new();
    let mut clients = Vec::new();
    for n in 1..=4 {
        let (client, key, generate) = sim.new_client(n).await;
        // The fourth is Portal-managed: its drill opens the copies in its checkpoint.
        let mode = (n == 4).then_some("PORTAL_MANAGED");
        records.push((format!("m-{n}"), message(&client, &key, &generate, mode)));
        secrets.extend(secrets_of(&key, &generate));
        clients.push(client);
    }
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());

    // One drill covers the four: one cycle, ended.
    let a = drill(&op, 20).await;
    assert_eq!(
        (&a["verified"], &a["failed"]),
        (&json!(4), &json!(0)),
        "{a}"
    );
    assert_eq!(a["failures"], json!([]));
    assert_eq!(a["cycle"]["number"], 1, "{a}");
    assert_eq!(a["cycle"]["proven"], 4, "{a}");
    assert!(a["cycle"]["lastEndedAt"].is_u64(), "{a}");
    // The next starts cycle 2.
    let b = drill(&op, 2).await;
    assert_eq!(b["cycle"]["number"], 2, "{b}");
    assert_eq!(b["failed"], 0, "{b}");

    // One byte flipped in the body of client 2's ED25519 share item.
    let pair = backup_pairs(&sim, &clients[1])
        .await
        .into_iter()
        .find(|p| p["curve"] == "ED25519")
        .unwrap();
    let pair_id = pair["id"].as_str().unwrap();
    let item = moto.share_item(&clients[1], pair_id).await.unwrap();
    let mut bytes = item["cipherText"].as_b().unwrap().as_ref().to_vec();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x01;
    moto.dynamodb()
        .update_item()
        .table_name(&moto.table)
        .key("pk", AttributeValue::S(format!("CLIENT#{}", clients[1])))
        .key("sk", AttributeValue::S(format!("SHARE#{pair_id}")))
        .update_expression("SET cipherText = :c")
        .expression_attribute_values(":c", AttributeValue::B(Blob::new(bytes)))
        .send()
        .await
        .unwrap();

    // The next drills find exactly that backup, by curve, whichever part of the cycle they walk.
    let mut found = Vec::new();
    for _ in 0..3 {
        let d = drill(&op, 20).await;
        found.extend(d["failures"].as_array().unwrap().iter().cloned());
        assert!(
            d["failed"].as_u64() <= Some(1),
            "only the damaged backup fails: {d}"
        );
    }
    assert!(!found.is_empty(), "the damaged backup is found");
    for failure in &found {
        assert_eq!(failure["clientId"], clients[1].as_str(), "{failure}");
        assert_eq!(failure["curve"], "ED25519", "{failure}");
        assert!(failure["key"].is_string(), "{failure}");
        assert!(failure["problem"].is_string(), "{failure}");
    }

    // The metrics the alarm watches: one line per drill, DrillFailures >= 1 once damaged.
    let logs = op.logs();
    let metrics = drill_metrics(&logs);
    assert_eq!(metrics.len(), 5, "{logs}");
    assert_eq!(metrics[0]["DrillsVerified"], 4);
    assert_eq!(metrics[0]["DrillFailures"], 0);
    assert!(
        metrics[2..]
            .iter()
            .any(|m| m["DrillFailures"].as_u64() >= Some(1))
    );
    for m in &metrics {
        assert!(m["DrillCycleAgeSeconds"].is_u64(), "{m}");
        assert_eq!(
            m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "PortalBackup"
        );
    }

    // No share, key or ciphertext in any answer or log line.
    let answers = format!("{a}{b}{}", serde_json::to_string(&found).unwrap());
    assert_no_secret_in(&format!("{logs}{answers}"), &secrets);
    assert!(!answers.contains("AgR4"), "no ciphertext in an answer");
}

#[tokio::test]
async fn a_drill_that_cannot_run_counts_as_a_failure() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    for (k, v) in &mut env {
        if k == "BACKUP_TABLE_NAME" {
            *v = "no-such-table".into();
        }
    }
    let f = Function::start(&operator_env(&env)).await;
    let Answer::Error(e) = f.invoke(&json!({"action": "drill", "sample": 5})).await else {
        panic!("a drill over a missing table must fail: {}", f.logs())
    };
    assert!(e["errorType"].is_string(), "{e}");
    let metrics = drill_metrics(&f.logs());
    assert_eq!(metrics.len(), 1, "{}", f.logs());
    assert_eq!(metrics[0]["DrillFailures"], 1, "not silence");
}
