//! Key rotation's table: pages of sealed items and conditional swaps of their ciphertexts.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::{
    DynamoStore, client_pk, dynamo_error, item_key, sealed_text, sealed_value,
};
use crate::domain::checkpoint::Status;
use crate::ports::catalogue::Catalogue;
use crate::ports::rotation::{ItemKey, Page, RotationTable, ScannedItem, Swap};
use crate::ports::store::StoreError;

/// An item's string and binary attributes (a binary one, an ESDK message, in its text form),
/// and its key if it has string `pk` and `sk`.
fn scanned(item: HashMap<String, AttributeValue>) -> Option<ScannedItem> {
    let attributes: HashMap<String, String> = item
        .into_iter()
        .filter_map(|(k, v)| sealed_text(&v).map(|text| (k, text)))
        .collect();
    Some(ScannedItem {
        key: ItemKey {
            pk: attributes.get("pk")?.clone(),
            sk: attributes.get("sk")?.clone(),
        },
        attributes,
    })
}

/// DynamoDB's `LastEvaluatedKey` as an item key.
fn last_key(key: Option<HashMap<String, AttributeValue>>) -> Option<ItemKey> {
    let key = key?;
    let text = |n: &str| key.get(n).and_then(|v| v.as_s().ok()).cloned();
    Some(ItemKey {
        pk: text("pk")?,
        sk: text("sk")?,
    })
}

impl RotationTable for DynamoStore {
    async fn page(
        &self,
        client_id: Option<&str>,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let start = start.map(|k| item_key(k.pk.clone(), k.sk.clone()));
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (items, last) = match client_id {
            Some(client) => {
                let out = self
                    .client()
                    .query()
                    .table_name(self.table())
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", AttributeValue::S(client_pk(client)))
                    .set_exclusive_start_key(start)
                    .limit(limit)
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("Query", &e))?;
                (out.items, out.last_evaluated_key)
            }
            None => {
                let out = self
                    .client()
                    .scan()
                    .table_name(self.table())
                    .set_exclusive_start_key(start)
                    .limit(limit)
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("Scan", &e))?;
                (out.items, out.last_evaluated_key)
            }
        };
        Ok(Page {
            items: items
                .unwrap_or_default()
                .into_iter()
                .filter_map(scanned)
                .collect(),
            last: last_key(last),
        })
    }

    async fn in_flight_pairs(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(Catalogue::list(self, client_id)
            .await?
            .backups
            .into_iter()
            .filter(|l| l.progress.status == Status::BackedUp)
            .flat_map(|l| l.progress.shares.into_iter().flatten().map(|r| r.id))
            .collect())
    }

    async fn swap(
        &self,
        key: &ItemKey,
        attribute: &str,
        old: &str,
        new: &str,
    ) -> Result<Swap, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key(key.pk.clone(), key.sk.clone())))
            .update_expression("SET #ct = :new")
            .condition_expression("#ct = :old")
            .expression_attribute_names("#ct", attribute)
            .expression_attribute_values(":new", sealed_value(new))
            .expression_attribute_values(":old", sealed_value(old))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Swap::Written),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(Swap::Changed)
            }
            Err(e) => Err(dynamo_error("UpdateItem", &e)),
        }
    }
}
