//! Portal's eject arithmetic: two halves at Birkhoff x values `x_c` and `x_s` (rank 0) give the
//! private key by Lagrange interpolation at 0, modulo the curve order `n`:
//! `λ_c = x_s / (x_s − x_c)`, `λ_s = x_c / (x_c − x_s)`, `d = λ_c·s_c + λ_s·s_s`; the key is
//! kept only when `d·G` is the wallet's public key.
//!
//! [`partial_checks`] checks one half against public values alone, without the other half.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve, Group, PointError};
use crate::ed25519::Ed25519;
use crate::secp256k1::Secp256k1;
use crate::share::{Half, Role};

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

/// Why two halves were not combined, or a half failed its checks. One line; never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CombineError {
    /// A half was passed in the other's place.
    #[error("a {given} was given where the {expected} belongs")]
    WrongRole {
        /// What was given.
        given: Role,
        /// What belongs there.
        expected: Role,
    },
    /// A half names another curve than the one asked for.
    #[error("{role}: it is for {named}, not {asked}")]
    CurveMismatch {
        /// Which half.
        role: Role,
        /// The curve it names.
        named: Curve,
        /// The curve asked for.
        asked: Curve,
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
    /// Both halves sit at one x: the interpolation divides by zero.
    #[error(
        "both halves sit at the same Birkhoff x (bks.client.x = bks.server.x): they cannot be combined"
    )]
    EqualX,
    /// A value is not below the curve's order.
    #[error("{role}: field `{field}` is not below the order of {curve}")]
    OutOfRange {
        /// Which half.
        role: Role,
        /// The field.
        field: &'static str,
        /// The curve.
        curve: Curve,
    },
    /// A share or a Birkhoff x is zero.
    #[error("{role}: field `{field}` is zero")]
    Zero {
        /// Which half.
        role: Role,
        /// The field.
        field: &'static str,
    },
    /// A public key is not a point of the curve.
    #[error("{role}: field `{field}` is not a point of {curve} ({problem})")]
    BadPoint {
        /// Which half.
        role: Role,
        /// The field.
        field: &'static str,
        /// The curve.
        curve: Curve,
        /// What is wrong.
        problem: PointProblem,
    },
    /// `d·G` is not the wallet's public key.
    #[error("the combined key does not give the wallet's public key (d·G ≠ pubkey): refused")]
    KeyMismatch,
    /// `d` is zero.
    #[error("the combined key is zero: refused")]
    ZeroKey,
    /// A half's scalar times G is not its own partial public key.
    #[error("{role}: its share times G is not its own partial public key ({field})")]
    PartialMismatch {
        /// Which half.
        role: Role,
        /// The partial public key's field.
        field: &'static str,
    },
    /// The partial public keys do not interpolate to the wallet's public key.
    #[error("{0}: its partial public keys do not combine to the wallet's public key")]
    PartialsDoNotCombine(Role),
    /// A half carries no partial public keys (Portal's shares do; its published example not).
    #[error(
        "{0}: it carries no partial public keys to check against (partialPubkey; *PartialPubKey_x/_y)"
    )]
    PartialMissing(Role),
}

/// A [`PointError`], as an error message shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointProblem(pub PointError);

impl std::fmt::Display for PointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            PointError::OutOfField => "a coordinate is not below the field prime",
            PointError::NotOnCurve => "the coordinates are not on the curve",
        })
    }
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

/// Checks one half against public values alone: its scalar times `G` is its own partial
/// public key, and `λ_c·P_c + λ_s·P_s` is the wallet's public key.
pub fn partial_checks(curve: Curve, half: &Half) -> Result<(), CombineError> {
    if let Some(named) = half.curve.filter(|&c| c != curve) {
        return Err(CombineError::CurveMismatch {
            role: half.role,
            named,
            asked: curve,
        });
    }
    match curve {
        Curve::Secp256k1 => partial_checks_in::<Secp256k1>(half),
        Curve::Ed25519 => partial_checks_in::<Ed25519>(half),
    }
}

/// `s·G` as affine coordinates, for a big-endian scalar below the curve's order (`None` at or
/// above it): what a share's partial public key, or a key's public key, must be.
pub fn scalar_times_g(curve: Curve, scalar: &[u8; 32]) -> Option<Affine> {
    fn on<G: Group>(be: &[u8; 32]) -> Option<Affine> {
        let s = Zeroizing::new(G::scalar(be)?);
        Some(G::affine(&G::mul_base(&s)))
    }
    match curve {
        Curve::Secp256k1 => on::<Secp256k1>(scalar),
        Curve::Ed25519 => on::<Ed25519>(scalar),
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
            return Err(CombineError::CurveMismatch {
                role: half.role,
                named,
                asked: curve,
            });
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

/// A nonzero scalar below `n` from a field of `half`.
fn nonzero<G: Group>(
    half: &Half,
    be: &[u8; 32],
    field: &'static str,
) -> Result<Zeroizing<G::Scalar>, CombineError> {
    let s = Zeroizing::new(G::scalar(be).ok_or(CombineError::OutOfRange {
        role: half.role,
        field,
        curve: G::CURVE,
    })?);
    if G::is_zero(&s) {
        return Err(CombineError::Zero {
            role: half.role,
            field,
        });
    }
    Ok(s)
}

fn point<G: Group>(half: &Half, a: &Affine, field: &'static str) -> Result<G::Point, CombineError> {
    G::point(a).map_err(|e| CombineError::BadPoint {
        role: half.role,
        field,
        curve: G::CURVE,
        problem: PointProblem(e),
    })
}

/// `(λ_c, λ_s)` from the Birkhoff x values a half carries.
fn lambdas<G: Group>(half: &Half) -> Result<(G::Scalar, G::Scalar), CombineError> {
    let x_c = nonzero::<G>(half, &half.bks.client, half.role.client_x_field())?;
    let x_s = nonzero::<G>(half, &half.bks.server, half.role.server_x_field())?;
    let inv_sc = G::invert(&G::sub(&x_s, &x_c)).ok_or(CombineError::EqualX)?;
    let inv_cs = G::invert(&G::sub(&x_c, &x_s)).ok_or(CombineError::EqualX)?;
    Ok((G::mul(&x_s, &inv_sc), G::mul(&x_c, &inv_cs)))
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

fn partial_checks_in<G: Group>(half: &Half) -> Result<(), CombineError> {
    let (Some(p_c), Some(p_s)) = (half.partials.client, half.partials.server) else {
        return Err(CombineError::PartialMissing(half.role));
    };
    let own_field = half.role.own_partial_field();
    let own = half
        .own_partial()
        .ok_or(CombineError::PartialMissing(half.role))?;
    let pubkey = point::<G>(half, &half.pubkey, half.role.pubkey_field())?;
    let own = point::<G>(half, own, own_field)?;
    let p_c = point::<G>(half, &p_c, half.role.client_partial_field())?;
    let p_s = point::<G>(half, &p_s, half.role.server_partial_field())?;
    let s = nonzero::<G>(half, &half.scalar, "share")?;
    if G::mul_base(&s) != own {
        return Err(CombineError::PartialMismatch {
            role: half.role,
            field: own_field,
        });
    }
    let (l_c, l_s) = lambdas::<G>(half)?;
    let sum = G::add_points(&G::mul_point(&p_c, &l_c), &G::mul_point(&p_s, &l_s));
    if sum != pubkey {
        return Err(CombineError::PartialsDoNotCombine(half.role));
    }
    Ok(())
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
