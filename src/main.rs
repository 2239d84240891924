//! The Lambda bootstrap: tracing, configuration and clients once, then the runtime loop.

use lambda_runtime::{Error, service_fn};
use portal_backup::app::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    portal_backup::telemetry::init();
    let app = App::from_env().await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| app.handle_sqs(event))).await
}
