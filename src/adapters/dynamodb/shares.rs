//! Client backup shares in the table: one item per backup share pair.
//!
//! Table keys: `pk` = `CLIENT#<clientId>`, `sk` = `SHARE#<backupSharePairId>`, so a Query on `pk`
//! lists every backup of a client. Attributes: `clientId`, `backupSharePairId`, `curve`,
//! `signingSharePairId`, `cipherText`, `createdAt` (epoch seconds).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};

use super::s;
use crate::adapters::dynamodb::{
    DynamoStore, client_pk, dynamo_error, item_key, sealed_text, sealed_value, share_sk,
};
use crate::ports::store::{BackupStore, StoreError, StoredShare};

/// A share's item: its key and attributes.
pub(crate) fn share_item(share: &StoredShare) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
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
        ("cipherText".to_owned(), sealed_value(&share.cipher_text)),
        (
            "createdAt".to_owned(),
            AttributeValue::N(share.created_at.to_string()),
        ),
    ]);
    // The wallet's public values, in the clear: what the drills compare across both domains.
    if let Some(public) = &share.public {
        item.insert("publicKey".to_owned(), s(&public.public_key));
        item.insert("address".to_owned(), s(&public.address));
    }
    item
}

/// The condition of every share write: a new item, or a retry writing the very same ciphertext.
/// A different ciphertext is never replaced.
pub(crate) const SHARE_WRITE_CONDITION: &str = "attribute_not_exists(pk) OR cipherText = :ct";

/// The `cipherText` of a share item read back.
fn item_cipher_text(
    item: &HashMap<String, AttributeValue>,
    backup_share_pair_id: &str,
) -> Result<String, StoreError> {
    item.get("cipherText").and_then(sealed_text).ok_or_else(|| {
        StoreError::Corrupt(
            backup_share_pair_id.to_owned(),
            "cipherText is missing or neither binary nor a string",
        )
    })
}

/// Rounds of `UnprocessedKeys` a pair read follows before it reports a transient failure.
const BATCH_GET_ROUNDS: usize = 4;

impl BackupStore for DynamoStore {
    async fn put(&self, share: &StoredShare) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(share_item(share)))
            .condition_expression(SHARE_WRITE_CONDITION)
            .expression_attribute_values(":ct", sealed_value(&share.cipher_text))
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
                .map_err(|e| StoreError::Backend {
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
            Some(_) => Err(StoreError::Backend {
                operation: "BatchGetItem",
                transient: true,
                detail: format!("keys still unprocessed after {BATCH_GET_ROUNDS} rounds"),
            }),
        }
    }
}
