//! The two curves Portal's wallets use, and the few group operations eject needs of each.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A wallet's curve, named as Portal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// secp256k1: EVM wallets.
    Secp256k1,
    /// Ed25519 (Edwards form of Curve25519): Solana wallets.
    Ed25519,
}

impl Curve {
    /// Portal's name: `SECP256K1` or `ED25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secp256k1 => "SECP256K1",
            Self::Ed25519 => "ED25519",
        }
    }

    /// A curve from Portal's name, in either case (Portal's older schema uses lowercase).
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("SECP256K1") {
            Some(Self::Secp256k1)
        } else if name.eq_ignore_ascii_case("ED25519") {
            Some(Self::Ed25519)
        } else {
            None
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point given by its affine coordinates, as Portal writes them (decimal strings, here 32
/// bytes big-endian each). Public values only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    /// The x coordinate, big-endian.
    pub x: [u8; 32],
    /// The y coordinate, big-endian.
    pub y: [u8; 32],
}

/// Why affine coordinates are not a point of the curve's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointError {
    /// A coordinate is not below the field prime.
    OutOfField,
    /// The coordinates do not satisfy the curve equation.
    NotOnCurve,
}

/// The operations of one curve's prime-order group that the checks and eject need.
pub trait Group {
    /// A scalar modulo the group order `n`; wiped when dropped through [`Zeroizing`].
    type Scalar: Copy + Default + Zeroize;
    /// A group element.
    type Point: Copy + PartialEq;

    /// The curve this is.
    const CURVE: Curve;

    /// A big-endian integer as a scalar; `None` when it is not below `n`.
    fn scalar(be: &[u8; 32]) -> Option<Self::Scalar>;
    /// Whether a scalar is zero.
    fn is_zero(s: &Self::Scalar) -> bool;
    /// `a + b` mod `n`.
    fn add(a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `a − b` mod `n`.
    fn sub(a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `a · b` mod `n`.
    fn mul(a: &Self::Scalar, b: &Self::Scalar) -> Self::Scalar;
    /// `1 / a` mod `n`; `None` for zero.
    fn invert(a: &Self::Scalar) -> Option<Self::Scalar>;

    /// The group element with these affine coordinates.
    fn point(p: &Affine) -> Result<Self::Point, PointError>;
    /// `s · G`.
    fn mul_base(s: &Self::Scalar) -> Self::Point;
    /// `s · P`.
    fn mul_point(p: &Self::Point, s: &Self::Scalar) -> Self::Point;
    /// `P + Q`.
    fn add_points(p: &Self::Point, q: &Self::Point) -> Self::Point;

    /// The private key's bytes as Portal's eject writes them (SECP256K1 big-endian, ED25519
    /// little-endian), 32 of them.
    fn key_bytes(s: &Self::Scalar) -> Zeroizing<[u8; 32]>;
    /// The public key's bytes as wallets take them: SECP256K1 the 64 bytes `x ‖ y` of the
    /// uncompressed point, ED25519 the 32 bytes of the compressed point.
    fn public_bytes(p: &Self::Point) -> Vec<u8>;
    /// The affine coordinates of a group element (to build shares in tests and tools).
    fn affine(p: &Self::Point) -> Affine;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_names_parse_in_either_case() {
        assert_eq!(Curve::parse("SECP256K1"), Some(Curve::Secp256k1));
        assert_eq!(Curve::parse("secp256k1"), Some(Curve::Secp256k1));
        assert_eq!(Curve::parse("ED25519"), Some(Curve::Ed25519));
        assert_eq!(Curve::parse("ed25519"), Some(Curve::Ed25519));
        assert_eq!(Curve::parse("P256"), None);
        assert_eq!(Curve::Ed25519.to_string(), "ED25519");
    }
}
