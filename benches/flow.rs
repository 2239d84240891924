//! `cargo bench --bench flow` (or `scripts/bench`): the release bootstrap and its
//! peer, the seed's flow as a Node.js 20 function (`benches/node-baseline/`), each under a local
//! Lambda Runtime API against the same moto and Portal simulator. Prints one table of medians,
//! each figure beside the peer's and as a ratio: init time and peak RSS, one message and a batch
//! of ten with 50 ms injected per Portal call, and CPU time per message with no injected latency.
//! Figures only: nothing here passes or fails on a number.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Function, Moto, Sim, function_env, message, sqs_event};
use devstack::keepalive::KeepAliveFront;
use serde_json::{Value, json};

/// Repetitions behind each median.
const RUNS: usize = 7;
/// Messages behind the CPU and throughput figures.
const CPU_MESSAGES: usize = 1000;
/// Latency injected per Portal call for the latency figures.
const PORTAL_MS: u64 = 50;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU time of `/proc/{entry}` (a pid, or `thread-self`) in user and kernel mode, in seconds,
/// and its peak RSS in MiB.
fn usage(entry: impl std::fmt::Display) -> (f64, f64, f64) {
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
    let status = std::fs::read_to_string(format!("/proc/{entry}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (user, sys, hwm_kb / 1024.0)
}

/// The AWS side of the stack. KMS and DynamoDB are separate services behind separate endpoints in
/// AWS; in one moto process, single-threaded, each would wait for the other's calls. So KMS gets
/// a moto of its own, and each moto a keep-alive front.
struct Aws {
    dynamodb: Moto,
    kms: Moto,
    dynamodb_front: KeepAliveFront,
    kms_front: KeepAliveFront,
}

impl Aws {
    async fn start() -> Self {
        let (dynamodb, kms) = tokio::join!(Moto::start(), Moto::start());
        let dynamodb_front = KeepAliveFront::start(&dynamodb.endpoint).await;
        let kms_front = KeepAliveFront::start(&kms.endpoint).await;
        Self {
            dynamodb,
            kms,
            dynamodb_front,
            kms_front,
        }
    }

    /// A function's environment: DynamoDB and KMS each through its front.
    fn env(&self, sim: &Sim) -> Vec<(String, String)> {
        let mut env = function_env(&self.dynamodb, sim, "SELF_MANAGED");
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL" && k != "KMS_KEY_ID");
        env.extend([
            ("AWS_ENDPOINT_URL".into(), self.dynamodb_front.url.clone()),
            ("AWS_ENDPOINT_URL_KMS".into(), self.kms_front.url.clone()),
            ("KMS_KEY_ID".into(), self.kms.key_id.clone()),
        ]);
        env
    }
}

/// A function under test: how to start its process.
struct Subject {
    name: &'static str,
    program: String,
    args: Vec<String>,
}

impl Subject {
    async fn start(&self, aws: &Aws, sim: &Sim) -> Function {
        let mut env = aws.env(sim);
        env.push(("RUST_LOG".into(), "warn".into()));
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Function::start_program(&self.program, &args, &env).await
    }
}

/// What one subject measured.
struct Figures {
    init_ms: f64,
    /// A fresh process's first message and the next one, no Portal latency.
    first_ms: f64,
    second_ms: f64,
    /// The process's CPU from its start to the end of its first message.
    first_cpu_ms: f64,
    peak_rss_mib: f64,
    single_ms: f64,
    batch_ms: f64,
    /// CPU time of the DynamoDB moto and the KMS moto during a batch of ten.
    moto_batch_ms: (f64, f64),
    cpu_ms_per_message: f64,
    user_ms_per_message: f64,
    messages_per_s: f64,
}

/// Events of `n` messages each, for fresh clients numbered from `base`.
async fn batches(sim: &Sim, count: usize, n: usize, base: usize) -> Vec<Value> {
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

async fn timed(f: &Function, event: &Value) -> f64 {
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

async fn measure(s: &Subject, aws: &Aws, sim: &Sim, base: usize) -> Figures {
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
    let (mut ddb_busy, mut kms_busy) = (Vec::new(), Vec::new());
    let cpu_ms = |pid: Option<u32>| {
        let (user, sys, _) = usage(pid.unwrap_or(0));
        (user + sys) * 1000.0
    };
    for (one, ten) in singles_ev.iter().zip(&tens_ev) {
        singles.push(timed(&f, one).await);
        let (ddb, kms) = (cpu_ms(aws.dynamodb.pid()), cpu_ms(aws.kms.pid()));
        tens.push(timed(&f, ten).await);
        ddb_busy.push(cpu_ms(aws.dynamodb.pid()) - ddb);
        kms_busy.push(cpu_ms(aws.kms.pid()) - kms);
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
    let per_message = |seconds: f64| seconds * 1000.0 / CPU_MESSAGES as f64;
    Figures {
        init_ms: median(inits),
        first_ms,
        second_ms,
        first_cpu_ms,
        peak_rss_mib,
        single_ms: median(singles),
        batch_ms: median(tens),
        moto_batch_ms: (median(ddb_busy), median(kms_busy)),
        cpu_ms_per_message: per_message(user_after + sys_after - user_before - sys_before),
        user_ms_per_message: per_message(user_after - user_before),
        messages_per_s: CPU_MESSAGES as f64 / wall,
    }
}

/// The crate's own adapters, with the function's SDK settings, for calls made outside the
/// function: the sequential floor and the CPU of the calls alone.
struct Adapters {
    store: portal_backup::adapters::dynamodb::DynamoStore,
    envelope: portal_backup::adapters::esdk::EsdkEnvelope,
    portal: portal_backup::adapters::portal_http::HttpPortal,
}

/// Where `Adapters` send their calls (owned, so a thread of its own can take it).
#[derive(Clone)]
struct Endpoints {
    dynamodb: String,
    kms: String,
    table: String,
    key_id: String,
    portal: String,
}

impl Endpoints {
    fn of(aws: &Aws, sim: &Sim) -> Self {
        Self {
            dynamodb: aws.dynamodb_front.url.clone(),
            kms: aws.kms_front.url.clone(),
            table: aws.dynamodb.table.clone(),
            key_id: aws.kms.key_id.clone(),
            portal: sim.url.clone(),
        }
    }
}

impl Adapters {
    async fn new(at: &Endpoints) -> Self {
        use aws_config::Region;
        use aws_sdk_dynamodb::config::Credentials;
        use portal_backup::adapters::portal_http::{HttpTimeouts, http_client};
        // The function's SDK settings (portal_backup::app); the endpoint and credentials are
        // what the function reads from its environment.
        let sdk = |url: String| async move {
            portal_backup::app::sdk_loader()
                .endpoint_url(url)
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "static"))
                .load()
                .await
        };
        let store = portal_backup::adapters::dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk(at.dynamodb.clone()).await),
            &at.table,
        );
        let envelope = portal_backup::adapters::esdk::EsdkEnvelope::new(
            aws_sdk_kms::Client::new(&sdk(at.kms.clone()).await),
            &at.key_id,
        )
        .expect("the AWS Encryption SDK");
        let http = http_client(
            HttpTimeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(30),
            },
            false,
        )
        .expect("an HTTP client");
        let portal =
            portal_backup::adapters::portal_http::HttpPortal::new(http, &at.portal, &at.portal);
        Self {
            store,
            envelope,
            portal,
        }
    }

    /// The calls of one self-managed message, one after another: lease, backup, two seals, the
    /// checkpoint with both shares, the read-back, two decrypts, the mark and the COMPLETED
    /// checkpoint. `done` hears the name of each call as it ends; the second of the
    /// calls the function makes two at once ends in a name with "2".
    async fn one_message(
        &self,
        (client, api_key, generate): &(String, String, Value),
        owner: &str,
        done: &mut dyn FnMut(&'static str),
    ) {
        use portal_backup::domain::checkpoint::{BackupKey, Progress, SealedRecord, Status};
        use portal_backup::domain::ciphertext::EncryptionContext;
        use portal_backup::domain::model::BackupMode;
        use portal_backup::domain::secret::{ClientApiKey, SecretString};
        use portal_backup::ports::checkpoints::{Acquired, Checkpoints};
        use portal_backup::ports::envelope::Envelope;
        use portal_backup::ports::portal::Portal;
        use portal_backup::ports::store::{BackupStore, StoredShare};

        let (store, envelope, portal) = (&self.store, &self.envelope, &self.portal);
        let api_key = ClientApiKey::new(api_key.clone());
        let fresh = Progress {
            status: Status::InProgress,
            backup_mode: BackupMode::SelfManaged,
            signing_share_pair_ids: [format!("sig-s-{owner}"), format!("sig-e-{owner}")],
            shares: None,
        };
        let key = BackupKey::new(client, None, &fresh.signing_share_pair_ids);
        let acquired = store
            .acquire(&key, owner, u64::MAX / 2, &fresh)
            .await
            .expect("acquire");
        done("acquire");
        assert!(matches!(acquired, Acquired::Run(_)));
        let shares = portal
            .backup(&api_key, &SecretString::new(generate.to_string()))
            .await
            .expect("backup");
        done("backup");
        let contexts = shares
            .each_ref()
            .map(|s| EncryptionContext::backup_share(client, &s.id, s.curve));
        let first = envelope
            .seal(&contexts[0], b"a share, as big as one")
            .await
            .expect("seal");
        done("seal");
        let second = envelope
            .seal(&contexts[1], b"a share, as big as one")
            .await
            .expect("seal");
        done("seal2");
        let sealed = [first, second];
        let records = [0, 1].map(|i| SealedRecord {
            curve: shares[i].curve,
            id: shares[i].id.clone(),
            cipher_text: sealed[i].clone(),
        });
        let backed_up = Progress {
            status: Status::BackedUp,
            shares: Some(records),
            ..fresh.clone()
        };
        let items = [0, 1].map(|i| StoredShare {
            client_id: client.clone(),
            backup_share_pair_id: shares[i].id.clone(),
            curve: shares[i].curve,
            signing_share_pair_id: fresh.signing_share_pair_ids[i].clone(),
            cipher_text: sealed[i].clone(),
            created_at: 1,
        });
        store
            .advance_storing(&key, owner, Status::InProgress, &backed_up, &items)
            .await
            .expect("checkpoint and shares");
        done("store");
        store
            .cipher_texts(client, [shares[0].id.as_str(), shares[1].id.as_str()])
            .await
            .expect("read back");
        done("read back");
        envelope
            .open(&contexts[0], &sealed[0])
            .await
            .expect("decrypt");
        done("decrypt");
        envelope
            .open(&contexts[1], &sealed[1])
            .await
            .expect("decrypt");
        done("decrypt2");
        let ids = shares.each_ref().map(|s| s.id.clone());
        portal.mark_stored(&api_key, &ids).await.expect("mark");
        done("mark");
        store
            .advance(
                &key,
                owner,
                Status::BackedUp,
                &Progress {
                    status: Status::Completed,
                    ..backed_up
                },
            )
            .await
            .expect("COMPLETED");
        done("completed");
    }
}

/// The latencies of the calls one portal-backup message makes one after another, each made
/// alone by this process with the function's own adapters (the same requests, through the same
/// keep-alive front) and timed by itself: lease, backup, seal, checkpoint with both shares, read
/// back, decrypt, mark and the COMPLETED checkpoint. Calls the function makes two at once (the seals, the decrypts) count
/// once. Medians of `RUNS` rounds.
struct Floor {
    total_ms: f64,
    portal_ms: f64,
    kms_ms: f64,
    ddb_ms: f64,
}

async fn sequential_floor(aws: &Aws, sim: &Sim, base: usize) -> Floor {
    let adapters = Adapters::new(&Endpoints::of(aws, sim)).await;
    let mut clients = Vec::new();
    for i in 0..RUNS {
        clients.push(sim.new_client(base + i).await);
    }
    sim.admin("config", json!({"latencyMs": PORTAL_MS})).await;
    // Per call: the time of each round, from the end of the call before it.
    let mut t: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for (round, client) in clients.iter().enumerate() {
        let mut last = Instant::now();
        let mut done = |name: &'static str| {
            t.entry(name)
                .or_default()
                .push(last.elapsed().as_secs_f64() * 1000.0);
            last = Instant::now();
        };
        adapters
            .one_message(client, &format!("floor-{round}"), &mut done)
            .await;
    }
    sim.admin("config", json!({"latencyMs": 0})).await;
    let m = |name: &str| t.get(name).cloned().map_or(f64::NAN, median);
    let portal_ms = m("backup") + m("mark");
    let kms_ms = m("seal") + m("decrypt");
    let ddb_ms = m("acquire") + m("store") + m("read back") + m("completed");
    Floor {
        total_ms: portal_ms + kms_ms + ddb_ms,
        portal_ms,
        kms_ms,
        ddb_ms,
    }
}

