//! Portal MPC backup shares: the client backup share and the custodian backup share, read into
//! one [`share::Half`] whichever shape they come in, and checked against public values alone
//! ([`check::partial_checks`]): no function here combines two halves into a key (that is the
//! eject tool's, never linked into the Lambda).
//!
//! - [`share`]: both halves' formats; [`curve`], [`secp256k1`], [`ed25519`]: the groups;
//! - [`check`]: one half against its partial public keys and the wallet's public key;
//! - [`public`]: the wallet's public key and address;
//! - `split` (feature `split`): 2-of-2 splits in Portal's shapes, for the simulator and tests.

pub mod check;
pub mod curve;
pub mod decimal;
mod doc;
pub mod ed25519;
mod fields;
pub mod public;
mod role;
pub mod secp256k1;
pub mod share;
mod share_error;
#[cfg(any(test, feature = "split"))]
pub mod split;
