//! Where the envelope's KMS calls run: a pool of threads, built once per process, that grows
//! with the calls in flight up to a size set by the function's memory.
//!
//! aws-esdk is synchronous under its async API: each KMS call it makes blocks the calling thread
//! for the round trip (`block_in_place` + `Handle::block_on`). On the function's one-thread
//! runtime that would stop every other message, so each envelope call is sent to a thread of
//! this pool (`kms-0`, `kms-1`, …; how many: [`threads_for`]), which drives it with the KMS
//! runtime entered: `block_in_place` then runs inline (the thread is no runtime's worker) and
//! the runtime's one worker, `esdk`, drives the KMS connections. No connection crosses runtimes.
//!
//! Why a pool bounded by the CPU share, not a thread per call in flight (`spawn_blocking`): at
//! Lambda's CPU share the calls are bound by CPU, not by their number in flight, and twenty
//! runnable threads on a fraction of a CPU cost more than they overlap (measured, and the
//! choice of the size: docs/choices.md). It starts with one thread and starts another only when
//! a call finds none free, so a process whose calls do not overlap keeps one.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Threads of the pool for a function of `memory_mb` (Lambda's `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`):
/// one per 64 MB, 4 to 32. A KMS call takes about 0.4 ms of CPU here and a round trip of several
/// ms in AWS; at Lambda's CPU share of `memory_mb` the pool keeps that share busy with about
/// `1 + round trip ÷ (0.4 ms ÷ share)` calls in flight: about 4.6 at 256 MB and 15.5 at
/// 1,024 MB for a 10 ms round trip (docs/choices.md). More threads than that only take turns on
/// the CPU.
pub fn threads_for(memory_mb: Option<u32>) -> usize {
    // Not in Lambda (a local run): a whole CPU.
    let memory_mb = memory_mb.unwrap_or(1769);
    (memory_mb / 64).clamp(4, 32) as usize
}

type Job = Box<dyn FnOnce() + Send>;

/// The process's pool and the runtime its calls are driven under.
struct Pool {
    /// Threads at most.
    max: usize,
    runtime: tokio::runtime::Runtime,
    jobs: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    /// Threads started so far.
    started: AtomicUsize,
    /// Threads not running a call, less the calls queued for one (negative when calls queue).
    free: Arc<AtomicIsize>,
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
            .field("max", &self.pool.max)
            .field("started", &self.started())
            .finish()
    }
}

impl KmsThreads {
    /// The process's pool, sized for the function's memory, started on first use (at cold
    /// start: the envelope is built there) with one thread.
    pub fn get() -> std::io::Result<Self> {
        let start = || {
            let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .ok()
                .and_then(|m| m.parse().ok());
            Pool::start(threads_for(memory_mb))
        };
        match POOL.get_or_init(start) {
            Ok(pool) => Ok(Self { pool }),
            Err(why) => Err(std::io::Error::other(why.clone())),
        }
    }

    /// Threads at most.
    pub fn max_threads(&self) -> usize {
        self.pool.max
    }

    /// Threads started so far.
    pub fn started(&self) -> usize {
        self.pool.started.load(Ordering::Relaxed)
    }

    /// Runs `call` on a thread of the pool, with the KMS runtime entered; waits without blocking
    /// the caller's runtime. A call whose caller stops waiting still runs to its end.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, CallStopped> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let handle = self.pool.runtime.handle().clone();
        let free = Arc::clone(&self.pool.free);
        let job: Job = Box::new(move || {
            let answer = {
                let _entered = handle.enter();
                futures::executor::block_on(call)
            };
            // Free again before the caller hears, so that its next call finds this thread.
            free.fetch_add(1, Ordering::AcqRel);
            let _ = done.send(answer);
        });
        self.pool.take_or_grow();
        self.pool.jobs.send(job).map_err(|_| CallStopped)?;
        answer.await.map_err(|_| CallStopped)
    }
}

impl Pool {
    /// The runtime and the first thread; the others start as calls find no thread waiting.
    fn start(max: usize) -> Result<Pool, String> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        // One worker: it only drives the connections, and Lambda gives a fraction of a CPU.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("esdk")
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the runtime for KMS calls: {e}"))?;
        let pool = Pool {
            max: max.max(1),
            runtime,
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            started: AtomicUsize::new(1),
            free: Arc::new(AtomicIsize::new(0)),
        };
        match pool.spawn(0) {
            Ok(()) => Ok(pool),
            Err(e) => {
                // A runtime dropped in an async context panics; this one only stops.
                let Pool { runtime, .. } = pool;
                runtime.shutdown_background();
                Err(format!("could not start a thread for KMS calls: {e}"))
            }
        }
    }

    /// Counts a call against a free thread, or starts another thread for it when none is free
    /// and the pool is below its size (else the call queues). Never more than `max` in all. A thread that cannot start leaves the call to
    /// the threads there are (there is always one).
    fn take_or_grow(&self) {
        if self.free.fetch_sub(1, Ordering::AcqRel) > 0 {
            return;
        }
        let mut n = self.started.load(Ordering::Relaxed);
        while n < self.max {
            match self
                .started
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if self.spawn(n).is_err() {
                        self.started.fetch_sub(1, Ordering::AcqRel);
                    }
                    return;
                }
                // Another caller started one meanwhile: try for the next.
                Err(now) => n = now,
            }
        }
    }

    /// Starts thread `i`, counted free from now.
    fn spawn(&self, i: usize) -> std::io::Result<()> {
        let (queue, free) = (Arc::clone(&self.queue), Arc::clone(&self.free));
        self.free.fetch_add(1, Ordering::AcqRel);
        let started = std::thread::Builder::new()
            .name(format!("kms-{i}"))
            .spawn(move || serve(&queue, &free));
        if started.is_err() {
            self.free.fetch_sub(1, Ordering::AcqRel);
        }
        started.map(drop)
    }
}

/// Takes calls one after another (each frees its thread's count when it ends).
fn serve(queue: &Mutex<Receiver<Job>>, free: &AtomicIsize) {
    loop {
        // The lock is held only while waiting for a call, never while one runs.
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A call that panics drops its answer (the caller gets `CallStopped`) before it could
        // free its count; the thread frees it here and stays.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            free.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A pool of its own, so that no other test's calls change its thread count.
    fn pool_of(max: usize) -> KmsThreads {
        let pool = Pool::start(max).expect("the pool starts");
        KmsThreads {
            pool: Box::leak(Box::new(pool)),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn more_calls_than_threads_all_complete_while_the_caller_runs() {
        let pool = pool_of(4);
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Each call blocks its thread for 20 ms, as a KMS round trip blocks it under aws-esdk.
        let calls = (0..12).map(|i| {
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
        // The pool grew to its size and no further; the calls queued for its four threads.
        assert_eq!(pool.started(), 4);
        // Three rounds of 20 ms: the caller's timer ticked meanwhile, its runtime never blocked.
        assert!(ticks.load(Ordering::Relaxed) >= 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn calls_one_at_a_time_keep_one_thread() {
        let pool = pool_of(8);
        for i in 0..20 {
            assert_eq!(pool.run(async move { i }).await.expect("the call runs"), i);
        }
        assert_eq!(pool.started(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_that_panics_is_reported_and_the_pool_goes_on() {
        let pool = pool_of(2);
        let panicked = pool.run(async { panic!("a bug in a call") }).await;
        assert!(matches!(panicked, Err(CallStopped)));
        for _ in 0..4 {
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
    async fn calls_run_under_the_kms_runtime_of_the_process() {
        let pool = KmsThreads::get().expect("the pool starts");
        assert!(pool.max_threads() >= 4);
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
