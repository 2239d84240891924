//! The fault matrix: every message ends completed (stored, proven, marked) or in the DLQ, never
//! lost and never backed up twice, whatever fails. Runs through a real queue (moto SQS with a
//! redrive policy) and a poller that does what Lambda's event source mapping does.
//!
//! `scripts/fault-matrix` prints the table (`-- --nocapture`); the test asserts every row.

mod common;

use std::time::{Duration, Instant};

use common::{Function, Moto, Sim, function_env, message, python_decrypt};
use devstack::poller::{Queues, poll_once};
use futures::StreamExt;
use serde_json::{Value, json};

/// The function's timeout (the invocation deadline), and the queue's visibility timeout.
const TIMEOUT: Duration = Duration::from_secs(8);
const VISIBILITY: Duration = Duration::from_secs(9);
const MAX_RECEIVE: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Completed,
    Dlq,
}

#[derive(Clone, Copy)]
enum Msg {
    /// A valid message.
    Good,
    /// The same body as the previous Good message, sent again.
    Duplicate,
    /// Not JSON.
    Poison,
    /// A key Portal refuses (401).
    Revoked,
}

struct Case {
    name: String,
    mode: &'static str,
    messages: Vec<Msg>,
    /// Sim faults applied before the first poll.
    faults: Vec<Value>,
    /// Environment overrides.
    env: Vec<(&'static str, String)>,
    /// Kill the function while Portal hangs on this route (first invocation only).
    kill_in: Option<&'static str>,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, mode: &'static str, expect: Expect) -> Self {
        Case {
            name: name.into(),
            mode,
            messages: vec![Msg::Good],
            faults: vec![],
            env: vec![],
            kill_in: None,
            expect,
        }
    }
}

struct Row {
    case: String,
    outcome: String,
    backup_calls: u64,
    lost: usize,
    duplicated: usize,
    secs: f64,
}

/// Routes of the four Portal steps, and the mode in which each is used.
const STEPS: [(&str, &str); 4] = [
    ("backup", "SELF_MANAGED"),
    ("store-cipher-text", "PORTAL_MANAGED"),
    ("get-cipher-text", "PORTAL_MANAGED"),
    ("mark-stored", "SELF_MANAGED"),
];

fn cases() -> Vec<Case> {
    let mut cases = vec![Case::new(
        "clean, self-managed",
        "SELF_MANAGED",
        Expect::Completed,
    )];
    for (route, mode) in STEPS {
        let mut c = Case::new(format!("Portal 503 at {route}"), mode, Expect::Completed);
        c.faults
            .push(json!({"route": route, "count": 2, "status": 503}));
        cases.push(c);
        let mut c = Case::new(
            format!("Portal 429 Retry-After 1 at {route}"),
            mode,
            Expect::Completed,
        );
        c.faults
            .push(json!({"route": route, "count": 1, "status": 429, "retryAfter": 1}));
        cases.push(c);
        let mut c = Case::new(format!("Portal hangs at {route}"), mode, Expect::Completed);
        c.faults
            .push(json!({"route": route, "count": 1, "hang": true}));
        cases.push(c);
        let mut c = Case::new(format!("killed while in {route}"), mode, Expect::Completed);
        c.faults
            .push(json!({"route": route, "count": 1, "hang": true}));
        c.kill_in = Some(route);
        cases.push(c);
    }
    let mut c = Case::new("KMS: unknown key id", "SELF_MANAGED", Expect::Dlq);
    c.env.push((
        "KMS_KEY_ID",
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".into(),
    ));
    cases.push(c);
    let mut c = Case::new("DynamoDB: missing table", "SELF_MANAGED", Expect::Dlq);
    c.env.push(("BACKUP_TABLE_NAME", "no-such-table".into()));
    cases.push(c);
    let mut c = Case::new(
        "same message three times at once",
        "SELF_MANAGED",
        Expect::Completed,
    );
    c.messages = vec![Msg::Good, Msg::Duplicate, Msg::Duplicate];
    cases.push(c);
    let mut c = Case::new(
        "mixed batch: good, duplicate, poison, revoked key, 503",
        "PORTAL_MANAGED",
        Expect::Completed,
    );
    c.messages = vec![
        Msg::Good,
        Msg::Good,
        Msg::Duplicate,
        Msg::Poison,
        Msg::Revoked,
        Msg::Good,
    ];
    c.faults
        .push(json!({"route": "backup", "count": 1, "status": 503}));
    cases.push(c);
    // The same mix, and the process killed mid-batch: each message dies at its own step and
    // resumes from its own checkpoint.
    let mut c = Case::new(
        "mixed batch, killed while in mark-stored",
        "SELF_MANAGED",
        Expect::Completed,
    );
    c.messages = vec![
        Msg::Good,
        Msg::Good,
        Msg::Duplicate,
        Msg::Poison,
        Msg::Revoked,
        Msg::Good,
    ];
    c.faults
        .push(json!({"route": "backup", "count": 1, "status": 503}));
    c.faults
        .push(json!({"route": "mark-stored", "count": 1, "hang": true}));
    c.kill_in = Some("mark-stored");
    cases.push(c);
    cases
}

