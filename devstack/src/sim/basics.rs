//! The simulator's plain values: its own failure, the two curves, and Portal-like ids. Shared by
//! the state and the wallets' keys, and depending on neither.

/// Failure inside the simulator itself (not a simulated Portal error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    /// The system random generator failed.
    #[error("random generator failure")]
    Random,
}

/// The two curves Portal generates a share pair for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Curve {
    /// secp256k1 (EVM, Bitcoin).
    Secp256k1,
    /// ed25519 (Solana).
    Ed25519,
}

impl Curve {
    /// Both curves, in Portal's order.
    pub(crate) const ALL: [Curve; 2] = [Curve::Secp256k1, Curve::Ed25519];

    /// Portal's name of the curve (`SECP256K1` / `ED25519`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "SECP256K1",
            Curve::Ed25519 => "ED25519",
        }
    }

    /// Index of the curve in [`Curve::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Curve::Secp256k1 => 0,
            Curve::Ed25519 => 1,
        }
    }
}

/// Fills a buffer of `n` random bytes.
fn random_bytes(n: usize) -> Result<Vec<u8>, SimError> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| SimError::Random)?;
    Ok(buf)
}

/// A cuid-like id: `cm` + 23 lowercase alphanumeric characters.
pub(crate) fn new_id() -> Result<String, SimError> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let bytes = random_bytes(23)?;
    let mut id = String::with_capacity(25);
    id.push_str("cm");
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])),
    );
    Ok(id)
}
