//! Portal's rate limit held across invocations: a few hundred backups through a real queue and
//! several function processes at once, each process unaware of the others but for the limiter's
//! table, against a simulator that answers 429 to any request over its limit in any 60 s.
//!
//! Every backup completes, none reaches the DLQ (waiting messages go back to the queue: by
//! visibility, or, on their last receive, as a new message), `/v1/backup` is called once per
//! backup, and the simulator counts no request over either limit.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Function, Moto, Sim, create_table, function_env, message};
use devstack::poller::{Queues, poll_once};
use serde_json::{Value, json};

/// Backups sent, and how many of them are Portal-managed (5 client API calls each, not 1).
const BACKUPS: usize = 300;
const PORTAL_MANAGED_EVERY: usize = 5;
/// Function processes polling the queue at once.
const PROCESSES: usize = 3;
/// The limits: Portal's (the simulator's) and the stack's are the same, low enough that the run
/// lasts well over a minute (300 `/v1/backup` calls at 225 a minute: about 80 s), so the
/// simulator's 60 s window fills and is tested, not just the spacing.
const MPC_PER_MINUTE: u64 = 225;
const CLIENT_PER_MINUTE: u64 = 450;
/// The function's timeout, and the queue's visibility timeout for other failures.
const TIMEOUT: Duration = Duration::from_secs(20);
/// A message's receives before the DLQ: low, so that waiting more than once would reach it.
const MAX_RECEIVE: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_backups_from_several_processes_stay_under_portals_limits() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    create_table(&moto.dynamodb(), "portal-rate").await;
    let q = Queues::create(&moto.sdk, "backups", TIMEOUT, MAX_RECEIVE)
        .await
        .expect("queues");
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    for (k, v) in [
        ("PORTAL_RATE_TABLE_NAME", "portal-rate".to_owned()),
        ("PORTAL_MPC_RATE_PER_MINUTE", MPC_PER_MINUTE.to_string()),
        ("PORTAL_API_RATE_PER_MINUTE", CLIENT_PER_MINUTE.to_string()),
        // Short, so that calls are held and messages go back to the queue to wait.
        ("PORTAL_RATE_MAX_WAIT_SECONDS", "1".to_owned()),
        ("BACKUP_QUEUE_URL", q.url.clone()),
        ("MAX_RECEIVE_COUNT", MAX_RECEIVE.to_string()),
        ("MAX_CONCURRENCY", "10".to_owned()),
    ] {
        env.push((k.to_owned(), v));
    }

    // The wallets first (their /v1/generate calls are not the function's), then the limits.
    for n in 0..BACKUPS {
        let (client, key, generate) = sim.new_client(n).await;
        let mode = (n % PORTAL_MANAGED_EVERY == 0).then_some("PORTAL_MANAGED");
        q.send(&message(&client, &key, &generate, mode))
            .await
            .expect("send");
    }
    sim.admin(
        "config",
        json!({"mpcRatePerMinute": MPC_PER_MINUTE, "apiRatePerMinute": CLIENT_PER_MINUTE}),
    )
    .await;

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let q = Arc::new(q);
    let mut pollers = Vec::new();
    for _ in 0..PROCESSES {
        let (q, done, env) = (q.clone(), done.clone(), env.clone());
        pollers.push(tokio::spawn(async move {
            let function = Function::start(&env).await;
            while !done.load(Ordering::Relaxed) {
                let f = &function;
                let poll = poll_once(
                    &q,
                    10,
                    |ev| async move { f.invoke_within(&ev, TIMEOUT).await },
                )
                .await
                .expect("poll");
                assert!(
                    !poll.invocation_failed,
                    "an invocation failed: {}",
                    function.logs()
                );
                if poll.received == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            function.logs()
        }));
    }
    let completed = |state: &Value| {
        state["pairs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["kind"] == "backup" && p["status"] == "completed")
            .count()
    };
    let mut state = sim.state().await;
    while completed(&state) < 2 * BACKUPS && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        state = sim.state().await;
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut logs = String::new();
    for p in pollers {
        logs.push_str(&p.await.expect("poller"));
    }

    let limits = &state["rateLimits"];
    println!(
        "{BACKUPS} backups in {:.1} s by {PROCESSES} processes; simulator: {limits}",
        took.as_secs_f64()
    );
    assert_eq!(
        completed(&state),
        2 * BACKUPS,
        "every backup completed (both curves marked stored) within 300 s"
    );
    assert_eq!(
        (
            limits["mpc"]["overLimit"].as_u64(),
            limits["client"]["overLimit"].as_u64()
        ),
        (Some(0), Some(0)),
        "no request over Portal's limits: {limits}"
    );
    assert_eq!(
        sim.calls("backup").await,
        BACKUPS as u64,
        "one /v1/backup per backup: waiting and resending never backs up twice"
    );
    assert!(
        q.dlq_bodies().await.expect("dlq").is_empty(),
        "nothing in the DLQ"
    );
    assert_eq!(
        q.depth(&q.url).await.expect("depth"),
        0,
        "nothing left on the queue"
    );
    // The limit was what paced the run: near it, and the limiter made calls wait and sent
    // messages back to the queue (the paths under test ran).
    let peak = limits["mpc"]["peakPerMinute"].as_u64().unwrap_or(0);
    assert!(
        peak * 10 >= MPC_PER_MINUTE * 9,
        "the run came near the MPC limit (peak {peak} in 60 s)"
    );
    for metric in [
        "\"PortalRateWaits\"",
        "\"PortalRateHeld\"",
        "\"MessagesDeferred\"",
    ] {
        assert!(logs.contains(metric), "the functions reported {metric}");
    }
    // Messages held on their last receive were sent again rather than left to the DLQ.
    let resent: u64 = logs
        .lines()
        .filter(|l| l.contains("sent back to the queue to wait"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["fields"]["resent"].as_u64().or(l["resent"].as_u64()))
        .sum();
    println!("messages sent again on their last receive: {resent}");
    assert!(
        resent > 0,
        "a message held on its last receive was sent again"
    );
}
