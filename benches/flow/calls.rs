//! What the function's calls cost when made alone by the crate's own adapters: the sequential
//! floor of one message's latency, and the CPU of its calls with nothing around them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend::Aws;
use crate::common::Sim;
use crate::measure::usage;
use crate::{PORTAL_MS, RUNS, median};

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
            dynamodb: aws.dynamodb_url.clone(),
            kms: aws.kms_url.clone(),
            table: aws.table.clone(),
            key_id: aws.key_id.clone(),
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
            public: None,
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
            public: None,
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
pub struct Floor {
    pub total_ms: f64,
    pub portal_ms: f64,
    pub kms_ms: f64,
    pub ddb_ms: f64,
}

pub async fn sequential_floor(aws: &Aws, sim: &Sim, base: usize) -> Floor {
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
pub const CALL_ROUNDS: usize = 500;

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

/// CPU of the threads the envelope's KMS calls run on (the pool `kms-0`, `kms-1`, … that drives
/// them and the worker `esdk` that drives their connections: `src/adapters/kms_threads.rs`), in
/// ms: (user and kernel mode, from `schedstat`; user mode, from `stat`'s clock ticks). Read at the start and end of a run, never
/// per call: the reads themselves cost CPU on the calling thread.
fn kms_threads_cpu_ms() -> (f64, f64) {
    // SAFETY: sysconf with a constant name has no preconditions.
    let tick_ms = 1000.0 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64);
    let (mut total, mut user) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten().map(|t| t.path()) {
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm != "esdk" && !comm.starts_with("kms-") {
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
pub struct CallsCpu {
    pub total: f64,
    pub user: f64,
    /// The 8 AWS SDK calls, and the 2 Portal calls.
    pub aws: f64,
    pub portal: f64,
}

/// CPU per message of one message's calls made by the crate's adapters alone, one after another,
/// with no workflow, Lambda runtime or logging around them: what the client libraries cost for
/// the calls a message needs. Measured on a thread of its own with a current-thread runtime, as
/// the function runs, so that no other task's CPU counts.
pub async fn calls_cpu(aws: &Aws, sim: &Sim, base: usize) -> CallsCpu {
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
            let (esdk_total, esdk_user) = kms_threads_cpu_ms();
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
            // The KMS calls' work on those threads: all of it is AWS SDK work.
            let (esdk_total_after, esdk_user_after) = kms_threads_cpu_ms();
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
