//! Self-managed storage: one DynamoDB item per backup share pair.
//!
//! Table keys: `pk` = `CLIENT#<clientId>`, `sk` = `SHARE#<backupSharePairId>`, so a Query on `pk`
//! lists every backup of a client. Attributes: `clientId`, `backupSharePairId`, `curve`,
//! `signingSharePairId`, `cipherText`, `createdAt` (epoch seconds).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};

use crate::model::Curve;

/// One stored client backup share (its ciphertext; never plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredShare {
    /// Portal client id.
    pub client_id: String,
    /// Backup share pair id (Portal's, from `/v1/backup`).
    pub backup_share_pair_id: String,
    /// The curve.
    pub curve: Curve,
    /// The signing share pair this backup belongs to.
    pub signing_share_pair_id: String,
    /// The envelope ciphertext (see `envelope`).
    pub cipher_text: String,
    /// When it was stored, in seconds since the Unix epoch.
    pub created_at: u64,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused or could not be reached.
    #[error("DynamoDB {operation} failed ({}): {detail}", if *.transient { "transient: retry later" } else { "permanent: check the table name, its key schema and the function's permissions" })]
    Dynamo {
        /// The API operation.
        operation: &'static str,
        /// Whether retrying may help.
        transient: bool,
        /// What the SDK said.
        detail: String,
    },
    /// A different ciphertext is already stored for this pair; it is never overwritten.
    #[error(
        "a different ciphertext is already stored for backup share pair {0}; refusing to overwrite it"
    )]
    Conflict(String),
    /// Another delivery took over this backup's lease.
    #[error("lost the lease on backup {0} to another delivery (transient: retried later)")]
    LeaseLost(String),
    /// An item in the table is not of the shape this function writes.
    #[error("stored item for backup share pair {0} is malformed: {1}")]
    Corrupt(String, &'static str),
}

impl StoreError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Dynamo {
                transient: true,
                ..
            }
        )
    }
}

/// Durable storage of ciphertexts for self-managed backups.
pub trait BackupStore: Send + Sync {
    /// Stores a share; storing the same ciphertext again succeeds, a different one is a conflict.
    fn put(&self, share: &StoredShare) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a share's ciphertext back with a strongly consistent read.
    fn cipher_text(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Reads both shares' ciphertexts of a backup back in one strongly consistent round trip.
    fn cipher_texts(
        &self,
        client_id: &str,
        backup_share_pair_ids: [&str; 2],
    ) -> impl Future<Output = Result<[Option<String>; 2], StoreError>> + Send;
}

/// The adapter over aws-sdk-dynamodb.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    /// Uses `table`, which must have string keys `pk` (hash) and `sk` (range).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl DynamoStore {
    /// The SDK client (shared with the checkpoint store).
    pub(crate) fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// The table name.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }
}

/// The key of an item: `pk` and `sk`.
pub(crate) fn item_key(
    pk: String,
    sk: String,
) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

/// Partition key of a client's items.
pub fn client_pk(client_id: &str) -> String {
    format!("CLIENT#{client_id}")
}

/// Sort key of a share item.
pub fn share_sk(backup_share_pair_id: &str) -> String {
    format!("SHARE#{backup_share_pair_id}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A share's item: its key and attributes.
pub(crate) fn share_item(share: &StoredShare) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(&client_pk(&share.client_id))),
        ("sk".to_owned(), s(&share_sk(&share.backup_share_pair_id))),
        ("clientId".to_owned(), s(&share.client_id)),
        (
            "backupSharePairId".to_owned(),
            s(&share.backup_share_pair_id),
        ),
        ("curve".to_owned(), s(share.curve.as_str())),
        (
            "signingSharePairId".to_owned(),
            s(&share.signing_share_pair_id),
        ),
        ("cipherText".to_owned(), s(&share.cipher_text)),
        (
            "createdAt".to_owned(),
            AttributeValue::N(share.created_at.to_string()),
        ),
    ])
}

/// The condition of every share write: a new item, or a retry writing the very same ciphertext.
/// A different ciphertext is never replaced.
pub(crate) const SHARE_WRITE_CONDITION: &str = "attribute_not_exists(pk) OR cipherText = :ct";

/// The `cipherText` of a share item read back.
fn item_cipher_text(
    item: &HashMap<String, AttributeValue>,
    backup_share_pair_id: &str,
) -> Result<String, StoreError> {
    match item.get("cipherText") {
        Some(AttributeValue::S(ct)) => Ok(ct.clone()),
        _ => Err(StoreError::Corrupt(
            backup_share_pair_id.to_owned(),
            "cipherText is missing or not a string",
        )),
    }
}

/// Rounds of `UnprocessedKeys` a pair read follows before it reports a transient failure.
const BATCH_GET_ROUNDS: usize = 4;

/// A DynamoDB SDK error as a `StoreError` (shared with the checkpoint store).
pub(crate) fn dynamo_error<E>(
    operation: &'static str,
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError::Dynamo {
        operation,
        transient: crate::aws::is_transient(err),
        detail: crate::aws::describe(err),
    }
}

impl BackupStore for DynamoStore {
    async fn put(&self, share: &StoredShare) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(share_item(share)))
            .condition_expression(SHARE_WRITE_CONDITION)
            .expression_attribute_values(":ct", s(&share.cipher_text))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::Conflict(share.backup_share_pair_id.clone()))
            }
            Err(e) => Err(dynamo_error("PutItem", &e)),
        }
    }

    async fn cipher_text(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                client_pk(client_id),
                share_sk(backup_share_pair_id),
            )))
            .projection_expression("cipherText")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", &e))?;
        out.item
            .map(|item| item_cipher_text(&item, backup_share_pair_id))
            .transpose()
    }

    async fn cipher_texts(
        &self,
        client_id: &str,
        backup_share_pair_ids: [&str; 2],
    ) -> Result<[Option<String>; 2], StoreError> {
        let pk = client_pk(client_id);
        let sks = backup_share_pair_ids.map(share_sk);
        let keys: Vec<_> = sks
            .iter()
            .map(|sk| item_key(pk.clone(), sk.clone()))
            .collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("sk, cipherText")
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Dynamo {
                    operation: "BatchGetItem",
                    transient: false,
                    detail: e.to_string(),
                })?,
        );
        let mut found: [Option<String>; 2] = [None, None];
        for round in 0..BATCH_GET_ROUNDS {
            let Some(request) = pending.take() else {
                return Ok(found);
            };
            if round > 0 {
                // Keys come back unprocessed under throttling: back off before asking again.
                tokio::time::sleep(Duration::from_millis(25 << round)).await;
            }
            let mut out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| dynamo_error("BatchGetItem", &e))?;
            for item in out
                .responses
                .as_mut()
                .and_then(|r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let sk = item.get("sk").and_then(|v| v.as_s().ok());
                if let Some(i) = sks.iter().position(|want| sk == Some(want)) {
                    found[i] = Some(item_cipher_text(&item, backup_share_pair_ids[i])?);
                }
            }
            // Keys DynamoDB did not get to (throttling, size): ask again for just those.
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty());
        }
        match pending {
            None => Ok(found),
            Some(_) => Err(StoreError::Dynamo {
                operation: "BatchGetItem",
                transient: true,
                detail: format!("keys still unprocessed after {BATCH_GET_ROUNDS} rounds"),
            }),
        }
    }
}
