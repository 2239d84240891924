//! Dev-only tools for portal-backup: never part of the Lambda package.
//!
//! - [`sim`]: the Portal API simulator (Enclave MPC API, client API, custodian webhooks).
//! - [`client`]: one typed client of the simulator, used by its own tests and the Lambda's.
//! - [`runtime_api`]: a local Lambda Runtime API that drives the built bootstrap as Lambda does.
//! - [`poller`]: a local SQS event source mapping (receive, invoke, delete, redrive).
//! - [`apigw`]: a local API Gateway (HTTP API 2.0 events) in front of a function process.

pub mod apigw;
pub mod client;
pub mod keepalive;
pub mod poller;
pub mod runtime_api;
pub mod sim;
