//! Custodian backup shares in the custody table (never the backup table): `pk` =
//! `CLIENT#<clientId>`, `sk` = `CUSTODIAN#<backupSharePairId>`, written once.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::{
    DynamoStore, client_pk, dynamo_error, item_key, sealed_text, sealed_value,
};
use crate::ports::custody::{CustodianShare, CustodianStore, Put};
use crate::ports::store::StoreError;

/// Sort-key prefix of custodian share items.
pub const CUSTODIAN_PREFIX: &str = "CUSTODIAN#";

/// Sort key of a custodian share item.
pub fn custodian_sk(backup_share_pair_id: &str) -> String {
    format!("{CUSTODIAN_PREFIX}{backup_share_pair_id}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl CustodianStore for DynamoStore {
    async fn put_custodian_once(&self, share: &CustodianShare) -> Result<Put, StoreError> {
        // Write-once: a holder of the webhook secret must not be able to replace a share.
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(&client_pk(&share.client_id)))
            .item("sk", s(&custodian_sk(&share.backup_share_pair_id)))
            .item("clientId", s(&share.client_id))
            .item("backupSharePairId", s(&share.backup_share_pair_id))
            .item("backupMethod", s(&share.backup_method))
            .item("cipherText", sealed_value(&share.cipher_text))
            .item("updatedAt", AttributeValue::N(share.updated_at.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Put::Written),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let out = self
                    .client()
                    .get_item()
                    .table_name(self.table())
                    .set_key(Some(item_key(
                        client_pk(&share.client_id),
                        custodian_sk(&share.backup_share_pair_id),
                    )))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("GetItem", &e))?;
                let item = out.item.ok_or_else(|| StoreError::Backend {
                    operation: "GetItem",
                    transient: true,
                    detail: "the stored custodian share was not found after the write was refused"
                        .into(),
                })?;
                Ok(Put::Exists(custodian_from_item(&share.client_id, &item)?))
            }
            Err(e) => Err(dynamo_error("PutItem", &e)),
        }
    }

    async fn custodian_shares(&self, client_id: &str) -> Result<Vec<CustodianShare>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&client_pk(client_id)))
                .expression_attribute_values(":prefix", s(CUSTODIAN_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("Query", &e))?;
            for item in page.items.unwrap_or_default() {
                out.push(custodian_from_item(client_id, &item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

fn custodian_from_item(
    client_id: &str,
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<CustodianShare, StoreError> {
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let sk = get("sk").unwrap_or_default();
    let pair = sk
        .strip_prefix(CUSTODIAN_PREFIX)
        .unwrap_or_default()
        .to_owned();
    let corrupt = |what| StoreError::Corrupt(pair.clone(), what);
    Ok(CustodianShare {
        client_id: client_id.to_owned(),
        backup_method: get("backupMethod").unwrap_or_default(),
        cipher_text: item
            .get("cipherText")
            .and_then(sealed_text)
            .ok_or_else(|| corrupt("cipherText is missing"))?,
        updated_at: match item.get("updatedAt") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or_default(),
            _ => 0,
        },
        backup_share_pair_id: get("backupSharePairId")
            .filter(|p| *p == pair)
            .ok_or_else(|| corrupt("backupSharePairId does not match its key"))?,
    })
}
