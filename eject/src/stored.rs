//! Stored halves: the AWS Encryption SDK messages the backup and custody functions wrote, read
//! from a file or from their table, and opened with the caller's own AWS credentials (a profile
//! per half, so two people may each open their own) under the half's exact encryption context:
//! the client half `{clientId, backupSharePairId, curve}`, the custodian half `{clientId,
//! backupSharePairId, purpose: custodian-backup-share}`. KMS decides who may open which.

use aws_sdk_dynamodb::types::AttributeValue;
use portal_backup::adapters::esdk::EsdkEnvelope;
use portal_backup::domain::ciphertext::EncryptionContext;
use portal_backup::domain::esdk_message::{encode_text, read_header};
use portal_backup::domain::model::Curve as BackupCurve;
use portal_backup::ports::envelope::Envelope;
use portal_shares::curve::Curve;
use portal_shares::share::Role;
use zeroize::Zeroizing;

use crate::input::InputError;

/// Which backup a stored half belongs to, and whose credentials open it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Portal's client id (`--client-id`).
    pub client_id: Option<String>,
    /// The backup share pair id (`--backup-share-pair-id`).
    pub backup_share_pair_id: Option<String>,
    /// The AWS profile that opens the client half (`--client-profile`; unset: the environment's).
    pub client_profile: Option<String>,
    /// The AWS profile that opens the custodian half (`--custodian-profile`).
    pub custodian_profile: Option<String>,
    /// The AWS region (`--region`; unset: the profile's or the environment's).
    pub region: Option<String>,
}

impl Stored {
    fn ids(&self, role: Role) -> Result<(&str, &str), InputError> {
        match (&self.client_id, &self.backup_share_pair_id) {
            (Some(c), Some(p)) => Ok((c, p)),
            _ => Err(InputError::NeedsIds(role)),
        }
    }

    fn profile(&self, role: Role) -> Option<&str> {
        match role {
            Role::Client => self.client_profile.as_deref(),
            Role::Custodian => self.custodian_profile.as_deref(),
        }
    }

    /// The AWS configuration `role`'s half is opened with.
    async fn sdk(&self, role: Role) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = self.profile(role) {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        loader.load().await
    }

    fn context(&self, role: Role, curve: Curve) -> Result<EncryptionContext, InputError> {
        let (client, pair) = self.ids(role)?;
        Ok(match role {
            Role::Client => {
                let curve = match curve {
                    Curve::Secp256k1 => BackupCurve::Secp256k1,
                    Curve::Ed25519 => BackupCurve::Ed25519,
                };
                EncryptionContext::backup_share(client, pair, curve)
            }
            Role::Custodian => EncryptionContext::custodian_share(client, pair),
        })
    }
}

fn runtime(role: Role) -> Result<tokio::runtime::Runtime, InputError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InputError::Aws {
            role,
            reason: format!("cannot start the AWS client: {}", e.kind()),
        })
}

/// Opens a stored message under `role`'s exact context with `role`'s credentials.
pub fn open(
    role: Role,
    curve: Curve,
    message: &[u8],
    stored: &Stored,
) -> Result<Zeroizing<Vec<u8>>, InputError> {
    let context = stored.context(role, curve)?;
    open_under(role, message, &context, stored)
}

fn open_under(
    role: Role,
    message: &[u8],
    context: &EncryptionContext,
    stored: &Stored,
) -> Result<Zeroizing<Vec<u8>>, InputError> {
    let header = read_header(message).map_err(|e| InputError::Aws {
        role,
        reason: format!("not a message this project wrote: {e}"),
    })?;
    let key = header
        .kms_key_arn()
        .map_err(|e| InputError::Aws {
            role,
            reason: e.to_string(),
        })?
        .to_owned();
    let text = encode_text(message);
    runtime(role)?.block_on(async {
        let sdk = stored.sdk(role).await;
        // The message names its key; KMS's policy on it decides whether these credentials open it.
        let envelope = EsdkEnvelope::new(aws_sdk_kms::Client::new(&sdk), key).map_err(|e| {
            InputError::Aws {
                role,
                reason: e.to_string(),
            }
        })?;
        let opened = envelope
            .open(context, &text)
            .await
            .map_err(|e| InputError::Aws {
                role,
                reason: format!("KMS did not open it under its context: {e}"),
            })?;
        Ok(Zeroizing::new(opened.expose().to_vec()))
    })
}

