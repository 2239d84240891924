//! The bench's tables: the whole-CPU figures, the figures at each CPU share, and the targets.

use crate::backend::Aws;
use crate::calls::{CALL_ROUNDS, CallsCpu, Floor};
use crate::measure::{CPU_MESSAGES, Figures};
use crate::quota::{Share, quota_us};
use crate::{PORTAL_MS, RUNS};

/// A table row: our figure, the peer's, and their ratio.
fn row(what: &str, unit: &str, ours: f64, theirs: Option<f64>, digits: usize) {
    let (t, r) = theirs.map_or(("–".to_owned(), "–".to_owned()), |t| {
        (format!("{t:.digits$} {unit}"), format!("{:.3}×", ours / t))
    });
    println!("| {what} | {ours:.digits$} {unit} | {t} | {r} |");
}

/// The whole-CPU table.
pub fn whole_cpu(
    name: &str,
    aws: &Aws,
    ours: &Figures,
    peer: Option<&Figures>,
    floor: &Floor,
    calls: &CallsCpu,
    size: f64,
) {
    let peer_name = peer.map_or("(node not found)", |_| "Node.js 20, seed flow");
    println!(
        "\n| measure (median of {RUNS}) | {} | {peer_name} | ratio |",
        name
    );
    println!("|---|---|---|---|");
    row(
        "init: process start → first /next",
        "ms",
        ours.init_ms,
        peer.map(|p| p.init_ms),
        1,
    );
    row(
        "first message of a fresh process, no Portal latency (one run)",
        "ms",
        ours.first_ms,
        peer.map(|p| p.first_ms),
        1,
    );
    row(
        "  ÷ the second message (warm)",
        "×",
        ours.first_ms / ours.second_ms,
        peer.map(|p| p.first_ms / p.second_ms),
        2,
    );
    row(
        "  process CPU from start to the end of the first message",
        "ms",
        ours.first_cpu_ms,
        peer.map(|p| p.first_cpu_ms),
        0,
    );
    row(
        &format!("peak RSS after {} messages", CPU_MESSAGES + 9 + RUNS * 11),
        "MiB",
        ours.peak_rss_mib,
        peer.map(|p| p.peak_rss_mib),
        1,
    );
    row(
        "  threads of the process at that point",
        "",
        ours.threads,
        peer.map(|p| p.threads),
        0,
    );
    row(
        &format!("one message, {PORTAL_MS} ms per Portal call"),
        "ms",
        ours.single_ms,
        peer.map(|p| p.single_ms),
        0,
    );
    row(
        &format!("batch of 10, {PORTAL_MS} ms per Portal call"),
        "ms",
        ours.batch_ms,
        peer.map(|p| p.batch_ms),
        0,
    );
    row(
        "batch of 10 ÷ one message",
        "×",
        ours.batch_ms / ours.single_ms,
        peer.map(|p| p.batch_ms / p.single_ms),
        2,
    );
    for (n, (server, _)) in aws.processes().iter().enumerate() {
        row(
            &format!("  the backend's CPU during a batch of 10: {server}"),
            "ms",
            ours.backend_batch_ms[n],
            peer.map(|p| p.backend_batch_ms[n]),
            0,
        );
    }
    row(
        &format!("CPU per message (user+sys), {CPU_MESSAGES} messages, no latency"),
        "ms",
        ours.cpu_ms_per_message,
        peer.map(|p| p.cpu_ms_per_message),
        3,
    );
    row(
        "  of which user mode (the kernel's share is mostly loopback TCP)",
        "ms",
        ours.user_ms_per_message,
        peer.map(|p| p.user_ms_per_message),
        3,
    );
    println!(
        "| CPU per message of its calls alone: the crate's adapters make one message's 8 AWS SDK and 2 Portal calls one after another, {CALL_ROUNDS} messages, no workflow or Lambda runtime around them | {:.3} ms (user {:.3} ms) | – | – |",
        calls.total, calls.user
    );
    println!(
        "|   of which the 8 AWS SDK calls (4 KMS, 4 DynamoDB), per call | {:.3} ms | – | – |",
        calls.aws / 8.0
    );
    println!(
        "|   of which the 2 Portal calls (reqwest), per call | {:.3} ms | – | – |",
        calls.portal / 2.0
    );
    row(
        "throughput, batches of 10, one process",
        "msg/s",
        ours.messages_per_s,
        peer.map(|p| p.messages_per_s),
        0,
    );
    println!(
        "| one message ÷ its sequential calls' own latencies ({:.0} ms: Portal {:.0} ms, KMS {:.1} ms, DynamoDB {:.1} ms, each call made alone) | {:.2}× | – | – |",
        floor.total_ms,
        floor.portal_ms,
        floor.kms_ms,
        floor.ddb_ms,
        ours.single_ms / floor.total_ms
    );
    println!("| release binary (x86_64, stripped) | {size:.1} MiB | – | – |");
}

