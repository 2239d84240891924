//! Where a half comes from, and what its file holds: plaintext (the JSON Portal issues, or its
//! base64), or a stored half, an AWS Encryption SDK message (its bytes, or their standard
//! base64), which `stored` opens with the caller's AWS credentials under the half's context.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use thiserror::Error;
use zeroize::Zeroizing;

use portal_shares::share::Role;

/// The largest share file read: a backup share is a few kilobytes.
pub const MAX_SHARE_BYTES: u64 = 1 << 20;

/// What a share file holds.
pub enum Source {
    /// The share as Portal issues it (or as an opened stored message gives it): JSON, or base64
    /// of JSON. Wiped when dropped.
    Plaintext(Zeroizing<Vec<u8>>),
    /// A stored AWS Encryption SDK message: its bytes (ciphertext). Reserved for opening with
    /// the caller's AWS credentials under the half's exact encryption context.
    EsdkMessage(Vec<u8>),
    /// A ciphertext of the project's first format (`pbe1.…`), which needs KMS too.
    Pbe1,
}

/// Why a share file gave no plaintext. One line; never a value.
#[derive(Debug, Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{role}: cannot read {path}: {reason}")]
    Read {
        /// Which half.
        role: Role,
        /// The path.
        path: String,
        /// Why.
        reason: io::ErrorKind,
    },
    /// The file is far larger than any share.
    #[error("{role}: {path} is larger than 1 MiB: not a backup share")]
    TooLarge {
        /// Which half.
        role: Role,
        /// The path.
        path: String,
    },
    /// A stored half needs the ids of its encryption context.
    #[error(
        "{0}: a stored half opens only under its exact context: give --client-id and --backup-share-pair-id"
    )]
    NeedsIds(Role),
    /// AWS (KMS, DynamoDB, credentials) did not give the half.
    #[error("{role}: {reason}")]
    Aws {
        /// Which half.
        role: Role,
        /// Why (never a value of the half).
        reason: String,
    },
    /// The table holds no such half.
    #[error("{role}: table {table} holds no half for that client and pair")]
    NotInTable {
        /// Which half.
        role: Role,
        /// The table.
        table: String,
    },
    /// A `pbe1` ciphertext.
    #[error(
        "{0}: pbe1 ciphertexts: not supported by this build; open it with scripts/pbtool.py decrypt first"
    )]
    Pbe1NotSupported(Role),
}

/// Whether bytes begin like an AWS Encryption SDK message: version 2 (`0x02`), or version 1
/// (`0x01`, type `0x80`).
fn esdk_header(bytes: &[u8]) -> bool {
    matches!(bytes, [0x02, ..] | [0x01, 0x80, ..])
}

impl Source {
    /// Reads a share file (at most [`MAX_SHARE_BYTES`]) and tells what it holds.
    pub fn read(role: Role, path: &Path) -> Result<Source, InputError> {
        let shown = || path.display().to_string();
        let read_err = |e: io::Error| InputError::Read {
            role,
            path: shown(),
            reason: e.kind(),
        };
        let file = File::open(path).map_err(read_err)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_SHARE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_SHARE_BYTES {
            return Err(InputError::TooLarge {
                role,
                path: shown(),
            });
        }
        Ok(Self::classify(bytes))
    }

    /// Tells what a share file's bytes are.
    pub fn classify(bytes: Zeroizing<Vec<u8>>) -> Source {
        if esdk_header(&bytes) {
            return Source::EsdkMessage(bytes.to_vec());
        }
        let text = bytes.trim_ascii();
        if text.starts_with(b"pbe1.") {
            return Source::Pbe1;
        }
        // Base64 whose first quartet decodes to a message header: decode the whole of it.
        let head = text
            .get(..4)
            .and_then(|q| STANDARD_PAD_INDIFFERENT.decode(q).ok());
        if head.is_some_and(|h| esdk_header(&h)) {
            let compact: Vec<u8> = text
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            if let Ok(message) = STANDARD_PAD_INDIFFERENT.decode(compact) {
                return Source::EsdkMessage(message);
            }
        }
        Source::Plaintext(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn kind(bytes: &[u8]) -> &'static str {
        match Source::classify(Zeroizing::new(bytes.to_vec())) {
            Source::Plaintext(_) => "plaintext",
            Source::EsdkMessage(_) => "esdk",
            Source::Pbe1 => "pbe1",
        }
    }

    #[test]
    fn tells_plaintext_from_stored_messages() {
        let json = br#"{"clientId":"c","share":"1"}"#;
        assert_eq!(kind(json), "plaintext");
        assert_eq!(kind(STANDARD.encode(json).as_bytes()), "plaintext");
        // A version-2 message with the committing suite 0x0478, as the function writes it.
        let message = [0x02, 0x04, 0x78, 0xaa, 0xbb, 0xcc, 0xdd];
        assert_eq!(kind(&message), "esdk");
        assert_eq!(kind(STANDARD.encode(message).as_bytes()), "esdk");
        assert_eq!(
            kind(format!("{}\n", STANDARD.encode(message)).as_bytes()),
            "esdk"
        );
        assert_eq!(kind(&[0x01, 0x80, 0x03, 0x78]), "esdk");
        assert_eq!(kind(b"pbe1.a.b.c.d\n"), "pbe1");
        assert_eq!(kind(b""), "plaintext");
    }

    #[test]
    fn a_missing_file_names_the_half_and_the_path() {
        let path = Path::new("/nonexistent/eject-share.json");
        let err = Source::read(Role::Custodian, path).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "custodian backup share: cannot read /nonexistent/eject-share.json: {}",
                io::ErrorKind::NotFound
            )
        );
    }
}
