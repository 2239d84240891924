//! Ed25519 (`curve25519-dalek`): scalars modulo ℓ, Edwards points from affine coordinates.
//!
//! `curve25519-dalek` takes points in compressed form only (y and the sign of x), so the
//! coordinates Portal gives are checked here against the curve equation
//! `−x² + y² = 1 + d·x²·y² (mod p)` with `num-bigint` (public values only) before the point is
//! compressed: a point that satisfies the equation, with the sign bit set from x's parity,
//! decompresses to exactly the given x.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use num_bigint::BigUint;
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve, Group, PointError};

/// The Ed25519 group.
pub struct Ed25519;

/// p = 2^255 − 19.
fn prime() -> BigUint {
    (BigUint::from(1u8) << 255u32) - 19u8
}

/// d = −121665 / 121666 (mod p).
fn edwards_d(p: &BigUint) -> BigUint {
    let inv = BigUint::from(121_666u32).modpow(&(p - 2u8), p);
    ((p - 121_665u32) * inv) % p
}

fn big(be: &[u8; 32]) -> BigUint {
    BigUint::from_bytes_be(be)
}

/// A value below 2^256 as 32 bytes big-endian.
fn be32(v: &BigUint) -> [u8; 32] {
    let bytes = v.to_bytes_be();
    let mut out = [0u8; 32];
    let start = 32usize.saturating_sub(bytes.len());
    let take = bytes.len().min(32);
    out[start..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

/// Whether (x, y), both below p, satisfies the twisted Edwards equation.
fn on_curve(x: &BigUint, y: &BigUint, p: &BigUint) -> bool {
    let x2 = x * x % p;
    let y2 = y * y % p;
    let lhs = (&y2 + p - &x2) % p;
    let rhs = (BigUint::from(1u8) + edwards_d(p) * &x2 % p * &y2) % p;
    lhs == rhs
}

/// The x coordinate of the point with this y and x's parity, if there is one.
fn recover_x(y: &BigUint, x_odd: bool, p: &BigUint) -> Option<BigUint> {
    let one = BigUint::from(1u8);
    let y2 = y * y % p;
    let num = (&y2 + p - &one) % p;
    let den = (edwards_d(p) * &y2 + &one) % p;
    let u = num * den.modpow(&(p - 2u8), p) % p;
    // p ≡ 5 (mod 8): a candidate root is u^((p+3)/8); if its square is −u, times √−1.
    let mut x = u.modpow(&((p + 3u8) >> 3u32), p);
    if &x * &x % p != u {
        let sqrt_m1 = BigUint::from(2u8).modpow(&((p - &one) >> 2u32), p);
        x = x * sqrt_m1 % p;
        if &x * &x % p != u {
            return None;
        }
    }
    if x.bit(0) != x_odd {
        if x == BigUint::ZERO {
            return None;
        }
        x = p - x;
    }
    Some(x)
}

impl Group for Ed25519 {
    type Scalar = Scalar;
    type Point = EdwardsPoint;

    const CURVE: Curve = Curve::Ed25519;

    fn scalar(be: &[u8; 32]) -> Option<Scalar> {
        let mut le = Zeroizing::new(*be);
        le.reverse();
        Option::from(Scalar::from_canonical_bytes(*le))
    }

    fn is_zero(s: &Scalar) -> bool {
        *s == Scalar::ZERO
    }

    fn add(a: &Scalar, b: &Scalar) -> Scalar {
        a + b
    }

    fn sub(a: &Scalar, b: &Scalar) -> Scalar {
        a - b
    }

    fn mul(a: &Scalar, b: &Scalar) -> Scalar {
        a * b
    }

    fn invert(a: &Scalar) -> Option<Scalar> {
        if Self::is_zero(a) {
            None
        } else {
            Some(a.invert())
        }
    }

    fn point(a: &Affine) -> Result<EdwardsPoint, PointError> {
        let p = prime();
        let (x, y) = (big(&a.x), big(&a.y));
        if x >= p || y >= p {
            return Err(PointError::OutOfField);
        }
        if !on_curve(&x, &y, &p) {
            return Err(PointError::NotOnCurve);
        }
        // Compressed: y little-endian, the top bit x's parity (y < p < 2^255 leaves it free).
        let mut compressed = a.y;
        compressed.reverse();
        compressed[31] |= u8::from(x.bit(0)) << 7;
        CompressedEdwardsY(compressed)
            .decompress()
            .ok_or(PointError::NotOnCurve)
    }

    fn mul_base(s: &Scalar) -> EdwardsPoint {
        EdwardsPoint::mul_base(s)
    }

    fn mul_point(p: &EdwardsPoint, s: &Scalar) -> EdwardsPoint {
        p * s
    }

    fn add_points(p: &EdwardsPoint, q: &EdwardsPoint) -> EdwardsPoint {
        p + q
    }

    fn key_bytes(s: &Scalar) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(s.to_bytes())
    }

    fn public_bytes(p: &EdwardsPoint) -> Vec<u8> {
        p.compress().to_bytes().to_vec()
    }

    fn affine(point: &EdwardsPoint) -> Affine {
        let p = prime();
        let mut y_le = point.compress().to_bytes();
        let x_odd = y_le[31] & 0x80 != 0;
        y_le[31] &= 0x7f;
        let y = BigUint::from_bytes_le(&y_le);
        // A compressed point of the group always has its x.
        let x = recover_x(&y, x_odd, &p).unwrap_or_default();
        Affine {
            x: be32(&x),
            y: be32(&y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::{parse_be32, to_decimal};

    #[test]
    fn constants_are_right() {
        let p = prime();
        assert_eq!(
            p.to_string(),
            "57896044618658097711785492504343953926634992332820282019728792003956564819949"
        );
        assert_eq!(
            edwards_d(&p).to_string(),
            "37095705934669439343138083508754565189542113879843219016388785533085940283555"
        );
    }

    #[test]
    fn base_point_round_trips_through_affine() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let g = Ed25519::mul_base(&Ed25519::scalar(&one).unwrap());
        let a = Ed25519::affine(&g);
        assert_eq!(
            to_decimal(&a.x),
            "15112221349535400772501151409588531511454012693041857206046113283949847762202"
        );
        assert_eq!(
            to_decimal(&a.y),
            "46316835694926478169428394003475163141307993866256225615783033603165251855960"
        );
        assert_eq!(Ed25519::point(&a).unwrap(), g);
    }

    #[test]
    fn refuses_points_off_the_curve_or_out_of_field() {
        let mut two = [0u8; 32];
        two[31] = 2;
        let mut a = Ed25519::affine(&Ed25519::mul_base(&Ed25519::scalar(&two).unwrap()));
        a.x[31] ^= 1;
        assert_eq!(Ed25519::point(&a), Err(PointError::NotOnCurve));
        a.y = [0xff; 32];
        assert_eq!(Ed25519::point(&a), Err(PointError::OutOfField));
        // The negated x is on the curve too, and is another point (−P).
        let pt = Ed25519::mul_base(&Ed25519::scalar(&two).unwrap());
        let mut neg = Ed25519::affine(&pt);
        neg.x = be32(&(prime() - big(&neg.x)));
        assert_eq!(Ed25519::point(&neg).unwrap(), -pt);
    }

    #[test]
    fn scalars_at_or_above_the_order_are_refused() {
        let l = "7237005577332262213973186563042994240857116359379907606001950938285454250989";
        let l = parse_be32(l).unwrap();
        assert!(Ed25519::scalar(&l).is_none());
        let mut below = *l;
        below[31] -= 1;
        assert!(Ed25519::scalar(&below).is_some());
    }
}
