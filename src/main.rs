//! The Lambda bootstrap: tracing, configuration and clients once, then the runtime loop.

// The handler future nests the workflow's futures deeply; rustc's default (128) is too low.
#![recursion_limit = "256"]

use std::process::ExitCode;

use lambda_runtime::service_fn;

// jemalloc, not glibc's malloc: about a sixth less CPU per message, at Lambda's CPU share a
// shorter batch, for a few MiB more RSS (measured: docs/choices.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// One thread: Lambda gives a function at most one vCPU below 1,769 MB, so worker threads would
// only add wake-ups between them (about a fifth of the CPU per message in `scripts/bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    portal_backup::telemetry::init();
    // A failed cold start is one structured log line and a non-zero exit (Lambda reports it as
    // Runtime.ExitError), never a Debug dump of the error.
    let function = match portal_backup::app::from_env().await {
        Ok(function) => function,
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return ExitCode::FAILURE;
        }
    };
    // Three functions, one binary: FUNCTION_ROLE chose which (see src/config.rs).
    let run = match &function {
        portal_backup::app::Function::Backup(backup)
        | portal_backup::app::Function::Operator(backup) => {
            lambda_runtime::run(service_fn(move |event| {
                portal_backup::entry::handle(backup, event)
            }))
            .await
        }
        portal_backup::app::Function::Custody(custody) => {
            lambda_runtime::run(service_fn(move |event| {
                portal_backup::entry::webhook::handle(custody, event)
            }))
            .await
        }
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the runtime loop stopped");
            ExitCode::FAILURE
        }
    }
}
