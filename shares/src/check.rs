//! One half checked against public values alone, without the other half: in the threshold
//! scheme Portal's shares come from, a party's partial public key is its scalar times `G`, and
//! the partial public keys interpolate (rank 0, at 0) to the wallet's public key:
//! `λ_c·P_c + λ_s·P_s = pubkey` with `λ_c = x_s / (x_s − x_c)`, `λ_s = x_c / (x_c − x_s)`.
//!
//! The helpers ([`nonzero`], [`point`], [`lambdas`]) are the ones eject's combination uses, so
//! a half is read the same way wherever it is checked.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve, Group, PointError};
use crate::ed25519::Ed25519;
use crate::secp256k1::Secp256k1;
use crate::share::{Half, Role};

/// Why a half's values are not usable, or fail their public checks. One line; never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
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

impl CheckError {
    /// Whether the half's values are well formed but do not make the wallet's key: the failure
    /// a drill reports as a key mismatch (the rest are malformed or missing values).
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            Self::PartialMismatch { .. } | Self::PartialsDoNotCombine(_)
        )
    }
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

/// Checks one half against public values alone: its scalar times `G` is its own partial
/// public key, and `λ_c·P_c + λ_s·P_s` is the wallet's public key.
pub fn partial_checks(curve: Curve, half: &Half) -> Result<(), CheckError> {
    if let Some(named) = half.curve.filter(|&c| c != curve) {
        return Err(CheckError::CurveMismatch {
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

/// A nonzero scalar below `n` from a field of `half`.
pub fn nonzero<G: Group>(
    half: &Half,
    be: &[u8; 32],
    field: &'static str,
) -> Result<Zeroizing<G::Scalar>, CheckError> {
    let s = Zeroizing::new(G::scalar(be).ok_or(CheckError::OutOfRange {
        role: half.role,
        field,
        curve: G::CURVE,
    })?);
    if G::is_zero(&s) {
        return Err(CheckError::Zero {
            role: half.role,
            field,
        });
    }
    Ok(s)
}

/// The group element a field of `half` names.
pub fn point<G: Group>(
    half: &Half,
    a: &Affine,
    field: &'static str,
) -> Result<G::Point, CheckError> {
    G::point(a).map_err(|e| CheckError::BadPoint {
        role: half.role,
        field,
        curve: G::CURVE,
        problem: PointProblem(e),
    })
}

/// `(λ_c, λ_s)` from the Birkhoff x values a half carries.
pub fn lambdas<G: Group>(half: &Half) -> Result<(G::Scalar, G::Scalar), CheckError> {
    let x_c = nonzero::<G>(half, &half.bks.client, half.role.client_x_field())?;
    let x_s = nonzero::<G>(half, &half.bks.server, half.role.server_x_field())?;
    let inv_sc = G::invert(&G::sub(&x_s, &x_c)).ok_or(CheckError::EqualX)?;
    let inv_cs = G::invert(&G::sub(&x_c, &x_s)).ok_or(CheckError::EqualX)?;
    Ok((G::mul(&x_s, &inv_sc), G::mul(&x_c, &inv_cs)))
}

fn partial_checks_in<G: Group>(half: &Half) -> Result<(), CheckError> {
    let (Some(p_c), Some(p_s)) = (half.partials.client, half.partials.server) else {
        return Err(CheckError::PartialMissing(half.role));
    };
    let own_field = half.role.own_partial_field();
    let own = half
        .own_partial()
        .ok_or(CheckError::PartialMissing(half.role))?;
    let pubkey = point::<G>(half, &half.pubkey, half.role.pubkey_field())?;
    let own = point::<G>(half, own, own_field)?;
    let p_c = point::<G>(half, &p_c, half.role.client_partial_field())?;
    let p_s = point::<G>(half, &p_s, half.role.server_partial_field())?;
    let s = nonzero::<G>(half, &half.scalar, "share")?;
    if G::mul_base(&s) != own {
        return Err(CheckError::PartialMismatch {
            role: half.role,
            field: own_field,
        });
    }
    let (l_c, l_s) = lambdas::<G>(half)?;
    let sum = G::add_points(&G::mul_point(&p_c, &l_c), &G::mul_point(&p_s, &l_s));
    if sum != pubkey {
        return Err(CheckError::PartialsDoNotCombine(half.role));
    }
    Ok(())
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