/// Messages behind the CPU of the calls alone, after as many again to warm the pools.
const CALL_ROUNDS: usize = 500;

/// CPU time of the calling thread, user and kernel mode together, in ms (nanosecond clock).
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "the thread CPU clock is readable");
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
}

/// CPU of the AWS Encryption SDK's runtime threads (named `esdk`: every KMS call of the envelope
/// runs there, see `src/adapters/esdk.rs`), in ms: (user and kernel mode, from `schedstat`; user
/// mode, from `stat`'s clock ticks). Read at the start and end of a run, never per call: the
/// reads themselves cost CPU on the calling thread.
fn esdk_threads_cpu_ms() -> (f64, f64) {
    // SAFETY: sysconf with a constant name has no preconditions.
    let tick_ms = 1000.0 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64);
    let (mut total, mut user) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten().map(|t| t.path()) {
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != "esdk" {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
        let ns: f64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        total += ns / 1e6;
        // stat: after the `)` closing the name, utime is the 12th field.
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        let ticks: f64 = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(11)?.parse().ok())
            .unwrap_or(0.0);
        user += ticks * tick_ms;
    }
    (total, user)
}

/// What one message's calls cost in CPU when made alone (see `calls_cpu`), in ms per message.
struct CallsCpu {
    total: f64,
    user: f64,
    /// The 8 AWS SDK calls, and the 2 Portal calls.
    aws: f64,
    portal: f64,
}

