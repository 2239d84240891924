//! A client's backups, listed from their checkpoint records (a Query on `pk`).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::checkpoints::progress;
use crate::adapters::dynamodb::{DynamoStore, client_pk, dynamo_error};
use crate::ports::catalogue::{Catalogue, Catalogued, Listed};
use crate::ports::store::StoreError;

impl Catalogue for DynamoStore {
    async fn list(&self, client_id: &str) -> Result<Catalogued, StoreError> {
        let number = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :backup)")
            .expression_attribute_values(":pk", AttributeValue::S(client_pk(client_id)))
            .expression_attribute_values(":backup", AttributeValue::S("BACKUP#".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamo_error("Query", &e))?;
        let mut out = Catalogued::default();
        for item in &pages {
            let read = || {
                Some(Listed {
                    key: item.get("idempotencyKey")?.as_s().ok()?.clone(),
                    progress: progress(item)?,
                    created_at: number(item, "createdAt").unwrap_or(0),
                    updated_at: number(item, "updatedAt").unwrap_or(0),
                    completed_at: number(item, "completedAt"),
                })
            };
            match read() {
                Some(listed) => out.backups.push(listed),
                None => {
                    let sk = item.get("sk").and_then(|v| v.as_s().ok());
                    out.unreadable.push(sk.cloned().unwrap_or_default());
                }
            }
        }
        Ok(out)
    }
}
