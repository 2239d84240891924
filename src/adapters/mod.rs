//! Adapters: the real implementations of the ports, each owning its client, timeouts and error
//! mapping; and `memory`, the in-memory fakes beside them.

pub(crate) mod aws_error;
pub mod custodian_key;
pub mod dynamodb;
pub mod esdk;
pub mod eventbridge;
pub mod kms;
pub mod kms_threads;
#[cfg(test)]
pub(crate) mod memory;
#[cfg(test)]
pub(crate) mod memory_eject;
pub mod portal_budget;
pub mod portal_eject;
pub mod portal_http;
pub mod secrets_manager;
pub mod sqs;
