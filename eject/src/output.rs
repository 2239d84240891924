//! What eject hands over: the key in Portal's eject formats (SECP256K1 64 lowercase hex digits,
//! big-endian; ED25519 base58 of the 32-byte little-endian scalar), the wallet's address (EVM
//! for SECP256K1, Solana for ED25519), and the key file (mode 0600, never overwriting).

use std::io::{self, Write};
use std::path::Path;

use portal_shares::curve::Curve;
pub use portal_shares::public::Address;
use portal_shares::public::public_of;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::combine::Ejected;

/// The key as Portal's eject writes it; wiped when dropped.
pub fn key_text(ejected: &Ejected) -> Zeroizing<String> {
    match ejected.curve {
        Curve::Secp256k1 => hex(&ejected.key[..]),
        Curve::Ed25519 => Zeroizing::new(bs58::encode(&ejected.key[..]).into_string()),
    }
}

/// The address of the ejected wallet's public key.
pub fn address(ejected: &Ejected) -> Address {
    public_of(ejected.curve, &ejected.public).address
}

/// The public key as lowercase hex: SECP256K1 uncompressed (`04 ‖ x ‖ y`), ED25519 compressed.
pub fn public_key_hex(ejected: &Ejected) -> String {
    public_of(ejected.curve, &ejected.public).public_key
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
