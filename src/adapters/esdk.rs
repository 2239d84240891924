//! Adapter: the `Envelope` and `Rewrap` ports over the AWS Encryption SDK (crate `aws-esdk`).
//!
//! Every secret is sealed as an ESDK message: a KMS data key from the multi-Region-aware KMS
//! keyring, the committing suite without signature (`AES_256_GCM_HKDF_SHA512_COMMIT_KEY`),
//! commitment policy `RequireEncryptRequireDecrypt`, and the encryption context stored in the
//! header (so `aws-encryption-cli` can open a backup by hand). A message is opened through the
//! required-encryption-context CMM with the context rebuilt from the item: a missing key or a
//! different value fails. `pbe1` strings, the project's first format, still open through
//! `KmsEnvelope`.
//!
//! The crate is synchronous under its async API: on the function's one-thread runtime each KMS
//! call would run on a fresh thread and runtime, block the runtime, never reuse a connection,
//! and could hang on a kept-alive connection of the main runtime (docs/choices.md). So every
//! KMS call of this adapter, ESDK or not, runs on a small pool of threads under a runtime of its
//! own, both built once per process (`kms_threads`); its connections never cross runtimes.
//! Keyrings and CMMs are built per call (about 25 µs, no KMS call): a shared one holds a lock
//! across the KMS round trip.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use aws_esdk::material_providers::client::Client as MplClient;
use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
use aws_esdk::material_providers::types::{EsdkAlgorithmSuiteId, EsdkCommitmentPolicy};
use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;

use crate::adapters::kms::KmsEnvelope;
use crate::adapters::kms_threads::KmsThreads;
use crate::domain::allowed_keys::{AllowedKeys, KeyVerdict};
use crate::domain::ciphertext::{EncryptionContext, Format, Sealed};
use crate::domain::esdk_message::{
    SUITE_COMMIT_KEY, arn_in_region, decode_text, encode_text, read_header,
};
use crate::domain::secret::SecretBytes;
use crate::ports::envelope::{Envelope, EnvelopeError};
use crate::ports::rotation::{Rewrap, Rewrapped};

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EsdkSetupError {
    /// The runtime for KMS calls could not start (threads unavailable).
    #[error("could not start the runtime for KMS calls: {0}")]
    Runtime(#[from] std::io::Error),
    /// The AWS Encryption SDK refused its configuration (never expected).
    #[error("could not configure the AWS Encryption SDK: {0}")]
    Config(String),
}

/// The adapter. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct EsdkEnvelope {
    esdk: aws_esdk::Client,
    mpl: MplClient,
    kms: aws_sdk_kms::Client,
    /// The key new messages are sealed under (id, ARN or alias; an ARN in every deployment).
    key_id: String,
    /// The region the KMS client calls: a multi-Region key is opened with its replica here.
    region: String,
    /// Opens `pbe1` strings and re-wraps their data keys.
    legacy: KmsEnvelope,
    side: KmsThreads,
    /// The keys a message may be opened under; any other is refused before a KMS call.
    allowed: Arc<AllowedKeys>,
    /// The current key's ARN, when it is configured as an alias (resolved once, by KMS).
    resolved: Arc<tokio::sync::OnceCell<String>>,
}