/// Opens `role`'s half from the operator function's answer to a Portal-managed `eject`: the
/// client half is the cipher text this stack stored with Portal (its context from the answer's
/// `clientId`, `backupSharePairId` and `curve`), the custodian half is sealed under
/// `{clientId, walletId, purpose: eject-share}`.
pub fn from_answer(
    role: Role,
    curve: Curve,
    path: &std::path::Path,
    stored: &Stored,
) -> Result<Zeroizing<Vec<u8>>, InputError> {
    let bad = |reason: String| InputError::Aws { role, reason };
    let text = std::fs::read(path).map_err(|e| InputError::Read {
        role,
        path: path.display().to_string(),
        reason: e.kind(),
    })?;
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|_| {
        bad(format!(
            "{} is not the eject action's JSON answer",
            path.display()
        ))
    })?;
    let field = |name: &str| {
        doc.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("the eject answer lacks `{name}`")))
    };
    if let Some(named) = doc.get("curve").and_then(serde_json::Value::as_str)
        && Curve::parse(named) != Some(curve)
    {
        return Err(bad(format!("the eject answer is for {named}, not {curve}")));
    }
    let client_id = field("clientId")?;
    let (context, sealed) = match role {
        Role::Client => {
            let ids = Stored {
                client_id: Some(client_id),
                backup_share_pair_id: Some(field("backupSharePairId")?),
                ..stored.clone()
            };
            (
                ids.context(role, curve)?,
                field("encryptedClientBackupShare")?,
            )
        }
        Role::Custodian => (
            EncryptionContext::eject_share(&client_id, &field("walletId")?),
            field("sealedCustodianBackupShare")?,
        ),
    };
    let message = portal_backup::domain::esdk_message::decode_text(&sealed)
        .map_err(|e| bad(format!("not a sealed half: {e}")))?;
    open_under(role, &message, &context, stored)
}

/// Reads `role`'s stored message from its table: the backup table's `SHARE#<pair>` item for the
/// client half, the custody table's `CUSTODIAN#<pair>` item for the custodian half.
pub fn fetch(role: Role, table: &str, stored: &Stored) -> Result<Vec<u8>, InputError> {
    let (client, pair) = stored.ids(role)?;
    let sk = match role {
        Role::Client => format!("SHARE#{pair}"),
        Role::Custodian => format!("CUSTODIAN#{pair}"),
    };
    let aws = |reason: String| InputError::Aws { role, reason };
    runtime(role)?.block_on(async {
        let sdk = stored.sdk(role).await;
        let out = aws_sdk_dynamodb::Client::new(&sdk)
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(format!("CLIENT#{client}")))
            .key("sk", AttributeValue::S(sk))
            .projection_expression("cipherText")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                aws(format!(
                    "cannot read table {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ))
            })?;
        match out.item.as_ref().and_then(|i| i.get("cipherText")) {
            Some(AttributeValue::B(blob)) => Ok(blob.clone().into_inner()),
            Some(AttributeValue::S(_)) => Err(aws(
                "the stored half is a pbe1 ciphertext: rotate the table first (operator action rotate), then eject".into(),
            )),
            _ => Err(InputError::NotInTable {
                role,
                table: table.to_owned(),
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_needs_the_ids_of_its_context() {
        let message = [0x02, 0x04, 0x78, 0, 0, 0];
        let err = open(Role::Client, Curve::Secp256k1, &message, &Stored::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "client backup share: a stored half opens only under its exact context: give \
             --client-id and --backup-share-pair-id"
        );
    }
}