/// One poll of the queue through `f`, with the function's timeout as the deadline.
async fn poll(q: &Queues, f: &Function) -> devstack::poller::Poll {
    poll_once(
        q,
        10,
        |ev| async move { f.invoke_within(&ev, TIMEOUT).await },
    )
    .await
    .expect("poll")
}

async fn run(case: Case) -> Row {
    let started = Instant::now();
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let q = Queues::create(&moto.sdk, "backups", VISIBILITY, MAX_RECEIVE)
        .await
        .expect("queues");
    let mut env = function_env(&moto, &sim, case.mode);
    env.push(("PORTAL_REQUEST_TIMEOUT_MS".into(), "1500".into()));
    for (k, v) in &case.env {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), v.clone()));
    }
    // Each message's client (None: poison) and what it must end as.
    // Each message's client (none for a poison body), where it must end, and its body.
    let mut sent: Vec<(Option<String>, Expect, String)> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();
    let mut last_good = String::new();
    for (n, m) in case.messages.iter().enumerate() {
        match m {
            Msg::Good => {
                let (client, key, generate) = sim.new_client(n).await;
                secrets.push(key.clone());
                secrets.extend(
                    ["SECP256K1", "ED25519"]
                        .map(|c| generate[c]["share"].as_str().unwrap().to_owned()),
                );
                last_good = message(&client, &key, &generate, None);
                q.send(&last_good).await.expect("send");
                sent.push((Some(client), case.expect, last_good.clone()));
            }
            Msg::Duplicate => {
                q.send(&last_good).await.expect("send");
                let client: Value = serde_json::from_str(&last_good).unwrap();
                sent.push((
                    Some(client["clientId"].as_str().unwrap().to_owned()),
                    case.expect,
                    last_good.clone(),
                ));
            }
            Msg::Poison => {
                // A body of its own, so the DLQ check finds this very message.
                let body = format!("{{not json {n}");
                q.send(&body).await.expect("send");
                sent.push((None, Expect::Dlq, body));
            }
            Msg::Revoked => {
                let (client, _, generate) = sim.new_client(n).await;
                let body = message(&client, "revoked-key", &generate, None);
                q.send(&body).await.expect("send");
                sent.push((Some(client), Expect::Dlq, body));
            }
        }
    }
    for f in &case.faults {
        sim.admin("faults", f.clone()).await;
    }
    let mut function = Function::start(&env).await;
    let mut killed = false;
    // Every process's output, killed ones included, at RUST_LOG=trace.
    let mut output = String::new();
    // What the poller saw, printed with the table when a message is lost (for diagnosis).
    let mut trace: Vec<String> = Vec::new();
    let at = |started: Instant| format!("{:5.1}s", started.elapsed().as_secs_f64());
    while started.elapsed() < Duration::from_secs(120) {
        if q.depth(&q.url).await.expect("depth") == 0 {
            trace.push(format!("{} queue empty", at(started)));
            break;
        }
        let outcome = match (case.kill_in, killed) {
            (Some(route), false) => {
                let before = sim.calls(route).await;
                let f = &function;
                let (outcome, ()) = tokio::join!(poll(&q, f), async {
                    while sim.calls(route).await == before {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    f.kill_now();
                });
                killed = true;
                outcome
            }
            _ => poll(&q, &function).await,
        };
        if outcome.received > 0 {
            trace.push(format!(
                "{} received {} deleted {} failed {} invocation failed {}",
                at(started),
                outcome.received,
                outcome.deleted,
                outcome.failed,
                outcome.invocation_failed
            ));
        }
        if killed && outcome.invocation_failed {
            output.push_str(&function.logs());
            function = Function::start(&env).await;
        }
        if outcome.received == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Let the queue settle: a receive is what moves an exhausted message to the DLQ. Wait up to
    // one more visibility timeout for the DLQ to hold every message expected there.
    let mut dlq: Vec<String> = Vec::new();
    let settle = Instant::now();
    let expected_dlq = sent.iter().filter(|(_, e, _)| *e == Expect::Dlq).count();
    for round in 0.. {
        if round >= 4 && (dlq.len() >= expected_dlq || settle.elapsed() > VISIBILITY * 2) {
            break;
        }
        let f = &function;
        poll(&q, f).await;
        for body in q.dlq_bodies().await.expect("dlq") {
            if !dlq.contains(&body) {
                dlq.push(body);
            }
        }
        if q.depth(&q.url).await.expect("depth") == 0 && dlq.len() >= expected_dlq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    trace.push(format!("{} settled: {} in the DLQ", at(started), dlq.len()));
    let backup_calls = sim.calls("backup").await;
    output.push_str(&function.logs());
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "{}: a secret appears in the function's output",
            case.name
        );
    }
    if std::env::var("FAULT_DEBUG").is_ok() {
        eprintln!(
            "{}: dlq {} depth {} dlq depth {}",
            case.name,
            dlq.len(),
            q.depth(&q.url).await.expect("depth"),
            q.depth(&q.dlq_url).await.expect("depth")
        );
    }
    let state = sim.state().await;
    let (mut lost, mut duplicated, mut completed, mut in_dlq) = (0, 0, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for (client, expect, body) in &sent {
        let Some(client) = client else {
            // A poison message counts as in the DLQ only if its own body is there.
            if dlq.contains(body) {
                in_dlq += 1;
            } else {
                lost += 1;
            }
            continue;
        };
        if !seen.insert(client.clone()) {
            continue; // duplicates of one client are one backup
        }
        let pairs: Vec<&Value> = state["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["kind"] == "backup"
                    && p["clientId"] == client.as_str()
                    && p["status"] == "completed"
            })
            .collect();
        let dlqd = dlq.iter().any(|b| b.contains(&format!("\"{client}\"")));
        match (pairs.len(), dlqd) {
            (0, true) => in_dlq += 1,
            (0, false) => lost += 1,
            (2, _) => {
                completed += 1;
                for p in &pairs {
                    if !decrypts(&moto, client, p, case.mode).await {
                        lost += 1;
                        break;
                    }
                }
            }
            _ => duplicated += 1,
        }
        let ended = if pairs.is_empty() {
            Expect::Dlq
        } else {
            Expect::Completed
        };
        assert_eq!(ended, *expect, "{}: client {client}", case.name);
    }
    if lost > 0 {
        eprintln!(
            "{}: lost {lost}; poller trace:\n  {}",
            case.name,
            trace.join("\n  ")
        );
    }
    Row {
        case: case.name,
        outcome: format!("{completed} completed, {in_dlq} in DLQ"),
        backup_calls,
        lost,
        duplicated,
        secs: started.elapsed().as_secs_f64(),
    }
}

