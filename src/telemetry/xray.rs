//! AWS X-Ray subsegments from the function's spans, sent to the X-Ray daemon Lambda runs beside a
//! function with active tracing (UDP, `AWS_XRAY_DAEMON_ADDRESS`).
//!
//! Exported: each SQS message (`message`), each backup step (`step`), each Portal call
//! (`portal`, and `portal_slot`: the wait for the stack's Portal budget) and each AWS SDK
//! operation (its `rpc.service` / `rpc.method` span). They nest as the spans do, under the
//! function's own segment (`Parent` of the invocation's trace header, which lambda_runtime's
//! request span carries). Only an allow-list of fields becomes an annotation (names, ids,
//! statuses), so no span can carry a value a caller sent: never a key, share or URL.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// The daemon's datagram header.
const HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// The fields that may become annotations (X-Ray keys: letters, digits and underscores).
const ANNOTATED: &[(&str, &str)] = &[
    ("step", "step"),
    ("call", "call"),
    ("status", "status"),
    ("message_id", "message_id"),
    ("client_id", "client_id"),
    ("rpc.service", "service"),
    ("rpc.method", "operation"),
];

/// lambda_runtime's span of each invocation, which carries the trace header.
const INVOCATION_SPAN: &str = "Lambda runtime invoke";

/// The invocation's trace, from `Root=…;Parent=…;Sampled=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trace {
    root: String,
    /// The function's segment: the parent of top-level subsegments.
    parent: String,
}

impl Trace {
    /// The trace of a header that asks for sampling (`Sampled=1`); `None` otherwise.
    fn parse(header: &str) -> Option<Trace> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = false;
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) => root = Some(v.to_owned()),
                Some(("Parent", v)) => parent = Some(v.to_owned()),
                Some(("Sampled", v)) => sampled = v == "1",
                _ => {}
            }
        }
        sampled.then_some(Trace {
            root: root?,
            parent: parent?,
        })
    }
}

/// What is kept of an exported span until it closes.
#[derive(Debug)]
struct Open {
    trace: Arc<Trace>,
    id: String,
    parent: String,
    name: String,
    start: f64,
    annotations: Map<String, Value>,
}

/// The invocation's trace, kept on lambda_runtime's span.
struct TraceOf(Arc<Trace>);

/// The layer: one UDP socket, the daemon's address.
#[derive(Debug)]
pub struct XrayLayer {
    socket: UdpSocket,
    daemon: SocketAddr,
}

impl XrayLayer {
    /// Sends to `daemon`, from a socket of its own.
    pub fn new(daemon: SocketAddr) -> std::io::Result<Self> {
        let bind: SocketAddr = if daemon.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(bind)?;
        // A full buffer drops a subsegment rather than stall an invocation.
        socket.set_nonblocking(true)?;
        Ok(Self { socket, daemon })
    }

    /// The spans this layer looks at: lambda_runtime's invocation span, this crate's spans and
    /// the AWS SDKs' operation spans (at `debug`); never an event.
    pub fn filter<S>() -> impl Filter<S> {
        let targets = Targets::new()
            .with_target("portal_backup", Level::INFO)
            .with_target("lambda_runtime::layers::trace", Level::INFO)
            .with_target("aws_sdk_kms", Level::DEBUG)
            .with_target("aws_sdk_dynamodb", Level::DEBUG)
            .with_target("aws_sdk_sqs", Level::DEBUG)
            .with_target("aws_sdk_secretsmanager", Level::DEBUG)
            .with_target("aws_sdk_eventbridge", Level::DEBUG);
        targets.and(filter_fn(|meta| meta.is_span()))
    }

    fn send(&self, doc: &Value) {
        let datagram = format!("{HEADER}{doc}");
        // Tracing never fails an invocation: a lost subsegment is only a gap in the trace.
        let _ = self.socket.send_to(datagram.as_bytes(), self.daemon);
    }
}

/// The daemon's UDP address from `AWS_XRAY_DAEMON_ADDRESS` (`host:port`, or `udp:host:port
/// tcp:host:port`).
pub fn daemon_address(value: &str) -> Option<SocketAddr> {
    let udp = value
        .split_whitespace()
        .find_map(|p| p.strip_prefix("udp:"))
        .unwrap_or(value.trim());
    udp.parse().ok()
}

/// Collects the allow-listed fields.
struct Annotations<'a>(&'a mut Map<String, Value>, Option<&'a mut Option<String>>);

