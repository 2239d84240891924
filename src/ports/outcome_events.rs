//! Port: where each backup's outcome is told to the producer: one event per outcome, completed
//! or failed for good (a permanent error, or the last delivery SQS makes before the DLQ).
//!
//! Object-safe (a boxed future), like the backup queue: only a deployment with a bus has one,
//! so the handler holds an optional `Arc<dyn OutcomeEvents>`.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

/// One backup's outcome, as the event's `detail` carries it: ids, mode and codes, never a share
/// or a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeEvent {
    /// `Backup Completed` or `Backup Failed` (the event's `detail-type`).
    #[serde(skip)]
    pub detail_type: &'static str,
    /// Portal client id, when the request named a valid one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The backup's idempotency key (given, or derived from the signing share pair ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Backup share pair ids (SECP256K1, ED25519), once Portal created them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_share_pair_ids: Option<[String; 2]>,
    /// `SELF_MANAGED` or `PORTAL_MANAGED`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// The error code (`INVALID_INPUT`, `PORTAL_REJECTED`, …) of a failed backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// Whether the failure was transient and this was SQS's last delivery: the message goes to
    /// the DLQ next.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub moved_to_dlq: bool,
    /// The stack that backed it up (filled in by the publisher).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stack: String,
}

/// Why an event was not published after its retries (names the bus, never the event).
#[derive(Debug, Clone, thiserror::Error)]
#[error("EventBridge PutEvents to {bus} failed: {detail}")]
pub struct PublishError {
    /// The bus.
    pub bus: String,
    /// What EventBridge said.
    pub detail: String,
}

/// A future the publisher answers.
pub type Published<'a> = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send + 'a>>;

/// Publishes outcome events.
pub trait OutcomeEvents: Send + Sync + Debug {
    /// Publishes one event (retrying what may pass on a retry).
    fn publish<'a>(&'a self, event: &'a OutcomeEvent) -> Published<'a>;
}
