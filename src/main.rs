//! The Lambda bootstrap: tracing, configuration and clients once, then the runtime loop.

// The handler future nests the workflow's futures deeply; rustc's default (128) is too low.
#![recursion_limit = "256"]

use lambda_runtime::{Error, service_fn};

// One thread: Lambda gives a function at most one vCPU below 1,769 MB, so worker threads would
// only add wake-ups between them (about a fifth of the CPU per message in `scripts/bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    portal_backup::telemetry::init();
    let function = portal_backup::app::from_env().await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event| {
        portal_backup::entry::handle(function, event)
    }))
    .await
}
