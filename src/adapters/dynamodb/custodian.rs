//! Custodian backup shares in the custody table (never the backup table): `pk` =
//! `CLIENT#<clientId>`, `sk` = `CUSTODIAN#<backupSharePairId>`, written once.

use aws_sdk_dynamodb::types::{AttributeValue, Put as TxPut, TransactWriteItem, Update};

use crate::adapters::dynamodb::checkpoints::wallet_public;
use crate::adapters::dynamodb::{
    Cancellation, DynamoStore, client_pk, dynamo_error, item_key, sealed_text, sealed_value,
};
use crate::domain::model::Curve;
use crate::ports::custody::{CustodianCaps, CustodianShare, CustodianStore, Put};
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

/// Sort key of a client's custodian totals (shares and answer bytes), beside its shares.
pub const TOTALS_SK: &str = "TOTALS#CUSTODIAN";

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl CustodianStore for DynamoStore {
    async fn put_custodian_once(
        &self,
        share: &CustodianShare,
        caps: CustodianCaps,
    ) -> Result<Put, StoreError> {
        if share.answer_bytes > caps.bytes {
            return Ok(Put::OverCap);
        }
        let pk = client_pk(&share.client_id);
        // Write-once: a holder of the webhook secret must not be able to replace a share; and
        // the client's totals move in the same transaction, so no race passes its caps.
        let mut put = TxPut::builder()
            .table_name(self.table())
            .item("pk", s(&pk))
            .item("sk", s(&custodian_sk(&share.backup_share_pair_id)))
            .item("clientId", s(&share.client_id))
            .item("backupSharePairId", s(&share.backup_share_pair_id))
            .item("backupMethod", s(&share.backup_method))
            .item("cipherText", sealed_value(&share.cipher_text))
            .item("updatedAt", n(share.updated_at))
            .item("answerBytes", n(share.answer_bytes));
        // The wallet's public values, in the clear: what the drills compare across both domains.
        if let Some((curve, public)) = &share.wallet {
            put = put
                .item("curve", s(curve.as_str()))
                .item("publicKey", s(&public.public_key))
                .item("address", s(&public.address));
        }
        let put = put
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| build_error("TransactWriteItems", &e))?;
        let totals = Update::builder()
            .table_name(self.table())
            .set_key(Some(item_key(pk.clone(), TOTALS_SK.to_owned())))
            .update_expression("ADD shares :one, answerBytes :bytes SET updatedAt = :now")
            .condition_expression(
                "attribute_not_exists(shares) OR (shares < :maxShares AND answerBytes <= :room)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":bytes", n(share.answer_bytes))
            .expression_attribute_values(":now", n(share.updated_at))
            .expression_attribute_values(":maxShares", n(caps.shares))
            .expression_attribute_values(":room", n(caps.bytes - share.answer_bytes))
            .build()
            .map_err(|e| build_error("TransactWriteItems", &e))?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(totals).build())
            .send()
            .await;
        let Err(e) = result else {
            return Ok(Put::Written);
        };
        let cancelled = Cancellation::of(&e);
        let failed = |i: usize| cancelled.condition_failed(i);
        if failed(0) {
            // Already stored: a resend is fine even at the cap, so the share is looked at first.
            return self.stored_custodian(share).await.map(Put::Exists);
        }
        if failed(1) {
            return Ok(Put::OverCap);
        }
        Err(dynamo_error("TransactWriteItems", &e))
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

impl DynamoStore {
    /// The share stored for the pair, read after a write was refused because one exists.
    async fn stored_custodian(&self, share: &CustodianShare) -> Result<CustodianShare, StoreError> {
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
            detail: "the stored custodian share was not found after the write was refused".into(),
        })?;
        custodian_from_item(&share.client_id, &item)
    }
}

fn build_error(operation: &'static str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend {
        operation,
        transient: false,
        detail: format!("request could not be built: {e}"),
    }
}

pub(crate) fn custodian_from_item(
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
        answer_bytes: match item.get("answerBytes") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or_default(),
            _ => 0,
        },
        backup_share_pair_id: get("backupSharePairId")
            .filter(|p| *p == pair)
            .ok_or_else(|| corrupt("backupSharePairId does not match its key"))?,
        wallet: get("curve")
            .and_then(|c| Curve::parse(&c))
            .zip(wallet_public(
                get("publicKey").as_deref(),
                get("address").as_deref(),
            )),
    })
}