/// CPU per message of one message's calls made by the crate's adapters alone, one after another,
/// with no workflow, Lambda runtime or logging around them: what the client libraries cost for
/// the calls a message needs. Measured on a thread of its own with a current-thread runtime, as
/// the function runs, so that no other task's CPU counts.
async fn calls_cpu(aws: &Aws, sim: &Sim, base: usize) -> CallsCpu {
    let at = Endpoints::of(aws, sim);
    let mut clients = Vec::new();
    for i in 0..2 * CALL_ROUNDS {
        clients.push(sim.new_client(base + i).await);
    }
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let adapters = Adapters::new(&at).await;
            let (warm, measured) = clients.split_at(CALL_ROUNDS);
            for (i, client) in warm.iter().enumerate() {
                adapters
                    .one_message(client, &format!("warm-{i}"), &mut |_| {})
                    .await;
            }
            let (user, sys, _) = usage("thread-self");
            let (esdk_total, esdk_user) = esdk_threads_cpu_ms();
            let (mut aws_ms, mut portal_ms) = (0.0, 0.0);
            for (i, client) in measured.iter().enumerate() {
                let mut last = thread_cpu_ms();
                let mut done = |name: &'static str| {
                    let now = thread_cpu_ms();
                    match name {
                        "backup" | "mark" => portal_ms += now - last,
                        _ => aws_ms += now - last,
                    }
                    last = now;
                };
                adapters
                    .one_message(client, &format!("cpu-{i}"), &mut done)
                    .await;
            }
            let (user_after, sys_after, _) = usage("thread-self");
            // The KMS calls' work on the ESDK's threads: all of it is AWS SDK work.
            let (esdk_total_after, esdk_user_after) = esdk_threads_cpu_ms();
            let esdk_ms = esdk_total_after - esdk_total;
            let per_message = |ms: f64| ms / CALL_ROUNDS as f64;
            CallsCpu {
                total: per_message((user_after + sys_after - user - sys) * 1000.0 + esdk_ms),
                user: per_message((user_after - user) * 1000.0 + esdk_user_after - esdk_user),
                aws: per_message(aws_ms + esdk_ms),
                portal: per_message(portal_ms),
            }
        })
    });
    tokio::task::spawn_blocking(move || thread.join().expect("the calls' thread"))
        .await
        .expect("join")
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

