//! Port: the backup queue, where a recovered wallet's new signing shares go to be backed up
//! without waiting for anyone.
//!
//! Object-safe (a boxed future), unlike the other ports: only the operator function has a queue,
//! and only `recover` uses it, so the services hold an optional `Arc<dyn BackupQueue>` rather
//! than carry one more type parameter through every entry point.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

/// A backup request as the queue carries it: sealed shares only, never a key in the clear.
#[derive(Debug, Clone, Copy)]
pub struct QueuedBackup<'a> {
    /// Portal client id.
    pub client_id: &'a str,
    /// The backup's idempotency key (repeats of the message back up once).
    pub idempotency_key: &'a str,
    /// `sealedGenerateResponse`: the new signing shares and the API key, sealed.
    pub sealed_generate_response: &'a str,
}

/// Why a message could not be enqueued (names the queue, never the message).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the backup queue refused the message ({}): {detail}", if *.transient { "transient: retry" } else { "permanent" })]
pub struct QueueError {
    /// Whether retrying may help.
    pub transient: bool,
    /// What the queue said.
    pub detail: String,
}

/// A future the queue answers.
pub type Enqueued<'a> = Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>>;

/// Sends backup requests to the backup function's queue.
pub trait BackupQueue: Send + Sync + Debug {
    /// Sends one; answers the message id.
    fn enqueue<'a>(&'a self, backup: QueuedBackup<'a>) -> Enqueued<'a>;
}
