//! portal-backup: backs up Portal MPC wallets from AWS Lambda.
//!
//! The layers, each a folder (see `docs/layout.md`):
//! - [`entry`]: decodes each trigger (SQS, API Gateway, direct invoke, Portal's webhooks) and
//!   encodes its answer; knows Lambda, nothing of KMS or Portal.
//! - [`workflow`]: the seed's steps as named functions (`backup` → `seal` → `store` → `prove` →
//!   `mark`), restore, rotation and custody, over the traits of [`ports`].
//! - [`adapters`]: the real implementations of the ports (Portal over reqwest, KMS, DynamoDB,
//!   Secrets Manager), and in-memory fakes beside them for unit tests.
//! - [`domain`]: values and rules with no I/O: model, secrets, the ciphertext format, request
//!   validation, errors.
//!
//! [`app`] builds configuration and clients once per process; `main.rs` only wires.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod entry;
pub mod ports;
pub mod telemetry;
pub mod workflow;
