//! Structured JSON logs for CloudWatch, with a hard cap on what dependencies may log; and, when
//! `XRAY_TRACING=on`, X-Ray subsegments of the function's spans (`xray`).

pub mod xray;

use tracing::Level;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Dependencies that log payloads at `trace` (lambda_runtime: the raw event, with API keys and
/// signing shares; the AWS SDK: responses, with plaintext data keys; hyper and friends: bytes on
/// the wire). They are capped at `debug` whatever `RUST_LOG` asks for.
const PAYLOAD_LOGGERS: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_smithy_json",
    "aws_runtime",
    "aws_sdk_kms",
    "aws_sdk_dynamodb",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "axum",
];

/// The filter `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info` for this crate and the
/// runtime (its span carries the request id) and `warn` for the rest.
fn env_filter() -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| {
                let l = l.to_lowercase();
                format!("warn,portal_backup={l},lambda_runtime={l}")
            })
        })
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,portal_backup=info,lambda_runtime=info"))
}

/// The cap: `trace` allowed for everything but the payload loggers.
fn cap() -> Targets {
    PAYLOAD_LOGGERS
        .iter()
        .fold(Targets::new().with_default(Level::TRACE), |t, target| {
            t.with_target(*target, Level::DEBUG)
        })
}

/// The runtime's own line for a handler error: `lambda_runtime`'s catch-panic layer logs every
/// `Err` the handler returns as `error!("{error:?}")`, the `Diagnostic`'s Debug text in one
/// `message` field. The function has already logged that failure as structured fields (step,
/// kind, code), so the line is dropped. A panic is logged by the same layer with an `error`
/// field, and is kept.
fn is_runtime_echo(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "lambda_runtime::layers::panic"
        && *meta.level() == Level::ERROR
        && meta.fields().field("error").is_none()
}

/// Installs a JSON subscriber on stdout.
pub fn init() {
    // Spans carry the correlation ids: lambda_runtime's (requestId, xrayTraceId) and ours
    // (message_id, client_id); the whole list is printed with each line.
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .with_writer(std::io::stdout)
        .with_filter(
            env_filter()
                .and(cap())
                .and(filter_fn(|meta| !is_runtime_echo(meta))),
        );
    let (xray, off) = match xray_layer() {
        Ok(xray) => (xray, None),
        Err(why) => (None, Some(why)),
    };
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(xray)
        .try_init();
    if let Some(why) = off {
        tracing::warn!("X-Ray tracing is off: {why}");
    }
}

/// The X-Ray layer, when `XRAY_TRACING=on` and Lambda runs the daemon (`AWS_XRAY_DAEMON_ADDRESS`,
/// set with active tracing); off by default. An error says why it is off although asked for.
fn xray_layer<S>() -> Result<Option<impl Layer<S>>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if std::env::var("XRAY_TRACING").ok().as_deref() != Some("on") {
        return Ok(None);
    }
    let daemon = std::env::var("AWS_XRAY_DAEMON_ADDRESS")
        .ok()
        .and_then(|a| xray::daemon_address(&a))
        .ok_or("AWS_XRAY_DAEMON_ADDRESS is unset or unreadable (turn on the function's active tracing)")?;
    let layer = xray::XrayLayer::new(daemon).map_err(|e| format!("no UDP socket ({e})"))?;
    Ok(Some(layer.with_filter(xray::XrayLayer::filter())))
}