/// Whether a completed pair's ciphertext is where its mode keeps it, and decrypts.
async fn decrypts(moto: &Moto, client: &str, pair: &Value, mode: &str) -> bool {
    let ct = if mode == "PORTAL_MANAGED" {
        pair["clientCipherText"].as_str().map(str::to_owned)
    } else {
        moto.share_item(client, pair["id"].as_str().unwrap())
            .await
            .and_then(|i| i.get("cipherText").map(common::checks::new_ciphertext))
    };
    let Some(ct) = ct else { return false };
    let context =
        json!({"clientId": client, "backupSharePairId": pair["id"], "curve": pair["curve"]});
    python_decrypt(&moto.endpoint, &ct, &context).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_ends_completed_or_in_the_dlq_never_lost_never_duplicated() {
    // FAULT_CASE=<text> runs only the cases whose name contains it.
    let only = std::env::var("FAULT_CASE").unwrap_or_default();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.name.contains(&only))
        .collect();
    let n = cases.len();
    assert!(
        n > 0,
        "FAULT_CASE={only:?} matches no case of the fault matrix"
    );
    let rows: Vec<Row> = futures::stream::iter(cases.into_iter().map(run))
        .buffered(4)
        .collect()
        .await;
    let mut table = String::from(
        "| case | outcome | /v1/backup calls | lost | duplicated | seconds |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            r.case, r.outcome, r.backup_calls, r.lost, r.duplicated, r.secs
        ));
    }
    println!("\n{table}");
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix.md"),
        &table,
    );
    assert_eq!(rows.len(), n);
    for r in &rows {
        assert_eq!((r.lost, r.duplicated), (0, 0), "{}: {}", r.case, r.outcome);
    }
}
