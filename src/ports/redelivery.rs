//! Port: sending an SQS message back to its queue to wait, when Portal's budget (the stack's or
//! Portal's own 429) has no room for it now.
//!
//! Object-safe (a boxed future), like the backup queue: only the backup function has one.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use crate::ports::backup_queue::QueueError;

/// A received message to make visible again after `wait`.
#[derive(Debug, Clone)]
pub struct Deferral {
    /// The receipt handle of this receive.
    pub receipt_handle: String,
    /// How long until it should be received again.
    pub wait: Duration,
}

/// A future the queue answers.
pub type Redelivered<'a> = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send + 'a>>;

/// The queue a message came from.
pub trait Redelivery: Send + Sync + Debug {
    /// Makes each message visible again after its wait (SQS caps a visibility timeout at 12
    /// hours). A message whose change fails reappears after the queue's own timeout instead.
    fn defer<'a>(&'a self, messages: &'a [Deferral]) -> Redelivered<'a>;

    /// Sends `body` again as a new message, delivered after `delay` (SQS caps it at 15 minutes):
    /// the copy starts its receive count afresh, so waiting never moves a message to the DLQ.
    fn resend<'a>(&'a self, body: &'a str, delay: Duration) -> Redelivered<'a>;
}
