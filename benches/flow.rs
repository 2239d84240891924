//! `cargo bench --features sim --bench flow` (or `scripts/bench`): the release bootstrap under a
//! local Lambda Runtime API, against moto and the Portal simulator. Prints one table of medians:
//! init time and peak RSS, one message and a batch of ten with 50 ms injected per Portal call,
//! and CPU time per message with no injected latency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Function, Moto, Sim, function_env, message, sqs_event};
use serde_json::{Value, json};

const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (utime + stime) of a process, in seconds, and its peak RSS in MiB.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime is 11, stime is 12 (man 5 proc); 100 ticks/s.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}

fn env(moto: &Moto, sim: &Sim) -> Vec<(String, String)> {
    let mut env = function_env(moto, sim, "SELF_MANAGED");
    env.push(("RUST_LOG".into(), "warn".into()));
    env
}

async fn batch(sim: &Sim, n: usize, base: usize) -> Value {
    let mut records = Vec::new();
    for i in 0..n {
        let (client, key, generate) = sim.new_client(base + i).await;
        records.push((
            format!("m-{}", base + i),
            message(&client, &key, &generate, None),
        ));
    }
    sqs_event(&records)
}

async fn timed(f: &Function, event: &Value) -> f64 {
    let started = Instant::now();
    let answer = f.invoke(event).await;
    assert_eq!(common::failed_ids(&answer), Vec::<String>::new());
    started.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());

    // 1. Init: process start → first GET /runtime/invocation/next.
    let mut inits = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let f = Function::start(&env(&moto, &sim)).await;
        while f.first_poll().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        inits.push(
            f.first_poll()
                .map_or(0.0, |t| t.duration_since(started).as_secs_f64() * 1000.0),
        );
    }

    // 2. One message, and a batch of ten, with 50 ms per Portal call.
    let f = Function::start(&env(&moto, &sim)).await;
    timed(&f, &batch(&sim, 1, 0).await).await; // warm the connection pools, as a warm Lambda is
    sim.admin("config", json!({"latencyMs": 50})).await;
    let mut base = 1000;
    let (mut singles, mut batches) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        singles.push(timed(&f, &batch(&sim, 1, base).await).await);
        batches.push(timed(&f, &batch(&sim, 10, base + 1).await).await);
        base += 100;
    }
    sim.admin("config", json!({"latencyMs": 0})).await;

    // 3. CPU per message and throughput, no injected latency.
    let pid = f.pid().expect("pid");
    let messages = 200;
    let mut events = Vec::new();
    for b in 0..messages / 10 {
        events.push(batch(&sim, 10, 10_000 + b * 10).await);
    }
    let (cpu_before, _) = usage(pid);
    let started = Instant::now();
    for e in &events {
        timed(&f, e).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, peak_rss) = usage(pid);
    let cpu_ms = (cpu_after - cpu_before) * 1000.0 / messages as f64;

    let single = median(singles);
    let ten = median(batches);
    // Self-managed: two Portal calls on the critical path (backup, mark), 50 ms each.
    let portal_floor = 2.0 * 50.0;
    let size = std::fs::metadata(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/portal-backup"
    ))
    .map(|m| m.len() as f64 / 1_048_576.0)
    .unwrap_or(0.0);
    println!("\n| measure (median of {RUNS}) | portal-backup |");
    println!("|---|---|");
    println!(
        "| init: process start → first /next | {:.1} ms |",
        median(inits)
    );
    println!(
        "| peak RSS after {} messages | {peak_rss:.1} MiB |",
        messages + 1 + RUNS * 11
    );
    println!(
        "| one message, 50 ms per Portal call | {single:.0} ms ({:.2}× the {portal_floor:.0} ms of sequential Portal calls) |",
        single / portal_floor
    );
    println!(
        "| batch of 10, 50 ms per Portal call | {ten:.0} ms ({:.2}× one message) |",
        ten / single
    );
    println!("| CPU per message (user+sys), no latency | {cpu_ms:.2} ms |");
    println!(
        "| throughput, batches of 10, one process | {:.0} messages/s |",
        messages as f64 / wall
    );
    println!("| release binary (x86_64, stripped) | {size:.1} MiB |");
}
