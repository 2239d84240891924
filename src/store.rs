//! Self-managed storage: one DynamoDB item per backup share pair.
//!
//! Table keys: `pk` = `CLIENT#<clientId>`, `sk` = `SHARE#<backupSharePairId>`, so a Query on `pk`
//! lists every backup of a client. Attributes: `clientId`, `backupSharePairId`, `curve`,
//! `signingSharePairId`, `cipherText`, `createdAt` (epoch seconds).

use std::future::Future;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

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
            .item("pk", s(&client_pk(&share.client_id)))
            .item("sk", s(&share_sk(&share.backup_share_pair_id)))
            .item("clientId", s(&share.client_id))
            .item("backupSharePairId", s(&share.backup_share_pair_id))
            .item("curve", s(share.curve.as_str()))
            .item("signingSharePairId", s(&share.signing_share_pair_id))
            .item("cipherText", s(&share.cipher_text))
            .item("createdAt", AttributeValue::N(share.created_at.to_string()))
            // New item, or a retry writing the very same ciphertext: never replace a different one.
            .condition_expression("attribute_not_exists(pk) OR cipherText = :ct")
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
        let Some(item) = out.item else {
            return Ok(None);
        };
        match item.get("cipherText") {
            Some(AttributeValue::S(ct)) => Ok(Some(ct.clone())),
            _ => Err(StoreError::Corrupt(
                backup_share_pair_id.to_owned(),
                "cipherText is missing or not a string",
            )),
        }
    }
}
