//! Envelope encryption: one KMS data key per secret, bound to an encryption context.
//!
//! Every new ciphertext is an AWS Encryption SDK message (see `esdk_message`): bytes in a
//! DynamoDB binary attribute, standard base64 where a string is needed. Older backups are
//! `pbe1` strings, this project's first format, still opened (and re-sealed by rotation's
//! `migrate` mode) but never written by the function:
//!
//! `pbe1`, five base64url fields without padding, joined by `.`:
//! `pbe1.<kms key id>.<encrypted data key>.<nonce (12 bytes)>.<ciphertext || tag (16 bytes)>`.
//! The KMS encryption context and the GCM AAD are the same map; the AAD is its canonical JSON
//! (keys sorted, no whitespace). See the README for a worked decryption in another language.

use std::collections::{BTreeMap, HashMap};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::domain::model::Curve;
use crate::domain::secret::SecretBytes;

/// Prefix of the current ciphertext format.
pub const FORMAT_V1: &str = "pbe1";

/// GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Longest ciphertext string accepted for opening (a backup share is a few KiB).
pub const MAX_CIPHERTEXT_LEN: usize = 1024 * 1024;

/// The two formats a stored ciphertext can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An AWS Encryption SDK message (standard base64 in text form): every new ciphertext.
    Esdk,
    /// This project's first format, read-only.
    Pbe1,
}

impl Format {
    /// The format of a ciphertext string: `pbe1.` starts a pbe1 string, which base64 never does
    /// (no `.` in its alphabet).
    pub fn of(text: &str) -> Self {
        if text.starts_with("pbe1.") {
            Format::Pbe1
        } else {
            Format::Esdk
        }
    }

    /// Its name in answers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Esdk => "aws-esdk",
            Format::Pbe1 => "pbe1",
        }
    }
}

