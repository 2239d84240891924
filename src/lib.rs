//! portal-backup: backs up Portal MPC wallets from AWS Lambda.
//!
//! Flow (see `backup`): `POST /v1/backup` → envelope-encrypt each client backup share (`envelope`)
//! → store it (`store`, or Portal) → read back and decrypt → mark it stored at Portal (`portal`).
//! `handler` is the Lambda entry; `app` builds the clients once per process.

pub mod app;
mod aws;
pub mod backup;
pub mod config;
pub mod entry;
pub mod envelope;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod model;
pub mod portal;
pub mod request;
pub mod restore;
pub mod retry;
pub mod rotation;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod webhook;

#[cfg(feature = "sim")]
pub mod apigw;
#[cfg(feature = "sim")]
pub mod poller;
#[cfg(feature = "sim")]
pub mod runtime_api;
#[cfg(feature = "sim")]
pub mod sim;