/// The table of figures at each CPU share.
pub fn shares(name: &str, ours: &[Share], peer: Option<&[Share]>) {
    let peer_name = peer.map_or("(node not found)", |_| "Node.js 20, seed flow");
    println!(
        "\n| at Lambda's CPU share (CFS quota over 20 ms; {PORTAL_MS} ms per Portal call; median of 3 fresh processes) | {name} | {peer_name} | ratio |"
    );
    println!("|---|---|---|---|");
    for (i, s) in ours.iter().enumerate() {
        let p = peer.and_then(|p| p.get(i));
        let mb = s.memory_mb;
        for (n, (what, unit, value, digits)) in SHARE_ROWS.iter().enumerate() {
            // The size's first row also says the CPU share it stands for.
            let size = if n == 0 {
                format!("{mb} MB ({:.3} vCPU)", quota_us(mb) as f64 / 20_000.0)
            } else {
                format!("{mb} MB")
            };
            row(
                &format!("{size}: {what}"),
                unit,
                value(s),
                p.map(value),
                *digits,
            );
        }
    }
}

/// One figure of a subject at one memory size.
type Metric = fn(&Share) -> f64;

/// The rows printed for each memory size: what, unit, the figure, decimals.
const SHARE_ROWS: [(&str, &str, Metric, usize); 8] = [
    ("init", "ms", |s| s.init_ms, 0),
    ("init + first message", "ms", |s| s.init_first_ms, 0),
    ("first message alone (after init)", "ms", Share::first_ms, 0),
    ("a warm message", "ms", |s| s.warm_ms, 0),
    (
        "first message ÷ a warm one",
        "×",
        |s| s.first_ms() / s.warm_ms,
        2,
    ),
    ("a batch of 10, warm", "ms", |s| s.batch_ms, 0),
    (
        "process CPU, start to the end of the batch",
        "ms",
        |s| s.cpu_ms,
        0,
    ),
    (
        "billed GB-s per 1,000 backups (batches of 10, warm)",
        "GB-s",
        Share::gb_s_per_1000,
        2,
    ),
];

/// One target: the figure, the bound, and whether it holds (`unit` follows both: `×` or ` MiB`).
fn target(what: &str, value: Option<f64>, bound: f64, unit: &str) {
    let (v, met) = match value {
        Some(v) if v.is_finite() => (
            format!("{v:.3}{unit}"),
            if v <= bound { "met" } else { "not met" },
        ),
        _ => ("–".to_owned(), "not measured"),
    };
    println!("| {what} | {v} | ≤ {bound}{unit} | {met} |");
}

/// The goals of CPU per message, from this run's figures (figures, never a test's pass or fail):
/// each against the Node.js peer measured in the same run, or an absolute bound.
pub fn targets(
    ours: &Figures,
    peer: Option<&Figures>,
    at: Option<(&Share, Option<&Share>)>,
    binary_mib: f64,
) {
    println!("\n| goal (this run) | measured | goal | |");
    println!("|---|---|---|---|");
    let at256 = at.map(|(s, _)| s);
    let peer256 = at.and_then(|(_, p)| p);
    let ratio = |f: fn(&Share) -> f64| at256.zip(peer256).map(|(s, p)| f(s) / f(p));
    target(
        "256 MB, batch of ten, warm: wall ÷ the peer's",
        ratio(|s| s.batch_ms),
        0.20,
        "×",
    );
    target(
        "whole CPU: CPU per message ÷ the peer's",
        peer.map(|p| ours.cpu_ms_per_message / p.cpu_ms_per_message),
        0.25,
        "×",
    );
    target(
        "256 MB: init + first message ÷ the peer's",
        ratio(|s| s.init_first_ms),
        0.025,
        "×",
    );
    target(
        "whole CPU: peak RSS after the run ÷ the peer's",
        peer.map(|p| ours.peak_rss_mib / p.peak_rss_mib),
        0.15,
        "×",
    );
    target("release binary, stripped", Some(binary_mib), 16.0, " MiB");
    target(
        "whole CPU: init ÷ the peer's",
        peer.map(|p| ours.init_ms / p.init_ms),
        0.02,
        "×",
    );
    target(
        "whole CPU: batch of ten ÷ a warm message",
        Some(ours.batch_ms / ours.single_ms),
        1.05,
        "×",
    );
    target(
        "256 MB: first message ÷ a warm one",
        at256.map(|s| s.first_ms() / s.warm_ms),
        1.0,
        "×",
    );
}
