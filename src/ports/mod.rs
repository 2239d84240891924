//! The ports: the small traits the workflow runs over. Their errors are backend-neutral (what
//! failed, and whether trying again can help); adapters map their backend's errors onto them.

pub mod backup_queue;
pub mod catalogue;
pub mod checkpoints;
pub mod custody;
pub mod custody_drill;
pub mod drill;
pub mod eject;
pub mod envelope;
pub mod outcome_events;
pub mod portal;
pub mod rate_limit;
pub mod redelivery;
pub mod rotation;
pub mod store;
pub mod webhook_secret;
