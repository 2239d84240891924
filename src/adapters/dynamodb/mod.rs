//! Adapters over DynamoDB: one `DynamoStore` (client and table) implements each storage port,
//! one file per what it stores.

pub(crate) mod catalogue;
pub(crate) mod checkpoints;
pub(crate) mod custodian;
pub(crate) mod custody_drill;
pub(crate) mod drill;
pub mod rate_limit;
pub(crate) mod recoveries;
pub(crate) mod rotation;
pub(crate) mod shares;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::ciphertext::Format;
use crate::domain::esdk_message::{decode_text, encode_text};
use crate::ports::store::StoreError;

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

/// A ciphertext as it is stored: an AWS Encryption SDK message as its bytes (a binary
/// attribute), a `pbe1` string as a string. Conditions that compare ciphertexts use this too, so
/// equal texts are equal attributes.
pub(crate) fn sealed_value(text: &str) -> AttributeValue {
    match Format::of(text) {
        Format::Esdk => match decode_text(text) {
            Ok(message) => AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(message)),
            // Not base64: kept as written, so it fails where it is opened, by name.
            Err(_) => s(text),
        },
        Format::Pbe1 => s(text),
    }
}

/// A stored ciphertext in its text form (standard base64 for an ESDK message).
pub(crate) fn sealed_text(value: &AttributeValue) -> Option<String> {
    match value {
        AttributeValue::S(text) => Some(text.clone()),
        AttributeValue::B(message) => Some(encode_text(message.as_ref())),
        _ => None,
    }
}

/// Why each item of a cancelled `TransactWriteItems` was cancelled, by its index in the request
/// (`ConditionalCheckFailed`, `TransactionConflict`, …; `None` for an item that was not the cause);
/// empty when the call failed otherwise.
pub(crate) struct Cancellation(Vec<Option<String>>);

impl Cancellation {
    /// Reads the reasons out of a `TransactWriteItems` error.
    pub(crate) fn of(
        err: &SdkError<
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    ) -> Self {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        Self(match err {
            SdkError::ServiceError(se) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }

    /// Whether item `i`'s condition failed.
    pub(crate) fn condition_failed(&self, i: usize) -> bool {
        self.0.get(i).and_then(Option::as_deref) == Some("ConditionalCheckFailed")
    }

    /// Whether any item was cancelled for `code`.
    pub(crate) fn any(&self, code: impl Fn(&str) -> bool) -> bool {
        self.0.iter().flatten().any(|c| code(c))
    }
}

/// A DynamoDB SDK error as a `StoreError` (shared with the checkpoint store).
pub(crate) fn dynamo_error<E>(
    operation: &'static str,
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError::Backend {
        operation,
        transient: crate::adapters::aws_error::is_transient(err),
        detail: crate::adapters::aws_error::describe(err),
    }
}
