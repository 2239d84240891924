//! The CPU share Lambda gives a function: 1 vCPU at 1,769 MB and less in proportion. Each subject
//! runs in a cgroup (v1, `/sys/fs/cgroup/cpu`) of its own whose CFS quota over a 20 ms period is
//! that share, from process start: init, the first message, a warm one, a batch of ten, and what
//! Lambda would bill for a thousand backups. The Runtime API, the backend and the simulator stay
//! outside the cgroup, as AWS's do.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::backend::Aws;
use crate::common::{Function, Sim};
use crate::measure::{Subject, batches, timed, usage};
use crate::{PORTAL_MS, median};

/// Memory sizes measured: the smallest, the template's default, and a larger one.
pub const MEMORY_MB: [u32; 3] = [128, 256, 1024];
/// Lambda's full vCPU.
const FULL_CPU_MB: f64 = 1769.0;
/// The CFS period; the quota is the share of it.
const PERIOD_US: u64 = 20_000;
/// Fresh processes behind each median.
const RUNS: usize = 3;
const CGROUP_ROOT: &str = "/sys/fs/cgroup/cpu";

/// A CPU share of `memory_mb` over the period: the CFS quota in microseconds.
pub fn quota_us(memory_mb: u32) -> u64 {
    ((f64::from(memory_mb) / FULL_CPU_MB).min(1.0) * PERIOD_US as f64).round() as u64
}

/// A cgroup with a CFS quota; removed when dropped (once its processes have exited).
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates `name` with the share of `memory_mb`; `None` (with the reason printed) where
    /// cgroups cannot be written.
    pub fn create(name: &str, memory_mb: u32) -> Option<Self> {
        let path = PathBuf::from(CGROUP_ROOT).join(name);
        let made = std::fs::create_dir_all(&path)
            .and_then(|()| std::fs::write(path.join("cpu.cfs_period_us"), PERIOD_US.to_string()))
            .and_then(|()| {
                std::fs::write(
                    path.join("cpu.cfs_quota_us"),
                    quota_us(memory_mb).to_string(),
                )
            });
        match made {
            Ok(()) => Some(Self { path }),
            Err(e) => {
                eprintln!("no CPU-share runs: cannot set a CFS quota under {CGROUP_ROOT} ({e})");
                None
            }
        }
    }

    /// `program args…` run as a shell that first moves itself into the cgroup, then `exec`s: the
    /// process is inside from its first instruction, and its pid is the subject's.
    pub fn wrap(&self, program: &str, args: &[String]) -> (String, Vec<String>) {
        let procs = self.path.join("cgroup.procs");
        let mut wrapped = vec![
            "-c".to_owned(),
            format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display()),
            program.to_owned(),
        ];
        wrapped.extend(args.iter().cloned());
        ("/bin/sh".to_owned(), wrapped)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // A cgroup is removed with rmdir once empty; its processes were killed with their
        // Function, which may take a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// What one subject measured at one memory size (medians of `RUNS` fresh processes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Share {
    pub memory_mb: u32,
    /// Process start → first /next.
    pub init_ms: f64,
    /// Process start → the answer to its first message (queued before it polled).
    pub init_first_ms: f64,
    /// A second message, warm.
    pub warm_ms: f64,
    /// A batch of ten, warm.
    pub batch_ms: f64,
    /// The process's CPU from start to the end of the batch.
    pub cpu_ms: f64,
}

impl Share {
    /// The first message alone: what it took after init.
    pub fn first_ms(&self) -> f64 {
        self.init_first_ms - self.init_ms
    }

    /// Billed GB-seconds for 1,000 backups as batches of ten, warm: each invocation's duration
    /// rounded up to the millisecond, times the memory size.
    pub fn gb_s_per_1000(&self) -> f64 {
        self.batch_ms.ceil() / 1000.0 * f64::from(self.memory_mb) / 1024.0 * 100.0
    }
}

/// Runs `subject` at each memory size; `None` where cgroups cannot be written.
pub async fn shares(s: &Subject, aws: &Aws, sim: &Sim, base: usize) -> Option<Vec<Share>> {
    sim.admin("config", json!({"latencyMs": PORTAL_MS})).await;
    let mut out = Vec::new();
    for (m, memory_mb) in MEMORY_MB.into_iter().enumerate() {
        let cgroup = Cgroup::create(
            &format!("portal-backup-bench-{}-{memory_mb}", std::process::id()),
            memory_mb,
        )?;
        let mut runs = Vec::new();
        for r in 0..RUNS {
            let at = base + (m * RUNS + r) * 20;
            let events = batches(sim, 2, 1, at).await;
            let ten = batches(sim, 1, 10, at + 5).await;
            let started = Instant::now();
            let f: Function = s
                .start_in(
                    aws,
                    sim,
                    Some(&|p: &str, a: &[String]| cgroup.wrap(p, a)),
                    memory_mb,
                )
                .await;
            // Queued before the process polls: it gets it on its first /next.
            timed(&f, &events[0]).await;
            let init_first_ms = started.elapsed().as_secs_f64() * 1000.0;
            let init_ms = f.first_poll().map_or(f64::NAN, |p| {
                p.duration_since(started).as_secs_f64() * 1000.0
            });
            let warm_ms = timed(&f, &events[1]).await;
            let batch_ms = timed(&f, &ten[0]).await;
            let (user, sys, _) = usage(f.pid().unwrap_or(0));
            runs.push(Share {
                memory_mb,
                init_ms,
                init_first_ms,
                warm_ms,
                batch_ms,
                cpu_ms: (user + sys) * 1000.0,
            });
            drop(f);
        }
        let med = |g: fn(&Share) -> f64| median(runs.iter().map(g).collect());
        out.push(Share {
            memory_mb,
            init_ms: med(|s| s.init_ms),
            init_first_ms: med(|s| s.init_first_ms),
            warm_ms: med(|s| s.warm_ms),
            batch_ms: med(|s| s.batch_ms),
            cpu_ms: med(|s| s.cpu_ms),
        });
    }
    sim.admin("config", json!({"latencyMs": 0})).await;
    Some(out)
}