#[tokio::main]
async fn main() {
    let (aws, sim) = tokio::join!(Aws::start(), Sim::start());
    let root = env!("CARGO_MANIFEST_DIR");
    let rust = Subject {
        name: "portal-backup",
        // PORTAL_BACKUP_BIN: another build of the bootstrap (one with symbols, for a profiler).
        program: std::env::var("PORTAL_BACKUP_BIN")
            .unwrap_or_else(|_| format!("{root}/target/release/portal-backup")),
        args: vec![],
    };
    let ours = measure(&rust, &aws, &sim, 0).await;
    let floor = sequential_floor(&aws, &sim, 50_000).await;
    let calls = calls_cpu(&aws, &sim, 60_000).await;
    let node_dir = format!("{root}/benches/node-baseline");
    // BENCH_PEER=none skips the Node.js peer (quicker A/B runs of this function alone).
    let skip_peer = std::env::var("BENCH_PEER").is_ok_and(|v| v == "none");
    let peer = match which("node") {
        Some(node)
            if !skip_peer && std::path::Path::new(&format!("{node_dir}/node_modules")).is_dir() =>
        {
            let node = Subject {
                name: "Node.js 20 (seed flow)",
                program: node,
                args: vec![format!("{node_dir}/index.mjs")],
            };
            Some(measure(&node, &aws, &sim, 100_000).await)
        }
        _ => None,
    };

    let size = std::fs::metadata(&rust.program)
        .map(|m| m.len() as f64 / 1_048_576.0)
        .unwrap_or(0.0);
    let peer_name = peer
        .as_ref()
        .map_or("(node not found)", |_| "Node.js 20, seed flow");
    println!(
        "\n| measure (median of {RUNS}) | {} | {peer_name} | ratio |",
        rust.name
    );
    println!("|---|---|---|---|");
    let row = |what: &str, unit: &str, ours: f64, theirs: Option<f64>, digits: usize| {
        let (t, r) = theirs.map_or(("–".to_owned(), "–".to_owned()), |t| {
            (format!("{t:.digits$} {unit}"), format!("{:.3}×", ours / t))
        });
        println!("| {what} | {ours:.digits$} {unit} | {t} | {r} |");
    };
    row(
        "init: process start → first /next",
        "ms",
        ours.init_ms,
        peer.as_ref().map(|p| p.init_ms),
        1,
    );
    row(
        "first message of a fresh process, no Portal latency (one run)",
        "ms",
        ours.first_ms,
        peer.as_ref().map(|p| p.first_ms),
        1,
    );
    row(
        "  ÷ the second message (warm)",
        "×",
        ours.first_ms / ours.second_ms,
        peer.as_ref().map(|p| p.first_ms / p.second_ms),
        2,
    );
    row(
        "  process CPU from start to the end of the first message",
        "ms",
        ours.first_cpu_ms,
        peer.as_ref().map(|p| p.first_cpu_ms),
        0,
    );
    row(
        &format!("peak RSS after {} messages", CPU_MESSAGES + 9 + RUNS * 11),
        "MiB",
        ours.peak_rss_mib,
        peer.as_ref().map(|p| p.peak_rss_mib),
        1,
    );
    row(
        &format!("one message, {PORTAL_MS} ms per Portal call"),
        "ms",
        ours.single_ms,
        peer.as_ref().map(|p| p.single_ms),
        0,
    );
    row(
        &format!("batch of 10, {PORTAL_MS} ms per Portal call"),
        "ms",
        ours.batch_ms,
        peer.as_ref().map(|p| p.batch_ms),
        0,
    );
    row(
        "batch of 10 ÷ one message",
        "×",
        ours.batch_ms / ours.single_ms,
        peer.as_ref().map(|p| p.batch_ms / p.single_ms),
        2,
    );
    row(
        "  moto's CPU during a batch of 10: DynamoDB (one thread)",
        "ms",
        ours.moto_batch_ms.0,
        peer.as_ref().map(|p| p.moto_batch_ms.0),
        0,
    );
    row(
        "  moto's CPU during a batch of 10: KMS (one thread)",
        "ms",
        ours.moto_batch_ms.1,
        peer.as_ref().map(|p| p.moto_batch_ms.1),
        0,
    );
    row(
        &format!("CPU per message (user+sys), {CPU_MESSAGES} messages, no latency"),
        "ms",
        ours.cpu_ms_per_message,
        peer.as_ref().map(|p| p.cpu_ms_per_message),
        3,
    );
    row(
        "  of which user mode (the kernel's share is mostly loopback TCP)",
        "ms",
        ours.user_ms_per_message,
        peer.as_ref().map(|p| p.user_ms_per_message),
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
        peer.as_ref().map(|p| p.messages_per_s),
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