impl fmt::Debug for EsdkEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsdkEnvelope")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl EsdkEnvelope {
    /// Seals under `key_id`; opens a message under the key named in its header (in this region).
    /// Built once per process, at cold start.
    pub fn new(
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
    ) -> Result<Self, EsdkSetupError> {
        let config = |e: &dyn fmt::Debug| EsdkSetupError::Config(format!("{e:?}"));
        let esdk = aws_esdk::Client::from_conf(
            AwsEncryptionSdkConfig::builder()
                .commitment_policy(EsdkCommitmentPolicy::RequireEncryptRequireDecrypt)
                // Every message of this function has one data key; more is not ours.
                .max_encrypted_data_keys(1)
                .build()
                .map_err(|e| config(&e))?,
        )
        .map_err(|e| config(&e))?;
        let mpl = MplClient::from_conf(
            MaterialProvidersConfig::builder()
                .build()
                .map_err(|e| config(&e))?,
        )
        .map_err(|e| config(&e))?;
        let key_id = key_id.into();
        let region = kms
            .config()
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_default();
        Ok(Self {
            esdk,
            mpl,
            legacy: KmsEnvelope::new(kms.clone(), key_id.clone()),
            kms,
            allowed: Arc::new(AllowedKeys::new(key_id.clone(), Vec::new())),
            resolved: Arc::default(),
            key_id,
            region,
            side: KmsThreads::get()?,
        })
    }

    /// Also opens messages under these retired keys (ARNs or key ids), until rotation has moved
    /// every backup off them.
    pub fn with_retired_keys(mut self, retired: Vec<String>) -> Self {
        self.allowed = Arc::new(AllowedKeys::new(self.key_id.clone(), retired));
        self
    }

    /// Refuses a message under a key that is not one of the allowed ones, before it reaches KMS.
    async fn check_key(&self, arn: &str) -> Result<(), EnvelopeError> {
        let admitted = match self.allowed.verdict(arn) {
            KeyVerdict::Admitted => true,
            KeyVerdict::Refused => false,
            KeyVerdict::ResolveAlias => {
                let legacy = self.legacy.clone();
                let resolved = self
                    .resolved
                    .get_or_try_init(|| self.on_side(async move { legacy.current_key().await }))
                    .await?;
                AllowedKeys::resolved_current_names(resolved, arn)
            }
        };
        if admitted {
            Ok(())
        } else {
            tracing::warn!(kms_key = %arn, "refused a message under a key that is not this function's");
            Err(EnvelopeError::ForeignKey(arn.to_owned()))
        }
    }

    /// Runs `fut` on the KMS runtime and waits for it.
    async fn on_side<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, EnvelopeError>> + Send + 'static,
    ) -> Result<T, EnvelopeError> {
        // On a thread of the KMS pool, with the KMS runtime entered: aws-esdk's blocking calls
        // never stop this runtime (src/adapters/kms_threads.rs). The caller's span goes along,
        // so the KMS calls are traced under the step.
        let fut = tracing::Instrument::in_current_span(fut);
        self.side
            .run(fut)
            .await
            .map_err(|_| EnvelopeError::Sdk("its thread stopped"))?
    }

    /// Opens an ESDK message (standard base64) under `context`.
    async fn open_message(
        &self,
        context: &EncryptionContext,
        text: &str,
    ) -> Result<SecretBytes, EnvelopeError> {
        let message = decode_text(text)?;
        let header = read_header(&message)?;
        if header.suite != SUITE_COMMIT_KEY {
            return Err(EnvelopeError::Malformed(
                "not sealed with AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
            ));
        }
        self.check_key(header.kms_key_arn()?).await?;
        let arn = arn_in_region(header.kms_key_arn()?, &self.region);
        let (esdk, mpl, kms) = (self.esdk.clone(), self.mpl.clone(), self.kms.clone());
        let (ctx, required) = (context.to_kms(), context.keys());
        let expected = ctx.clone();
        self.on_side(async move {
            let keyring = mpl
                .create_aws_kms_mrk_keyring()
                .kms_key_id(arn)
                .kms_client(kms)
                .send()
                .await
                .map_err(|e| esdk_error("Decrypt", &e))?;
            let underlying = mpl
                .create_default_cryptographic_materials_manager()
                .keyring(keyring)
                .send()
                .await
                .map_err(|e| esdk_error("Decrypt", &e))?;
            let cmm = mpl
                .create_required_encryption_context_cmm()
                .underlying_cmm(underlying)
                .required_encryption_context_keys(required)
                .send()
                .await
                .map_err(|e| esdk_error("Decrypt", &e))?;
            let out = esdk
                .decrypt()
                .ciphertext(message)
                .materials_manager(cmm)
                .encryption_context(ctx)
                .send()
                .await
                .map_err(|e| esdk_error("Decrypt", &e))?;
            let plaintext = out
                .plaintext
                .ok_or(EnvelopeError::KeyServiceContract("Decrypt", "a plaintext"))?;
            let opened = SecretBytes::new(plaintext.into_inner());
            // The required-context CMM lets a message carry keys beyond the ones required; a
            // message of this function carries exactly its context, nothing more.
            if out.encryption_context.as_ref() != Some(&expected) {
                return Err(EnvelopeError::Authentication);
            }
            Ok(opened)
        })
        .await
    }
}

