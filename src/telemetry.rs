//! Structured JSON logs for CloudWatch.

use tracing_subscriber::EnvFilter;

/// Installs a JSON subscriber on stdout; level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`,
/// else `info` for this crate and the runtime (its span carries the request id), `warn` for
/// the rest.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| {
                format!(
                    "warn,portal_backup={},lambda_runtime={}",
                    l.to_lowercase(),
                    l.to_lowercase()
                )
            })
        })
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,portal_backup=info,lambda_runtime=info"));
    // Spans carry the correlation ids: lambda_runtime's (requestId, xrayTraceId) and ours
    // (message_id, client_id); the whole list is printed with each line.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .with_writer(std::io::stdout)
        .try_init();
}
