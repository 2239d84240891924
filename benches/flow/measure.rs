//! The whole-CPU figures of one subject: init, the first message of a fresh process, one message
//! and a batch of ten with Portal latency, peak RSS, and CPU per message.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend::Aws;
use crate::common::{self, Function, Sim, message, sqs_event};
use crate::{PORTAL_MS, RUNS, median};

/// Messages behind the CPU and throughput figures (with the rest of a subject's phase, fewer
/// transactions than rustack's 1,024 tokens per window).
pub const CPU_MESSAGES: usize = 900;

/// CPU time of `/proc/{entry}` (a pid, or `thread-self`) in user and kernel mode, in seconds,
/// and its peak RSS in MiB.
pub fn usage(entry: impl std::fmt::Display) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{entry}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime is 11, stime is 12 (man 5 proc); 100 ticks/s.
    let (user, sys) = (ticks(11) / 100.0, ticks(12) / 100.0);
    (user, sys, status_value(&entry, "VmHWM:") / 1024.0)
}

/// The number of threads of process `pid` now.
pub fn threads(pid: u32) -> f64 {
    status_value(&pid, "Threads:")
}

/// The number after `key` in `/proc/{entry}/status` (0 when absent).
fn status_value(entry: &dyn std::fmt::Display, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{entry}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A function under test: how to start its process.
pub struct Subject {
    pub name: &'static str,
    pub program: String,
    pub args: Vec<String>,
    /// Settings of this subject's own (`BENCH_FUNCTION_ENV` for portal-backup: an A/B of an
    /// environment variable, such as `MALLOC_ARENA_MAX=2`, without another build).
    pub env: Vec<(String, String)>,
}

/// Another way to run a program: `(program, args)` → the command that runs it (inside a cgroup,
/// see `quota`).
pub type Launcher<'a> = &'a dyn Fn(&str, &[String]) -> (String, Vec<String>);

impl Subject {
    /// Starts the process on a whole CPU: Lambda gives one at 1,769 MB.
    pub async fn start(&self, aws: &Aws, sim: &Sim) -> Function {
        self.start_in(aws, sim, None, 1769).await
    }

    /// Starts the process, through `launch` if given, told its memory size as Lambda tells it
    /// (the function sizes its pool of KMS threads by it).
    pub async fn start_in(
        &self,
        aws: &Aws,
        sim: &Sim,
        launch: Option<Launcher<'_>>,
        memory_mb: u32,
    ) -> Function {
        let mut env = aws.env(sim);
        env.push(("RUST_LOG".into(), "warn".into()));
        env.push((
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            memory_mb.to_string(),
        ));
        env.extend(self.env.iter().cloned());
        let (program, args) = match launch {
            Some(launch) => launch(&self.program, &self.args),
            None => (self.program.clone(), self.args.clone()),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Function::start_program(&program, &args, &env).await
    }
}

/// What one subject measured.
pub struct Figures {
    pub init_ms: f64,
    /// A fresh process's first message and the next one, no Portal latency.
    pub first_ms: f64,
    pub second_ms: f64,
    /// The process's CPU from its start to the end of its first message.
    pub first_cpu_ms: f64,
    pub peak_rss_mib: f64,
    /// The process's threads at the end of the run (its runtimes and their blocking pools).
    pub threads: f64,
    pub single_ms: f64,
    pub batch_ms: f64,
    /// CPU time of each backend process during a batch of ten.
    pub backend_batch_ms: Vec<f64>,
    pub cpu_ms_per_message: f64,
    pub user_ms_per_message: f64,
    pub messages_per_s: f64,
}

/// Events of `n` messages each, for fresh clients numbered from `base`.
pub async fn batches(sim: &Sim, count: usize, n: usize, base: usize) -> Vec<Value> {
    let mut events = Vec::new();
    for b in 0..count {
        let mut records = Vec::new();
        for i in 0..n {
            let k = base + b * n + i;
            let (client, key, generate) = sim.new_client(k).await;
            records.push((format!("m-{k}"), message(&client, &key, &generate, None)));
        }
        events.push(sqs_event(&records));
    }
    events
}

pub async fn timed(f: &Function, event: &Value) -> f64 {
    let started = Instant::now();
    let answer = f.invoke(event).await;
    assert_eq!(
        common::failed_ids(&answer),
        Vec::<String>::new(),
        "every message of a benchmark batch succeeds; the function's output:\n{}",
        f.logs()
    );
    started.elapsed().as_secs_f64() * 1000.0
}

pub async fn measure(s: &Subject, aws: &Aws, sim: &Sim, base: usize) -> Figures {
    // 1. Init: process start → first GET /runtime/invocation/next.
    let mut inits = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let f = s.start(aws, sim).await;
        let deadline = started + Duration::from_secs(30);
        while f.first_poll().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let first = f
            .first_poll()
            .expect("the function polled for work within 30 s");
        inits.push(first.duration_since(started).as_secs_f64() * 1000.0);
    }

    // 2. One message, and a batch of ten, with PORTAL_MS per Portal call.
    let f = s.start(aws, sim).await;
    let singles_ev = batches(sim, RUNS + 2, 1, base).await;
    let tens_ev = batches(sim, RUNS, 10, base + 100).await;
    let cpu_ev = batches(sim, CPU_MESSAGES / 10, 10, base + 1000).await;
    // The first message warms the pools, as a cold Lambda's does; the second is a warm one.
    let first_ms = timed(&f, &singles_ev[RUNS]).await;
    let first_cpu_ms = {
        let (user, sys, _) = usage(f.pid().expect("pid"));
        (user + sys) * 1000.0
    };
    let second_ms = timed(&f, &singles_ev[RUNS + 1]).await;
    sim.admin("config", json!({"latencyMs": PORTAL_MS})).await;
    let (mut singles, mut tens) = (Vec::new(), Vec::new());
    let servers = aws.processes();
    let mut busy = vec![Vec::new(); servers.len()];
    let cpu_ms = |pid: Option<u32>| {
        let (user, sys, _) = usage(pid.unwrap_or(0));
        (user + sys) * 1000.0
    };
    for (one, ten) in singles_ev.iter().zip(&tens_ev) {
        singles.push(timed(&f, one).await);
        let before: Vec<f64> = servers.iter().map(|(_, pid)| cpu_ms(*pid)).collect();
        tens.push(timed(&f, ten).await);
        for ((_, pid), (b, series)) in servers.iter().zip(before.iter().zip(&mut busy)) {
            series.push(cpu_ms(*pid) - b);
        }
    }
    sim.admin("config", json!({"latencyMs": 0})).await;

    // 3. CPU per message and throughput, no injected latency.
    let pid = f.pid().expect("pid");
    let (user_before, sys_before, _) = usage(pid);
    let started = Instant::now();
    for e in &cpu_ev {
        timed(&f, e).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let (user_after, sys_after, peak_rss_mib) = usage(pid);
    let threads = threads(pid);
    let per_message = |seconds: f64| seconds * 1000.0 / CPU_MESSAGES as f64;
    Figures {
        init_ms: median(inits),
        first_ms,
        second_ms,
        first_cpu_ms,
        peak_rss_mib,
        threads,
        single_ms: median(singles),
        batch_ms: median(tens),
        backend_batch_ms: busy.into_iter().map(median).collect(),
        cpu_ms_per_message: per_message(user_after + sys_after - user_before - sys_before),
        user_ms_per_message: per_message(user_after - user_before),
        messages_per_s: CPU_MESSAGES as f64 / wall,
    }
}
