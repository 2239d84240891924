//! Adapter: the `pbe1` format over AWS KMS (one data key per secret), read-only in the function.
//!
//! The function seals with `EsdkEnvelope` (AWS Encryption SDK messages) and opens `pbe1`
//! strings, and re-wraps their data keys, through this adapter. Its `seal` remains for tests
//! and for the migration's fixtures: backups written before the ESDK format.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::domain::ciphertext::{EncryptionContext, Sealed, open_with_key, seal_with_key};
use crate::domain::secret::SecretBytes;
use crate::ports::envelope::{Envelope, EnvelopeError};
use crate::ports::rotation::Rewrapped;

/// The adapter: KMS data keys (aws-sdk-kms) and AES-256-GCM (aws-lc-rs).
#[derive(Clone, Debug)]
pub struct KmsEnvelope {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsEnvelope {
    /// Seals under `key_id` (id, ARN or alias); opens under the key named in each ciphertext.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

/// A KMS SDK error as an `EnvelopeError` (shared with key rotation).
pub(crate) fn kms_error<E>(
    operation: &'static str,
    err: &aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> EnvelopeError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    EnvelopeError::KeyService {
        operation,
        transient: crate::adapters::aws_error::is_transient(err),
        code: crate::adapters::aws_error::code(err).map(str::to_owned),
        detail: crate::adapters::aws_error::describe(err),
    }
}

impl KmsEnvelope {
    /// The SDK client (shared with key rotation).
    pub(crate) fn client(&self) -> &aws_sdk_kms::Client {
        &self.client
    }

    /// The configured key (id, ARN or alias) that seals new ciphertexts.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl Envelope for KmsEnvelope {
    async fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<String, EnvelopeError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.to_kms()))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", &e))?;
        // Move the key bytes out of the SDK's Blob without copying, into a zeroizing owner.
        let data_key = SecretBytes::new(
            out.plaintext
                .ok_or(EnvelopeError::KeyServiceContract(
                    "GenerateDataKey",
                    "a plaintext key",
                ))?
                .into_inner(),
        );
        let encrypted_data_key = out
            .ciphertext_blob
            .ok_or(EnvelopeError::KeyServiceContract(
                "GenerateDataKey",
                "an encrypted key",
            ))?
            .into_inner();
        let key_id = out.key_id.unwrap_or_else(|| self.key_id.clone());
        let (nonce, ciphertext) = seal_with_key(&data_key, &context.aad(), plaintext)?;
        drop(data_key);
        Ok(Sealed {
            key_id,
            encrypted_data_key,
            nonce,
            ciphertext,
        }
        .encode())
    }

    async fn open(
        &self,
        context: &EncryptionContext,
        ciphertext: &str,
    ) -> Result<SecretBytes, EnvelopeError> {
        let sealed = Sealed::decode(ciphertext)?;
        let out = self
            .client
            .decrypt()
            .key_id(&sealed.key_id)
            .ciphertext_blob(Blob::new(sealed.encrypted_data_key))
            .set_encryption_context(Some(context.to_kms()))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", &e))?;
        let data_key = SecretBytes::new(
            out.plaintext
                .ok_or(EnvelopeError::KeyServiceContract(
                    "Decrypt",
                    "a plaintext key",
                ))?
                .into_inner(),
        );
        open_with_key(&data_key, &context.aad(), sealed.nonce, &sealed.ciphertext)
    }
}

impl KmsEnvelope {
    /// The configured key resolved to its ARN; an error if it is not enabled.
    pub async fn current_key(&self) -> Result<String, EnvelopeError> {
        let out = self
            .client()
            .describe_key()
            .key_id(self.key_id())
            .send()
            .await
            .map_err(|e| kms_error("DescribeKey", &e))?;
        let meta = out.key_metadata.ok_or(EnvelopeError::KeyServiceContract(
            "DescribeKey",
            "key metadata",
        ))?;
        let arn = meta
            .arn()
            .ok_or(EnvelopeError::KeyServiceContract(
                "DescribeKey",
                "a key ARN",
            ))?
            .to_owned();
        if !meta.enabled() {
            return Err(EnvelopeError::KeyService {
                operation: "DescribeKey",
                transient: false,
                code: Some("KeyNotEnabled".into()),
                detail: format!(
                    "the current key {arn} is not enabled: nothing can be re-wrapped into it"
                ),
            });
        }
        Ok(arn)
    }

    /// Re-wraps a `pbe1` data key into `destination` (KMS `ReEncrypt`, same context both sides).
    pub async fn rewrap(
        &self,
        sealed: &Sealed,
        context: &EncryptionContext,
        destination: &str,
    ) -> Result<Rewrapped, EnvelopeError> {
        let out = self
            .client()
            .re_encrypt()
            .ciphertext_blob(Blob::new(sealed.encrypted_data_key.clone()))
            .source_key_id(&sealed.key_id)
            .set_source_encryption_context(Some(context.to_kms()))
            .destination_key_id(destination)
            .set_destination_encryption_context(Some(context.to_kms()))
            .send()
            .await
            .map_err(|e| kms_error("ReEncrypt", &e))?;
        Ok(Rewrapped {
            key_id: out.key_id.unwrap_or_else(|| destination.to_owned()),
            encrypted_data_key: out
                .ciphertext_blob
                .ok_or(EnvelopeError::KeyServiceContract(
                    "ReEncrypt",
                    "a ciphertext",
                ))?
                .into_inner(),
        })
    }
}
