//! Where the envelope's KMS calls run: a fixed pool of threads, built once per process.
//!
//! aws-esdk is synchronous under its async API: each KMS call it makes blocks the calling thread
//! for the round trip (`block_in_place` + `Handle::block_on`). On the function's one-thread
//! runtime that would stop every other message, so each envelope call is sent to a thread of
//! this pool (`kms-0`, `kms-1`, …; how many: [`threads_for`]), which drives it with the KMS
//! runtime entered: `block_in_place` then runs inline (the thread is no runtime's worker) and
//! the runtime's one worker, `esdk`, drives the KMS connections. No connection crosses runtimes.
//!
//! Why a pool sized for the CPU share, not a thread per call in flight (`spawn_blocking`): at
//! Lambda's CPU share the calls are bound by CPU, not by their number in flight, and twenty
//! runnable threads on a fraction of a CPU cost more than they overlap (measured: docs/performance.md, "Where the KMS
//! calls run"; the choice of the count: docs/choices.md).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads of the pool for a function of `memory_mb` (Lambda's `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`):
/// one per 64 MB, 4 to 32. A KMS call takes about 0.4 ms of CPU here and a round trip of several
/// ms in AWS; at Lambda's CPU share of `memory_mb` the pool keeps that share busy with about
/// `1 + round trip ÷ (0.4 ms ÷ share)` calls in flight: 5 at 256 MB and 16 at 1,024 MB for a
/// 10 ms round trip (docs/choices.md). More threads than that only take turns on the CPU.
pub fn threads_for(memory_mb: Option<u32>) -> usize {
    // Not in Lambda (a local run): a whole CPU.
    let memory_mb = memory_mb.unwrap_or(1769);
    (memory_mb / 64).clamp(4, 32) as usize
}

type Job = Box<dyn FnOnce() + Send>;

/// The process's pool and the runtime its calls are driven under.
struct Pool {
    threads: usize,
    runtime: tokio::runtime::Runtime,
    jobs: Sender<Job>,
}

/// Built once per process (`get_or_init` runs one builder; other callers wait for it), or why it
/// could not be.
static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();

/// An envelope call could not run: the pool is gone (never expected), or the call panicked.
#[derive(Debug, thiserror::Error)]
#[error("the KMS call did not complete: its thread stopped")]
pub struct CallStopped;

/// A handle on the process's pool. Cheap to copy.
#[derive(Clone, Copy)]
pub struct KmsThreads {
    pool: &'static Pool,
}

impl std::fmt::Debug for KmsThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsThreads")
            .field("threads", &self.pool.threads)
            .finish()
    }
}

impl KmsThreads {
    /// The process's pool, started on first use (at cold start: the envelope is built there),
    /// sized for the function's memory.
    pub fn get() -> std::io::Result<Self> {
        match POOL.get_or_init(start) {
            Ok(pool) => Ok(Self { pool }),
            Err(why) => Err(std::io::Error::other(why.clone())),
        }
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.pool.threads
    }

    /// Runs `call` on a thread of the pool, with the KMS runtime entered; waits without blocking
    /// the caller's runtime. A call whose caller stops waiting still runs to its end.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, CallStopped> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let handle = self.pool.runtime.handle().clone();
        let job: Job = Box::new(move || {
            let _entered = handle.enter();
            let _ = done.send(futures::executor::block_on(call));
        });
        self.pool.jobs.send(job).map_err(|_| CallStopped)?;
        answer.await.map_err(|_| CallStopped)
    }
}

/// Starts the threads and the runtime; each thread takes the next job from the shared queue.
fn start() -> Result<Pool, String> {
    let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|m| m.parse().ok());
    let threads = threads_for(memory_mb);
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..threads {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("kms-{i}"))
            .spawn(move || serve(&queue))
            // The threads started so far end when `jobs` is dropped with this error.
            .map_err(|e| format!("could not start thread kms-{i} for KMS calls: {e}"))?;
    }
    // One worker: it only drives the connections, and Lambda gives a fraction of a CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("esdk")
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the runtime for KMS calls: {e}"))?;
    Ok(Pool {
        threads,
        runtime,
        jobs,
    })
}

fn serve(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while running one.
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A call that panics drops its answer (the caller gets `CallStopped`); the thread stays.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn more_calls_than_threads_all_complete_while_the_caller_runs() {
        let pool = KmsThreads::get().expect("the pool starts");
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        // Each call blocks its thread for 20 ms, as a KMS round trip blocks it under aws-esdk.
        let calls = (0..3 * pool.threads()).map(|i| {
            pool.run(async move {
                std::thread::sleep(Duration::from_millis(20));
                let name = std::thread::current().name().unwrap_or_default().to_owned();
                (i, name)
            })
        });
        let answers = futures::future::join_all(calls).await;
        ticker.abort();
        for (i, answer) in answers.into_iter().enumerate() {
            let (j, thread) = answer.expect("every call completes");
            assert_eq!(i, j);
            assert!(thread.starts_with("kms-"), "ran on {thread}");
        }
        // Three rounds of 20 ms: the caller's timer ticked meanwhile, its runtime never blocked.
        assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_panics_is_reported_and_the_pool_goes_on() {
        let pool = KmsThreads::get().expect("the pool starts");
        let panicked = pool.run(async { panic!("a bug in a call") }).await;
        assert!(matches!(panicked, Err(CallStopped)));
        for _ in 0..2 * pool.threads() {
            assert_eq!(pool.run(async { 7 }).await.expect("the pool goes on"), 7);
        }
    }

    #[test]
    fn the_pool_follows_the_memory_size() {
        assert_eq!(threads_for(Some(128)), 4);
        assert_eq!(threads_for(Some(256)), 4);
        assert_eq!(threads_for(Some(512)), 8);
        assert_eq!(threads_for(Some(1024)), 16);
        assert_eq!(threads_for(Some(1769)), 27);
        assert_eq!(threads_for(Some(10240)), 32);
        assert_eq!(threads_for(None), 27);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn calls_run_under_the_kms_runtime() {
        let pool = KmsThreads::get().expect("the pool starts");
        let worker = pool
            .run(async {
                tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .expect("the call completes");
        assert_eq!(worker.as_deref(), Some("esdk"));
    }
}