impl Envelope for EsdkEnvelope {
    async fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<String, EnvelopeError> {
        let (esdk, mpl, kms) = (self.esdk.clone(), self.mpl.clone(), self.kms.clone());
        let (key, ctx) = (self.key_id.clone(), context.to_kms());
        // The SDK takes its plaintext by value and drops its copies unwiped (docs/security.md).
        let plaintext = plaintext.to_vec();
        let message = self
            .on_side(async move {
                let keyring = mpl
                    .create_aws_kms_mrk_keyring()
                    .kms_key_id(key)
                    .kms_client(kms)
                    .send()
                    .await
                    .map_err(|e| esdk_error("Encrypt", &e))?;
                let out = esdk
                    .encrypt()
                    .plaintext(plaintext)
                    .keyring(keyring)
                    .encryption_context(ctx)
                    .algorithm_suite_id(EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey)
                    .send()
                    .await
                    .map_err(|e| esdk_error("Encrypt", &e))?;
                out.ciphertext
                    .map(|b| b.into_inner())
                    .ok_or(EnvelopeError::KeyServiceContract("Encrypt", "a message"))
            })
            .await?;
        Ok(encode_text(&message))
    }

    async fn open(
        &self,
        context: &EncryptionContext,
        ciphertext: &str,
    ) -> Result<SecretBytes, EnvelopeError> {
        match Format::of(ciphertext) {
            Format::Esdk => self.open_message(context, ciphertext).await,
            Format::Pbe1 => {
                self.check_key(&Sealed::decode(ciphertext)?.key_id).await?;
                let (legacy, ctx, text) =
                    (self.legacy.clone(), context.clone(), ciphertext.to_owned());
                self.on_side(async move { legacy.open(&ctx, &text).await })
                    .await
            }
        }
    }
}

impl Rewrap for EsdkEnvelope {
    async fn current_key(&self) -> Result<String, EnvelopeError> {
        let legacy = self.legacy.clone();
        self.on_side(async move { legacy.current_key().await })
            .await
    }

    async fn rewrap(
        &self,
        sealed: &Sealed,
        context: &EncryptionContext,
        destination: &str,
    ) -> Result<Rewrapped, EnvelopeError> {
        let legacy = self.legacy.clone();
        let (sealed, ctx, dest) = (
            Sealed {
                key_id: sealed.key_id.clone(),
                encrypted_data_key: sealed.encrypted_data_key.clone(),
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext.clone(),
            },
            context.clone(),
            destination.to_owned(),
        );
        self.on_side(async move { legacy.rewrap(&sealed, &ctx, &dest).await })
            .await
    }

    async fn reseal(
        &self,
        context: &EncryptionContext,
        old: &str,
    ) -> Result<String, EnvelopeError> {
        let plaintext = self.open(context, old).await?;
        self.seal(context, plaintext.expose()).await
    }

    async fn proves(&self, context: &EncryptionContext, new: &str) -> Result<(), EnvelopeError> {
        // The plaintext is wiped as it drops.
        self.open(context, new).await.map(drop)
    }
}

