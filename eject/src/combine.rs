//! Portal's eject arithmetic: two halves at Birkhoff x values `x_c` and `x_s` (rank 0) give the
//! private key by Lagrange interpolation at 0, modulo the curve order `n`:
//! `λ_c = x_s / (x_s − x_c)`, `λ_s = x_c / (x_c − x_s)`, `d = λ_c·s_c + λ_s·s_s`; the key is
//! kept only when `d·G` is the wallet's public key.
//!
//! One half is checked against public values alone by `portal_shares::check::partial_checks`.

use thiserror::Error;
use zeroize::Zeroizing;

use portal_shares::check::{CheckError, lambdas, nonzero, point};
use portal_shares::curve::{Affine, Curve, Group};
use portal_shares::ed25519::Ed25519;
use portal_shares::secp256k1::Secp256k1;
use portal_shares::share::{Half, Role};

/// A proven private key.
pub struct Ejected {
    /// The wallet's curve.
    pub curve: Curve,
    /// The key's bytes as Portal's eject writes them (SECP256K1 big-endian, ED25519 the scalar
    /// little-endian); wiped when dropped.
    pub key: Zeroizing<[u8; 32]>,
    /// The public key: SECP256K1 `x ‖ y` (64 bytes), ED25519 the compressed point (32 bytes).
    pub public: Vec<u8>,
}

/// Why two halves were not combined. One line; never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CombineError {
    /// A half's values are unusable, or it failed its checks against public values.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A half was passed in the other's place.
    #[error("a {given} was given where the {expected} belongs")]
    WrongRole {
        /// What was given.
        given: Role,
        /// What belongs there.
        expected: Role,
    },
    /// The halves name different clients.
    #[error("the two halves name different clients (clientId)")]
    ClientMismatch,
    /// The halves name different wallets.
    #[error("the two halves name different wallet public keys (pubkey; x, y)")]
    PubkeyMismatch,
    /// The halves disagree on a Birkhoff x.
    #[error("the two halves disagree on the {0}'s Birkhoff x (bks.{0}.x; {0}Bk)")]
    BirkhoffMismatch(&'static str),
    /// The halves disagree on a partial public key.
    #[error("the two halves disagree on the {0}'s partial public key")]
    PartialDisagree(&'static str),
    /// `d·G` is not the wallet's public key.
    #[error("the combined key does not give the wallet's public key (d·G ≠ pubkey): refused")]
    KeyMismatch,
    /// `d` is zero.
    #[error("the combined key is zero: refused")]
    ZeroKey,
}

/// Combines the client half and the custodian half on `curve` and proves the key: `d·G` must
/// be the wallet's public key, else nothing is returned.
pub fn combine(curve: Curve, client: &Half, custodian: &Half) -> Result<Ejected, CombineError> {
    agree(curve, client, custodian)?;
    match curve {
        Curve::Secp256k1 => combine_in::<Secp256k1>(client, custodian),
        Curve::Ed25519 => combine_in::<Ed25519>(client, custodian),
    }
}

fn agree(curve: Curve, client: &Half, custodian: &Half) -> Result<(), CombineError> {
    for (half, expected) in [(client, Role::Client), (custodian, Role::Custodian)] {
        if half.role != expected {
            return Err(CombineError::WrongRole {
                given: half.role,
                expected,
            });
        }
        if let Some(named) = half.curve.filter(|&c| c != curve) {
            return Err(CheckError::CurveMismatch {
                role: half.role,
                named,
                asked: curve,
            }
            .into());
        }
    }
    if client.client_id != custodian.client_id {
        return Err(CombineError::ClientMismatch);
    }
    if client.pubkey != custodian.pubkey {
        return Err(CombineError::PubkeyMismatch);
    }
    if client.bks.client != custodian.bks.client {
        return Err(CombineError::BirkhoffMismatch("client"));
    }
    if client.bks.server != custodian.bks.server {
        return Err(CombineError::BirkhoffMismatch("server"));
    }
    let differ =
        |a: Option<Affine>, b: Option<Affine>| matches!((a, b), (Some(a), Some(b)) if a != b);
    if differ(client.partials.client, custodian.partials.client) {
        return Err(CombineError::PartialDisagree("client"));
    }
    if differ(client.partials.server, custodian.partials.server) {
        return Err(CombineError::PartialDisagree("server"));
    }
    Ok(())
}

fn combine_in<G: Group>(client: &Half, custodian: &Half) -> Result<Ejected, CombineError> {
    let pubkey = point::<G>(client, &client.pubkey, client.role.pubkey_field())?;
    let (l_c, l_s) = lambdas::<G>(client)?;
    let s_c = nonzero::<G>(client, &client.scalar, "share")?;
    let s_s = nonzero::<G>(custodian, &custodian.scalar, "share")?;
    let t_c = Zeroizing::new(G::mul(&l_c, &s_c));
    let t_s = Zeroizing::new(G::mul(&l_s, &s_s));
    let d = Zeroizing::new(G::add(&t_c, &t_s));
    if G::is_zero(&d) {
        return Err(CombineError::ZeroKey);
    }
    if G::mul_base(&d) != pubkey {
        return Err(CombineError::KeyMismatch);
    }
    Ok(Ejected {
        curve: G::CURVE,
        key: G::key_bytes(&d),
        public: G::public_bytes(&pubkey),
    })
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
