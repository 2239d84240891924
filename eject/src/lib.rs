//! Break-glass eject for Portal MPC wallets: the client backup share and the custodian backup
//! share, combined as Portal's eject combines them, give the wallet's private key, which is kept
//! only when it is proven against the wallet's public key. Never linked into the Lambda.
//!
//! - `portal_shares` (a crate of its own, shared with the Lambda's drills): both halves'
//!   formats and their checks against public values;
//! - [`combine`]: the arithmetic and its proof;
//! - [`output`]: the key's formats, the wallet's address, the key file;
//! - [`input`]: what a share file holds; [`stored`]: stored halves, from a file or a table,
//!   opened with the caller's AWS credentials; [`run`]: one eject, start to end.

pub mod combine;
pub mod input;
pub mod output;
pub mod run;
pub mod stored;

pub use portal_shares::{curve, share};