/// KMS error names that retrying may fix (throttling, KMS or the network unavailable).
const TRANSIENT: [&str; 12] = [
    "ThrottlingException",
    "KMSInternalException",
    "KmsInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalFailure",
    "DispatchFailure",
    "TimeoutError",
    "ConnectorError",
    "ResponseError",
];

/// KMS error names that retrying will not fix.
const PERMANENT: [&str; 9] = [
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "NotFoundException",
    "DisabledException",
    "AccessDeniedException",
    "KMSInvalidStateException",
    "KmsInvalidStateException",
    "InvalidKeyUsageException",
    "UnrecognizedClientException",
];

/// An ESDK or MPL error as an `EnvelopeError`. The crate empties KMS error codes and turns
/// transport errors into text, so the class is read from the error's names. Only names from the
/// lists above reach the error: the SDK's own text can quote a response body.
fn esdk_error(operation: &'static str, err: &dyn fmt::Debug) -> EnvelopeError {
    let text = format!("{err:?}");
    if text.starts_with("AwsCryptographicPrimitivesError") {
        // The body or the header failed authentication: altered, or another data key.
        return EnvelopeError::Authentication;
    }
    if let Some(code) = TRANSIENT.iter().find(|c| text.contains(*c)) {
        return EnvelopeError::KeyService {
            operation,
            transient: true,
            code: Some((*code).to_owned()),
            detail: "KMS was unreachable, throttled or failing; the SDK already retried".into(),
        };
    }
    if let Some(code) = PERMANENT.iter().find(|c| text.contains(*c)) {
        return EnvelopeError::KeyService {
            operation,
            transient: false,
            code: Some((*code).to_owned()),
            detail: "KMS refused the key or the ciphertext".into(),
        };
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("encryption context") {
        // The required-context CMM refused before asking KMS: a key missing or a value changed.
        return EnvelopeError::Authentication;
    }
    // The ESDK's own exceptions are about the message: cut short, a bad header, a policy.
    if text.starts_with("AwsEncryptionSdkException")
        || lower.contains("incomplete message")
        || lower.contains("commitment")
        || lower.contains("header")
        || lower.contains("deserializ")
    {
        return EnvelopeError::Malformed("the AWS Encryption SDK could not read the message");
    }
    EnvelopeError::KeyService {
        operation,
        transient: false,
        code: None,
        detail: "the AWS Encryption SDK refused the call".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Fake {
        AwsCryptographicPrimitivesError { message: String },
        OpaqueWithText { obj_message: String },
        AwsCryptographicMaterialProvidersException { message: String },
        AwsEncryptionSdkException { message: String },
    }

    #[test]
    fn errors_are_classified_and_never_quote_the_sdk() {
        let tamper = Fake::AwsCryptographicPrimitivesError {
            message: "AES Decrypt : gather Unspecified".into(),
        };
        assert!(matches!(
            esdk_error("Decrypt", &tamper),
            EnvelopeError::Authentication
        ));
        let down = Fake::OpaqueWithText {
            obj_message: "DispatchFailure(ConnectionRefused) body=SECRET".into(),
        };
        let e = esdk_error("Encrypt", &down);
        assert!(e.is_transient());
        assert!(!e.to_string().contains("SECRET"));
        let refused = Fake::OpaqueWithText {
            obj_message: "InvalidCiphertextException".into(),
        };
        assert!(!esdk_error("Decrypt", &refused).is_transient());
        let context = Fake::AwsCryptographicMaterialProvidersException {
            message: "Reproduced encryption context missing required keys.".into(),
        };
        assert!(matches!(
            esdk_error("Decrypt", &context),
            EnvelopeError::Authentication
        ));
        let cut = Fake::AwsEncryptionSdkException {
            message: "Incomplete message: ReadFramedMessageBody".into(),
        };
        assert!(matches!(
            esdk_error("Decrypt", &cut),
            EnvelopeError::Malformed(_)
        ));
    }
}
