//! `cargo bench --bench flow` (or `scripts/bench`): the release bootstrap and its peer, the seed's
//! flow as a Node.js 20 function (`benches/node-baseline/`), each under a local Lambda Runtime
//! API against the same backend (rustack by default, `BENCH_BACKEND=moto` for moto) and Portal
//! simulator. Prints tables of medians, each figure beside the peer's and as a ratio:
//! - on a whole CPU: init and peak RSS, the first message of a fresh process, one message and a
//!   batch of ten with 50 ms per Portal call, CPU per message against its calls made alone;
//! - at Lambda's CPU share of 128, 256 and 1,024 MB (a CFS quota, `quota`): init, init + first
//!   message, a warm message, a batch of ten and billed GB-seconds per 1,000 backups;
//! - the goals of CPU per message, met or not; and draws `docs/performance-chart.svg`.
//!
//! Figures only: nothing here passes or fails on a number.
//! `BENCH_PEER=none` leaves the peer out; `BENCH_QUOTA=none` the CPU-share runs;
//! `PORTAL_BACKUP_BIN` measures another build of the bootstrap, `BENCH_FUNCTION_ENV="K=V …"`
//! another setting of its environment (the chart is drawn only for the standard run).

#[path = "../../tests/common/mod.rs"]
mod common;

mod backend;
mod calls;
mod chart;
mod measure;
mod quota;
mod report;

use backend::{Aws, Kind};
use common::Sim;
use measure::{Subject, measure};

// The bootstrap's allocator, so that the calls made alone cost what they cost in the function.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Repetitions behind each whole-CPU median.
pub const RUNS: usize = 7;
/// Latency injected per Portal call for the latency figures.
pub const PORTAL_MS: u64 = 50;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn flag_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "none")
}

#[tokio::main]
async fn main() {
    let kind = Kind::from_env();
    let sim = Sim::start().await;
    // A fresh backend for each phase: rustack keeps at most 1,024 transaction tokens per 10-minute
    // idempotency window (DynamoDB has no such limit), and one phase makes up to 1,000.
    let fresh = || Aws::start(kind);
    let root = env!("CARGO_MANIFEST_DIR");
    let rust = Subject {
        name: "portal-backup",
        // PORTAL_BACKUP_BIN: another build of the bootstrap (one with symbols, for a profiler).
        program: std::env::var("PORTAL_BACKUP_BIN")
            .unwrap_or_else(|_| format!("{root}/target/release/portal-backup")),
        args: vec![],
        // BENCH_FUNCTION_ENV="K=V K2=V2": settings given to portal-backup only.
        env: std::env::var("BENCH_FUNCTION_ENV")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let node_dir = format!("{root}/benches/node-baseline");
    let peer_subject = match which("node") {
        Some(node)
            if !flag_off("BENCH_PEER")
                && std::path::Path::new(&format!("{node_dir}/node_modules")).is_dir() =>
        {
            Some(Subject {
                name: "Node.js 20 (seed flow)",
                program: node,
                args: vec![format!("{node_dir}/index.mjs")],
                env: vec![],
            })
        }
        _ => None,
    };

    let aws = fresh().await;
    let ours = measure(&rust, &aws, &sim, 0).await;
    let floor = calls::sequential_floor(&fresh().await, &sim, 50_000).await;
    let calls = calls::calls_cpu(&fresh().await, &sim, 60_000).await;
    let peer = match &peer_subject {
        Some(node) => Some(measure(node, &fresh().await, &sim, 100_000).await),
        None => None,
    };
    let (our_shares, peer_shares) = if flag_off("BENCH_QUOTA") {
        (None, None)
    } else {
        let ours = quota::shares(&rust, &fresh().await, &sim, 200_000).await;
        let peer = match (&peer_subject, &ours) {
            (Some(node), Some(_)) => quota::shares(node, &fresh().await, &sim, 300_000).await,
            _ => None,
        };
        (ours, peer)
    };

    let size = std::fs::metadata(&rust.program)
        .map(|m| m.len() as f64 / 1_048_576.0)
        .unwrap_or(0.0);
    println!("\n| backend | {} |\n|---|---|", kind.name());
    report::whole_cpu(rust.name, &aws, &ours, peer.as_ref(), &floor, &calls, size);
    if let Some(s) = &our_shares {
        report::shares(rust.name, s, peer_shares.as_deref());
    }
    let at256 = |v: &Option<Vec<quota::Share>>| {
        v.as_ref()
            .and_then(|v| v.iter().find(|s| s.memory_mb == 256).copied())
    };
    let (ours256, peer256) = (at256(&our_shares), at256(&peer_shares));
    report::targets(
        &ours,
        peer.as_ref(),
        ours256.as_ref().map(|s| (s, peer256.as_ref())),
        size,
    );
    // The chart is the standard run's: this build beside the peer (not an A/B run's).
    let standard = std::env::var_os("PORTAL_BACKUP_BIN").is_none()
        && rust.env.is_empty()
        && peer_shares.is_some();
    if let Some(s) = our_shares.as_ref().filter(|_| standard) {
        let title = format!(
            "portal-backup and the Node.js peer at Lambda's CPU share ({})",
            chrono_date()
        );
        let svg = chart::svg(
            &title,
            kind.name(),
            s,
            peer_shares.as_deref().unwrap_or(&[]),
        );
        let path = format!("{root}/docs/performance-chart.svg");
        match std::fs::write(&path, svg) {
            Ok(()) => eprintln!("chart: {path}"),
            Err(e) => eprintln!("chart not written to {path}: {e}"),
        }
    }
}

/// Today's date (UTC), from `date`, for the chart's title.
fn chrono_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
