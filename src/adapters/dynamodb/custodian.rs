//! Custodian backup shares in the table: `sk` = `CUSTODIAN#<backupSharePairId>`.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::{DynamoStore, client_pk, dynamo_error};
use crate::ports::custody::{CustodianShare, CustodianStore, MAX_FETCH_SHARES};
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
    async fn put_custodian(&self, share: &CustodianShare) -> Result<(), StoreError> {
        // Unconditional PutItem: Portal may resend a share (retries, re-runs); the last one wins.
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(&client_pk(&share.client_id)))
            .item("sk", s(&custodian_sk(&share.backup_share_pair_id)))
            .item("clientId", s(&share.client_id))
            .item("backupSharePairId", s(&share.backup_share_pair_id))
            .item("backupMethod", s(&share.backup_method))
            .item("cipherText", s(&share.cipher_text))
            .item("updatedAt", AttributeValue::N(share.updated_at.to_string()))
            .send()
            .await
            .map_err(|e| dynamo_error("PutItem", &e))?;
        Ok(())
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
            if start.is_none() || out.len() >= MAX_FETCH_SHARES {
                break;
            }
        }
        out.truncate(MAX_FETCH_SHARES);
        Ok(out)
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
        cipher_text: get("cipherText").ok_or_else(|| corrupt("cipherText is missing"))?,
        updated_at: match item.get("updatedAt") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or_default(),
            _ => 0,
        },
        backup_share_pair_id: get("backupSharePairId")
            .filter(|p| *p == pair)
            .ok_or_else(|| corrupt("backupSharePairId does not match its key"))?,
    })
}