/// Whether a string has the shape of a ciphertext of either format (a cheap check of input; the
/// opener decides): a `pbe1.` string, or non-empty standard base64.
pub fn looks_sealed(text: &str) -> bool {
    Format::of(text) == Format::Pbe1
        || (!text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
}

/// The map that binds a ciphertext to its purpose: KMS encryption context and GCM AAD at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<&'static str, String>);

impl EncryptionContext {
    /// The context of a client backup share.
    pub fn backup_share(client_id: &str, backup_share_pair_id: &str, curve: Curve) -> Self {
        Self(BTreeMap::from([
            ("clientId", client_id.to_owned()),
            ("backupSharePairId", backup_share_pair_id.to_owned()),
            ("curve", curve.as_str().to_owned()),
        ]))
    }

    /// The context of a sealed `/v1/generate` response sent by a producer for `client_id`.
    pub fn generate_response(client_id: &str) -> Self {
        Self(BTreeMap::from([
            ("clientId", client_id.to_owned()),
            ("purpose", "generate-response".to_owned()),
        ]))
    }

    /// The context of a sealed restore answer (`sealedBackupResponse`) for `client_id`.
    pub fn backup_response(client_id: &str) -> Self {
        Self(BTreeMap::from([
            ("clientId", client_id.to_owned()),
            ("purpose", "backup-response".to_owned()),
        ]))
    }

    /// The context of a custodian backup share Portal sent to the backup webhook.
    pub fn custodian_share(client_id: &str, backup_share_pair_id: &str) -> Self {
        Self(BTreeMap::from([
            ("clientId", client_id.to_owned()),
            ("purpose", "custodian-backup-share".to_owned()),
            ("backupSharePairId", backup_share_pair_id.to_owned()),
        ]))
    }

    /// The context of a custodian backup share Portal answered to a Portal-managed eject, sealed
    /// for the recovery role (`{clientId, walletId, purpose: eject-share}`).
    pub fn eject_share(client_id: &str, wallet_id: &str) -> Self {
        Self(BTreeMap::from([
            ("clientId", client_id.to_owned()),
            ("purpose", "eject-share".to_owned()),
            ("walletId", wallet_id.to_owned()),
        ]))
    }

    /// The AAD: canonical JSON of the map (keys sorted, compact).
    pub fn aad(&self) -> Vec<u8> {
        // A BTreeMap of strings always serialises.
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    /// Its keys: the ones a message must be opened with (the required encryption context).
    pub fn keys(&self) -> Vec<String> {
        self.0.keys().map(|k| (*k).to_owned()).collect()
    }

    /// The map as KMS takes it.
    pub fn to_kms(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
}

/// The parts of a version-1 ciphertext.
#[derive(Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The KMS key that wrapped the data key (as KMS reported it: an ARN).
    pub key_id: String,
    /// The data key, wrapped by KMS.
    pub encrypted_data_key: Vec<u8>,
    /// GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// The one-string form.
    pub fn encode(&self) -> String {
        format!(
            "{FORMAT_V1}.{}.{}.{}.{}",
            B64.encode(self.key_id.as_bytes()),
            B64.encode(&self.encrypted_data_key),
            B64.encode(self.nonce),
            B64.encode(&self.ciphertext)
        )
    }

    /// Parses the one-string form; never panics, whatever the input.
    pub fn decode(text: &str) -> Result<Self, EnvelopeError> {
        if text.len() > MAX_CIPHERTEXT_LEN {
            return Err(EnvelopeError::Malformed("longer than 1 MiB"));
        }
        let mut parts = text.split('.');
        if parts.next() != Some(FORMAT_V1) {
            return Err(EnvelopeError::UnknownVersion);
        }
        let mut field = |what: &'static str| -> Result<Vec<u8>, EnvelopeError> {
            let part = parts.next().ok_or(EnvelopeError::Malformed(what))?;
            B64.decode(part).map_err(|_| EnvelopeError::Malformed(what))
        };
        let key_id = String::from_utf8(field("key id is missing or not base64url")?)
            .map_err(|_| EnvelopeError::Malformed("key id is not UTF-8"))?;
        let encrypted_data_key = field("encrypted data key is missing or not base64url")?;
        let nonce = field("nonce is missing or not base64url")?;
        let ciphertext = field("ciphertext is missing or not base64url")?;
        if parts.next().is_some() {
            return Err(EnvelopeError::Malformed("has more than five fields"));
        }
        if key_id.is_empty() || key_id.len() > 2048 {
            return Err(EnvelopeError::Malformed("key id must be 1 to 2048 bytes"));
        }
        if encrypted_data_key.is_empty() || encrypted_data_key.len() > 6144 {
            return Err(EnvelopeError::Malformed(
                "encrypted data key must be 1 to 6144 bytes",
            ));
        }
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("nonce must be 12 bytes"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(EnvelopeError::Malformed(
                "ciphertext is shorter than its tag",
            ));
        }
        Ok(Sealed {
            key_id,
            encrypted_data_key,
            nonce,
            ciphertext,
        })
    }
}

/// AES-256-GCM seal with a fresh random nonce; the key is only borrowed.
pub fn seal_with_key(
    key: &SecretBytes,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
    let key =
        RandomizedNonceKey::new(&AES_256_GCM, key.expose()).map_err(|_| EnvelopeError::Cipher)?;
    // Room for the tag up front, so the buffer holding plaintext is never reallocated and copied.
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
        .map_err(|_| EnvelopeError::Cipher)?;
    Ok((*nonce.as_ref(), in_out))
}

/// AES-256-GCM open; the plaintext comes back in a zeroizing buffer.
pub fn open_with_key(
    key: &SecretBytes,
    aad: &[u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<SecretBytes, EnvelopeError> {
    let key =
        RandomizedNonceKey::new(&AES_256_GCM, key.expose()).map_err(|_| EnvelopeError::Cipher)?;
    let mut buf = SecretBytes::new(ciphertext.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            buf.expose_mut(),
        )
        .map_err(|_| EnvelopeError::Authentication)?
        .len();
    // Drop the tag; zeroize wipes the whole allocation on drop, spare capacity included.
    buf.expose_mut().truncate(len);
    Ok(buf)
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The key service (KMS in AWS) failed.
    #[error("KMS {operation} failed ({}): {detail}", if *.transient { "transient: retry later" } else { "permanent: check the key id, the key policy and the encryption context" })]
    KeyService {
        /// `GenerateDataKey`, `Decrypt`, `DescribeKey` or `ReEncrypt`.
        operation: &'static str,
        /// Whether retrying may help.
        transient: bool,
        /// The service's error code, if any.
        code: Option<String>,
        /// What the SDK said.
        detail: String,
    },
    /// The key service answered without a field it must send.
    #[error("KMS {0} answered without {1}")]
    KeyServiceContract(&'static str, &'static str),
    /// The string is not a ciphertext of a known version.
    #[error("ciphertext format version is not supported (expected `{FORMAT_V1}`)")]
    UnknownVersion,
    /// The AWS Encryption SDK could not run the call (a task of its runtime failed).
    #[error("the AWS Encryption SDK could not run: {0}")]
    Sdk(&'static str),
    /// The string is not well formed.
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
    /// The message names a KMS key that is neither the function's nor a listed retired one.
    #[error(
        "sealed under KMS key {0}, which is neither this function's key nor a listed retired key: refused before any KMS call (permanent: if it is a key of yours, list it in RETIRED_KMS_KEY_IDS)"
    )]
    ForeignKey(String),
    /// GCM refused: the ciphertext, its context or its data key do not match.
    #[error("ciphertext failed authentication: altered, or bound to another context or key")]
    Authentication,
    /// The local cipher could not run (never expected).
    #[error("AES-256-GCM is unavailable")]
    Cipher,
}

impl EnvelopeError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EnvelopeError::KeyService {
                transient: true,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretBytes {
        SecretBytes::new((0u8..32).collect())
    }

    #[test]
    fn aad_is_canonical_json_with_sorted_keys() {
        let ctx = EncryptionContext::backup_share("c1", "p1", Curve::Ed25519);
        assert_eq!(
            String::from_utf8(ctx.aad()).unwrap(),
            r#"{"backupSharePairId":"p1","clientId":"c1","curve":"ED25519"}"#
        );
    }

    #[test]
    fn seal_open_round_trip_and_nonces_differ() {
        let (n1, c1) = seal_with_key(&key(), b"aad", b"hello").unwrap();
        let (n2, c2) = seal_with_key(&key(), b"aad", b"hello").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 5 + TAG_LEN);
        assert_eq!(
            open_with_key(&key(), b"aad", n1, &c1).unwrap().expose(),
            b"hello"
        );
    }

    #[test]
    fn wrong_aad_or_flipped_byte_fails_authentication() {
        let (n, mut c) = seal_with_key(&key(), b"aad", b"hello").unwrap();
        assert!(matches!(
            open_with_key(&key(), b"other", n, &c),
            Err(EnvelopeError::Authentication)
        ));
        c[0] ^= 1;
        assert!(matches!(
            open_with_key(&key(), b"aad", n, &c),
            Err(EnvelopeError::Authentication)
        ));
    }

    #[test]
    fn format_round_trips_and_refuses_damage() {
        let s = Sealed {
            key_id: "arn:aws:kms:us-east-1:1:key/k".into(),
            encrypted_data_key: vec![1, 2, 3],
            nonce: [9; NONCE_LEN],
            ciphertext: vec![5; 20],
        };
        let text = s.encode();
        assert!(text.starts_with("pbe1."));
        assert_eq!(Sealed::decode(&text).unwrap(), s);
        assert!(matches!(
            Sealed::decode(&text.replacen("pbe1", "pbe2", 1)),
            Err(EnvelopeError::UnknownVersion)
        ));
        assert!(matches!(
            Sealed::decode(""),
            Err(EnvelopeError::UnknownVersion)
        ));
        for bad in [
            format!("{text}.x"),
            text.rsplit_once('.').unwrap().0.to_owned(),
            text.replace('.', ".!"),
            "pbe1.a.b.c.d".to_owned(),
        ] {
            assert!(
                matches!(Sealed::decode(&bad), Err(EnvelopeError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
