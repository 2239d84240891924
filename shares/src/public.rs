//! A wallet's public values as wallets and explorers show them: the public key's bytes and the
//! address (EVM for SECP256K1, Solana for ED25519). Nothing here touches a scalar.

use std::fmt;

use sha3::{Digest, Keccak256};

use crate::check::{CheckError, PointProblem};
use crate::curve::{Affine, Curve, Group};
use crate::ed25519::Ed25519;
use crate::secp256k1::Secp256k1;
use crate::share::Half;

/// A wallet's address: public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `0x` and 40 hex digits, EIP-55 checksummed.
    Evm(String),
    /// Base58 of the 32-byte compressed Edwards point.
    Solana(String),
}

impl Address {
    /// The address alone, without its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Evm(a) | Self::Solana(a) => a,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Evm(a) => write!(f, "EVM address: {a}"),
            Self::Solana(a) => write!(f, "Solana address: {a}"),
        }
    }
}

/// A wallet's public values, from the public key a half names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletPublic {
    /// The curve.
    pub curve: Curve,
    /// The public key, lowercase hex: SECP256K1 uncompressed (`04 ‖ x ‖ y`), ED25519 compressed.
    pub public_key: String,
    /// The address of that key.
    pub address: Address,
}

/// The public values of the wallet `half` belongs to; refused when its `pubkey` is not a point
/// of `curve`.
pub fn wallet_public(curve: Curve, half: &Half) -> Result<WalletPublic, CheckError> {
    fn on<G: Group>(half: &Half) -> Result<WalletPublic, CheckError> {
        let point = G::point(&half.pubkey).map_err(|e| CheckError::BadPoint {
            role: half.role,
            field: half.role.pubkey_field(),
            curve: G::CURVE,
            problem: PointProblem(e),
        })?;
        Ok(public_of(G::CURVE, &G::public_bytes(&point)))
    }
    match curve {
        Curve::Secp256k1 => on::<Secp256k1>(half),
        Curve::Ed25519 => on::<Ed25519>(half),
    }
}

/// The public values of a wallet whose public key's bytes are `public` (SECP256K1 `x ‖ y`, 64
/// bytes; ED25519 the compressed point, 32).
pub fn public_of(curve: Curve, public: &[u8]) -> WalletPublic {
    match curve {
        Curve::Secp256k1 => WalletPublic {
            curve,
            public_key: format!("04{}", hex(public)),
            address: Address::Evm(evm_address(public)),
        },
        Curve::Ed25519 => WalletPublic {
            curve,
            public_key: hex(public),
            address: Address::Solana(solana_address(public)),
        },
    }
}

/// The public values of the point with these affine coordinates, if it is one of `curve`.
pub fn public_of_affine(curve: Curve, a: &Affine) -> Option<WalletPublic> {
    fn on<G: Group>(a: &Affine) -> Option<Vec<u8>> {
        G::point(a).ok().map(|p| G::public_bytes(&p))
    }
    let bytes = match curve {
        Curve::Secp256k1 => on::<Secp256k1>(a)?,
        Curve::Ed25519 => on::<Ed25519>(a)?,
    };
    Some(public_of(curve, &bytes))
}

/// `0x` + the last 20 bytes of Keccak-256 of the uncompressed public key's 64 bytes `x ‖ y`,
/// EIP-55 checksummed.
pub fn evm_address(xy: &[u8]) -> String {
    let digest = Keccak256::digest(xy);
    eip55(&hex(&digest[12..]))
}

/// EIP-55: each letter of the lowercase hex address is upper-cased where the matching nibble
/// of Keccak-256 of that lowercase text is 8 or more.
pub fn eip55(lower: &str) -> String {
    let digest = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let byte = digest[i / 2];
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// Base58 of the 32-byte compressed Edwards public key.
pub fn solana_address(compressed: &[u8]) -> String {
    bs58::encode(compressed).into_string()
}

/// Lowercase hex of public bytes.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(v: u8) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[31] = v;
        b
    }

    fn public_for<G: Group>(be: [u8; 32]) -> WalletPublic {
        let s = G::scalar(&be).unwrap();
        public_of(G::CURVE, &G::public_bytes(&G::mul_base(&s)))
    }

    #[test]
    fn eip55_checksums_the_eip_vectors() {
        for want in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(eip55(&want[2..].to_ascii_lowercase()), want);
        }
    }

    #[test]
    fn key_one_gives_the_known_addresses() {
        let p = public_for::<Secp256k1>(small(1));
        assert_eq!(
            p.address,
            Address::Evm("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".into())
        );
        assert_eq!(p.public_key.len(), 130);
        assert!(
            p.public_key
                .starts_with("0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        );
        // The compressed base point, 0x58 then 31 × 0x66.
        let p = public_for::<Ed25519>(small(1));
        assert_eq!(
            p.address.as_str(),
            "6x5SYnLroiN7WYq8NQYU9KHcH4YjpBbwpUfVu3EB7ieH"
        );
        assert_eq!(p.public_key, format!("58{}", "66".repeat(31)));
    }

    #[test]
    fn affine_coordinates_give_the_same_values_as_the_point() {
        for curve in [Curve::Secp256k1, Curve::Ed25519] {
            let a = crate::check::scalar_times_g(curve, &small(7)).unwrap();
            let p = public_of_affine(curve, &a).unwrap();
            let want = match curve {
                Curve::Secp256k1 => public_for::<Secp256k1>(small(7)),
                Curve::Ed25519 => public_for::<Ed25519>(small(7)),
            };
            assert_eq!(p, want);
            let off = Affine {
                x: a.x,
                y: small(5),
            };
            assert_eq!(public_of_affine(curve, &off), None);
        }
    }
}
