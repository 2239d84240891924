//! Tracing through the built function: with `XRAY_TRACING=on` and the daemon's address (a UDP
//! socket here, as Lambda's X-Ray daemon), each backup step, each Portal call and each AWS call
//! arrives as a subsegment of the invocation's trace, nested under the function's segment, with
//! no secret in any of them; without it, nothing is sent.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Function, Moto, Sim, create_table, function_env, message};
use serde_json::Value;
use tokio::net::UdpSocket;

/// A stand-in for the X-Ray daemon: the documents it received.
async fn daemon() -> (String, Arc<Mutex<Vec<String>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let address = socket.local_addr().expect("address").to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = socket.recv(&mut buf).await {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    (address, received)
}

/// Backs up one wallet of a new client in `mode` through `f`; answers what a subsegment must
/// never hold: the API key and the signing shares.
async fn back_up(f: &Function, sim: &Sim, n: usize, mode: &str) -> Vec<String> {
    let (client, key, generate) = sim.new_client(n).await;
    let body: Value = serde_json::from_str(&message(&client, &key, &generate, Some(mode))).unwrap();
    let answer = f.respond(&body, "backup").await;
    assert_eq!(answer["status"], "COMPLETED", "{answer}");
    let mut secrets = vec![key];
    for curve in ["SECP256K1", "ED25519"] {
        secrets.push(generate[curve]["share"].as_str().unwrap().to_owned());
    }
    secrets
}

#[tokio::test]
async fn each_step_portal_call_and_aws_call_is_a_subsegment_and_none_holds_a_secret() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    create_table(&moto.dynamodb(), "portal-rate").await;
    let (address, received) = daemon().await;
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.push(("PORTAL_RATE_TABLE_NAME".into(), "portal-rate".into()));
    env.push(("XRAY_TRACING".into(), "on".into()));
    env.push(("AWS_XRAY_DAEMON_ADDRESS".into(), address));
    let f = Function::start(&env).await;
    let mut secrets = back_up(&f, &sim, 1, "SELF_MANAGED").await;
    secrets.extend(back_up(&f, &sim, 2, "PORTAL_MANAGED").await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let datagrams = received.lock().unwrap().clone();
    let docs: Vec<Value> = datagrams
        .iter()
        .map(|d| {
            let (header, doc) = d
                .split_once('\n')
                .expect("a header line, then the document");
            assert_eq!(header, r#"{"format": "json", "version": 1}"#);
            serde_json::from_str(doc).expect("a JSON document")
        })
        .collect();
    assert!(docs.len() > 20, "subsegments arrived: {}", docs.len());
    for secret in &secrets {
        assert!(
            !datagrams.iter().any(|d| d.contains(secret.as_str())),
            "a subsegment holds a secret"
        );
    }
    assert!(!datagrams.iter().any(|d| d.contains("Bearer")));
    let allowed: HashSet<&str> = [
        "step",
        "call",
        "status",
        "message_id",
        "client_id",
        "service",
        "operation",
    ]
    .into();
    let ids: HashSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let mut traces = BTreeSet::new();
    let mut segments = BTreeSet::new();
    for d in &docs {
        assert_eq!(d["type"], "subsegment");
        assert_eq!(d["id"].as_str().unwrap().len(), 16);
        assert!(d["end_time"].as_f64() >= d["start_time"].as_f64());
        for key in d["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(
                allowed.contains(key.as_str()),
                "annotation {key} is not allow-listed"
            );
        }
        traces.insert(d["trace_id"].as_str().unwrap().to_owned());
        let parent = d["parent_id"].as_str().unwrap();
        if !ids.contains(parent) {
            segments.insert((
                d["trace_id"].as_str().unwrap().to_owned(),
                parent.to_owned(),
            ));
        }
    }
    // Two invocations, two traces; each subsegment hangs off another or the function's segment.
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert_eq!(
        segments.len(),
        2,
        "one function segment per trace: {segments:?}"
    );

    let named = |name: &str, key: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| d["name"] == name)
            .filter_map(|d| d["annotations"][key].as_str().map(str::to_owned))
            .collect()
    };
    let steps = named("step", "step");
    for step in ["backup", "seal", "store", "verify", "mark_stored"] {
        assert!(steps.contains(step), "step {step} traced: {steps:?}");
    }
    let calls = named("Portal", "call");
    for call in [
        "POST /v1/backup",
        "PATCH /api/v3/clients/me/backup-share-pairs",
        "PATCH /api/v3/clients/me/backup-share-pairs/{id}",
        "GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text",
    ] {
        assert!(calls.contains(call), "Portal {call} traced: {calls:?}");
    }
    for d in docs.iter().filter(|d| d["name"] == "Portal") {
        let status = d["http"]["response"]["status"].as_u64().unwrap_or(0);
        assert!(
            d["namespace"] == "remote" && (200..300).contains(&status),
            "each Portal call is remote, with its status: {d}"
        );
    }
    assert!(
        !named("Portal slot", "call").is_empty(),
        "the wait for Portal's budget is traced"
    );
    let kms = named("KMS", "operation");
    let dynamodb = named("DynamoDB", "operation");
    for op in ["GenerateDataKey", "Decrypt"] {
        assert!(kms.contains(op), "KMS {op} traced: {kms:?}");
    }
    for op in ["PutItem", "UpdateItem"] {
        assert!(dynamodb.contains(op), "DynamoDB {op} traced: {dynamodb:?}");
    }
    assert!(
        docs.iter()
            .filter(|d| d["namespace"] == "aws")
            .all(|d| d["aws"]["operation"].is_string())
    );
}

#[tokio::test]
async fn tracing_is_off_by_default() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let (address, received) = daemon().await;
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.push(("AWS_XRAY_DAEMON_ADDRESS".into(), address));
    let f = Function::start(&env).await;
    back_up(&f, &sim, 1, "SELF_MANAGED").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing sent without XRAY_TRACING=on"
    );
}
