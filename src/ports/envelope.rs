//! Port: sealing and opening a secret under an encryption context.

use std::future::Future;

use crate::domain::ciphertext::EncryptionContext;
use crate::domain::secret::SecretBytes;

pub use crate::domain::ciphertext::EnvelopeError;

/// Seals and opens secrets under a context.
pub trait Envelope: Send + Sync {
    /// Encrypts `plaintext` under a fresh data key, bound to `context`.
    fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> impl Future<Output = Result<String, EnvelopeError>> + Send;

    /// Decrypts a string made by `seal` with the same context.
    fn open(
        &self,
        context: &EncryptionContext,
        ciphertext: &str,
    ) -> impl Future<Output = Result<SecretBytes, EnvelopeError>> + Send;
}
