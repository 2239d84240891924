//! Break-glass eject for Portal MPC wallets: the client backup share and the custodian backup
//! share, combined as Portal's eject combines them, give the wallet's private key, which is kept
//! only when it is proven against the wallet's public key. Never linked into the Lambda.
//!
//! - [`share`]: both halves' formats, read into one [`share::Half`];
//! - [`combine`]: the arithmetic and its proof; [`combine::partial_checks`] checks one half
//!   against public values alone;
//! - [`output`]: the key's formats, the wallet's address, the key file;
//! - [`input`]: what a share file holds; [`run`]: one eject, start to end.

pub mod combine;
pub mod curve;
pub mod decimal;
mod doc;
mod ed25519;
mod fields;
pub mod input;
pub mod output;
mod role;
pub mod run;
mod secp256k1;
pub mod share;
mod share_error;

#[cfg(test)]
mod testkit;
