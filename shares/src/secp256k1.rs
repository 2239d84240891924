//! secp256k1 (`k256`): scalars modulo its order, points from affine coordinates.

use k256::elliptic_curve::ff::{Field, PrimeField};
use k256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, Sec1Point};
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve, Group, PointError};

/// The secp256k1 group.
pub struct Secp256k1;

fn field_bytes(be: &[u8; 32]) -> FieldBytes {
    let mut bytes = FieldBytes::default();
    bytes.copy_from_slice(be);
    bytes
}

fn below_p(be: &[u8; 32]) -> bool {
    // Big-endian byte arrays compare as the integers they hold.
    be < &P
}

/// The field prime p = 2^256 − 2^32 − 977 (FF…FE FFFFFC2F), big-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[27] = 0xfe;
    p[30] = 0xfc;
    p[31] = 0x2f;
    p
};

impl Group for Secp256k1 {
    type Scalar = Scalar;
    type Point = ProjectivePoint;

    const CURVE: Curve = Curve::Secp256k1;

    fn scalar(be: &[u8; 32]) -> Option<Scalar> {
        Option::from(Scalar::from_repr(field_bytes(be)))
    }

    fn is_zero(s: &Scalar) -> bool {
        bool::from(s.is_zero())
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
        Option::from(Field::invert(a))
    }

    fn point(p: &Affine) -> Result<ProjectivePoint, PointError> {
        if !below_p(&p.x) || !below_p(&p.y) {
            return Err(PointError::OutOfField);
        }
        let encoded =
            Sec1Point::from_affine_coordinates(&field_bytes(&p.x), &field_bytes(&p.y), false);
        let affine: Option<AffinePoint> = AffinePoint::from_sec1_point(&encoded).into();
        affine
            .map(ProjectivePoint::from)
            .ok_or(PointError::NotOnCurve)
    }

    fn mul_base(s: &Scalar) -> ProjectivePoint {
        ProjectivePoint::GENERATOR * s
    }

    fn mul_point(p: &ProjectivePoint, s: &Scalar) -> ProjectivePoint {
        p * s
    }

    fn add_points(p: &ProjectivePoint, q: &ProjectivePoint) -> ProjectivePoint {
        p + q
    }

    fn key_bytes(s: &Scalar) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&s.to_bytes());
        out
    }

    fn public_bytes(p: &ProjectivePoint) -> Vec<u8> {
        let encoded = p.to_affine().to_sec1_point(false);
        // `04 ‖ x ‖ y` for any point but the identity, which has no affine coordinates.
        encoded.as_bytes().get(1..).unwrap_or_default().to_vec()
    }

    fn affine(p: &ProjectivePoint) -> Affine {
        let bytes = Self::public_bytes(p);
        let mut out = Affine {
            x: [0; 32],
            y: [0; 32],
        };
        if bytes.len() == 64 {
            out.x.copy_from_slice(&bytes[..32]);
            out.y.copy_from_slice(&bytes[32..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::parse_be32;

    #[test]
    fn field_prime_is_right() {
        let p = "115792089237316195423570985008687907853269984665640564039457584007908834671663";
        assert_eq!(*parse_be32(p).unwrap(), P);
    }

    #[test]
    fn generator_round_trips_through_affine() {
        let one = Secp256k1::scalar(&{
            let mut b = [0u8; 32];
            b[31] = 1;
            b
        })
        .unwrap();
        let g = Secp256k1::mul_base(&one);
        let affine = Secp256k1::affine(&g);
        assert_eq!(Secp256k1::point(&affine).unwrap(), g);
        let gx = "55066263022277343669578718895168534326250603453777594175500187360389116729240";
        assert_eq!(affine.x, *parse_be32(gx).unwrap());
    }

    #[test]
    fn refuses_points_off_the_curve_or_out_of_field() {
        let one = Secp256k1::scalar(&[1u8; 32]).unwrap();
        let mut p = Secp256k1::affine(&Secp256k1::mul_base(&one));
        p.y[31] ^= 1;
        assert_eq!(Secp256k1::point(&p), Err(PointError::NotOnCurve));
        p.y = P;
        assert_eq!(Secp256k1::point(&p), Err(PointError::OutOfField));
    }

    #[test]
    fn scalars_at_or_above_the_order_are_refused() {
        let n = "115792089237316195423570985008687907852837564279074904382605163141518161494337";
        let n = parse_be32(n).unwrap();
        assert!(Secp256k1::scalar(&n).is_none());
        let mut below = *n;
        below[31] -= 1;
        assert!(Secp256k1::scalar(&below).is_some());
    }
}