impl Visit for Annotations<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "xrayTraceId" {
            if let Some(header) = self.1.as_deref_mut() {
                *header = Some(value.to_owned());
            }
            return;
        }
        if let Some((_, key)) = ANNOTATED.iter().find(|(name, _)| *name == field.name()) {
            self.0.insert((*key).to_owned(), json!(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some((_, key)) = ANNOTATED.iter().find(|(name, _)| *name == field.name()) {
            self.0.insert((*key).to_owned(), json!(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%` and `?` fields arrive here: only allow-listed ones, and as their text.
        if ANNOTATED.iter().any(|(name, _)| *name == field.name()) || field.name() == "xrayTraceId"
        {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A new subsegment id: 16 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let mut annotations = Map::new();
        if meta.name() == INVOCATION_SPAN {
            let mut header = None;
            attrs.record(&mut Annotations(&mut annotations, Some(&mut header)));
            if let Some(trace) = header.as_deref().and_then(Trace::parse) {
                span.extensions_mut().insert(TraceOf(Arc::new(trace)));
            }
            return;
        }
        // The nearest exported ancestor is the parent; the invocation's trace is the root.
        let mut parent = None;
        let mut trace = None;
        for ancestor in span.scope().skip(1) {
            let ext = ancestor.extensions();
            if let Some(open) = ext.get::<Open>() {
                parent.get_or_insert_with(|| open.id.clone());
                trace = Some(open.trace.clone());
                break;
            }
            if let Some(TraceOf(t)) = ext.get::<TraceOf>() {
                trace = Some(t.clone());
                break;
            }
        }
        let Some(trace) = trace else { return };
        attrs.record(&mut Annotations(&mut annotations, None));
        let name = match (meta.name(), annotations.get("service")) {
            (_, Some(Value::String(service))) => service.clone(),
            ("portal", _) => "Portal".to_owned(),
            ("portal_slot", _) => "Portal slot".to_owned(),
            (name, _) => name.to_owned(),
        };
        let open = Open {
            parent: parent.unwrap_or_else(|| trace.parent.clone()),
            trace,
            id: new_id(),
            name,
            start: now(),
            annotations,
        };
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(open) = ext.get_mut::<Open>() {
            values.record(&mut Annotations(&mut open.annotations, None));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        self.send(&subsegment(open, now()));
    }
}

/// The subsegment document of a closed span.
fn subsegment(open: Open, end: f64) -> Value {
    let mut doc = json!({
        "name": open.name,
        "id": open.id,
        "trace_id": open.trace.root,
        "parent_id": open.parent,
        "type": "subsegment",
        "start_time": open.start,
        "end_time": end,
    });
    if let Some(Value::String(operation)) = open.annotations.get("operation") {
        doc["namespace"] = json!("aws");
        doc["aws"] = json!({ "operation": operation });
    }
    if open.name == "Portal" {
        doc["namespace"] = json!("remote");
        if let Some(status) = open.annotations.get("status").and_then(Value::as_u64) {
            doc["http"] = json!({"response": {"status": status}});
            match status {
                429 => {
                    doc["throttle"] = json!(true);
                    doc["error"] = json!(true);
                }
                400..=499 => doc["error"] = json!(true),
                s if s >= 500 => doc["fault"] = json!(true),
                _ => {}
            }
        }
    }
    if !open.annotations.is_empty() {
        doc["annotations"] = Value::Object(open.annotations);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_trace_header_is_read_and_an_unsampled_one_is_not() {
        let t = Trace::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(t.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(t.parent, "53995c3f42cd8ad8");
        assert_eq!(
            Trace::parse(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            ),
            None
        );
        assert_eq!(
            Trace::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
            None
        );
    }

    #[test]
    fn the_daemon_address_is_read_in_either_form() {
        assert_eq!(
            daemon_address("169.254.79.129:2000"),
            Some(([169, 254, 79, 129], 2000).into())
        );
        assert_eq!(
            daemon_address("tcp:127.0.0.1:2000 udp:127.0.0.2:2001"),
            Some(([127, 0, 0, 2], 2001).into())
        );
        assert_eq!(daemon_address("nowhere"), None);
    }

    #[test]
    fn a_portal_call_is_a_remote_subsegment_with_its_status() {
        let open = Open {
            trace: Arc::new(Trace {
                root: "1-a-b".into(),
                parent: "p".into(),
            }),
            id: new_id(),
            parent: "p".into(),
            name: "Portal".into(),
            start: 1.0,
            annotations: [
                ("call".to_owned(), json!("POST /v1/backup")),
                ("status".to_owned(), json!(429)),
            ]
            .into_iter()
            .collect(),
        };
        let doc = subsegment(open, 2.0);
        assert_eq!(doc["namespace"], "remote");
        assert_eq!(doc["http"]["response"]["status"], 429);
        assert_eq!(
            (doc["throttle"].as_bool(), doc["error"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(doc["id"].as_str().unwrap().len(), 16);
    }
}
