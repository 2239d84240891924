//! What eject hands over: the key in Portal's eject formats (SECP256K1 64 lowercase hex digits,
//! big-endian; ED25519 base58 of the 32-byte little-endian scalar), the wallet's address (EVM
//! for SECP256K1, Solana for ED25519), and the key file (mode 0600, never overwriting).

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use sha3::{Digest, Keccak256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::combine::Ejected;
use crate::curve::Curve;

/// The key as Portal's eject writes it; wiped when dropped.
pub fn key_text(ejected: &Ejected) -> Zeroizing<String> {
    match ejected.curve {
        Curve::Secp256k1 => hex(&ejected.key[..]),
        Curve::Ed25519 => Zeroizing::new(bs58::encode(&ejected.key[..]).into_string()),
    }
}

/// A wallet's address: public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `0x` and 40 hex digits, EIP-55 checksummed.
    Evm(String),
    /// Base58 of the 32-byte compressed Edwards point.
    Solana(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Evm(a) => write!(f, "EVM address: {a}"),
            Self::Solana(a) => write!(f, "Solana address: {a}"),
        }
    }
}

/// The address of the ejected wallet's public key.
pub fn address(ejected: &Ejected) -> Address {
    match ejected.curve {
        Curve::Secp256k1 => Address::Evm(evm_address(&ejected.public)),
        Curve::Ed25519 => Address::Solana(solana_address(&ejected.public)),
    }
}

/// The public key as lowercase hex: SECP256K1 uncompressed (`04 ‖ x ‖ y`), ED25519 compressed.
pub fn public_key_hex(ejected: &Ejected) -> String {
    let prefix = match ejected.curve {
        Curve::Secp256k1 => "04",
        Curve::Ed25519 => "",
    };
    format!("{prefix}{}", *hex(&ejected.public))
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

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Why the key file was not written.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The file is there already.
    #[error("{0} already exists: refusing to overwrite it; the key was not written")]
    Exists(String),
    /// It could not be created.
    #[error("cannot create {path}: {reason}; the key was not written")]
    Create {
        /// The path.
        path: String,
        /// Why.
        reason: io::ErrorKind,
    },
    /// It was created but not fully written; it has been removed.
    #[error("cannot write {path}: {reason}; the file was removed")]
    Write {
        /// The path.
        path: String,
        /// Why.
        reason: io::ErrorKind,
    },
}

/// Writes the key alone on one line to a new file of mode 0600; an existing file is refused.
#[cfg(unix)]
pub fn write_key_file(path: &Path, key: &str) -> Result<(), OutputError> {
    use std::fs::{self, OpenOptions};
    use std::os::unix::fs::OpenOptionsExt;

    let shown = || path.display().to_string();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => OutputError::Exists(shown()),
            reason => OutputError::Create {
                path: shown(),
                reason,
            },
        })?;
    let mut line = Zeroizing::new(String::with_capacity(key.len() + 1));
    line.push_str(key);
    line.push('\n');
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Best effort: the file holds at most part of the key.
        let _ = fs::remove_file(path);
        return Err(OutputError::Write {
            path: shown(),
            reason: e.kind(),
        });
    }
    Ok(())
}

/// Writes the key file: only Unix systems can create it with mode 0600 here.
#[cfg(not(unix))]
pub fn write_key_file(path: &Path, _key: &str) -> Result<(), OutputError> {
    Err(OutputError::Create {
        path: path.display().to_string(),
        reason: io::ErrorKind::Unsupported,
    })
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
