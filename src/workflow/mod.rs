//! The workflow: plain async Rust over the ports, no AWS, HTTP or Lambda types.
//!
//! - `backup`: the seed's steps, one function each, under a checkpoint lease.
//! - `restore`: list, verify and restore stored backups.
//! - `rotation`: re-wrap every stored data key under the current KMS key.
//! - `custody`: Portal's custodian webhooks (self-managed backups).
//! - `drill`: restore drills that prove every stored backup, cycle after cycle.
//! - `eject`: Portal-managed eject, both halves answered sealed.
//! - `retry`: retries and the invocation's deadline.

pub mod backup;
pub mod custody;
pub mod drill;
pub mod eject;
pub mod error;
pub mod restore;
pub mod retry;
pub mod rotation;
