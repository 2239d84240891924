//! Restore drills' table: completed checkpoints read by Scan pages (along the cursor, or from a
//! parallel-scan segment), and the drill cursor, one item of its own.
//!
//! The cursor item is `pk` = `DRILL#CURSOR`, `sk` = the region the function runs in: outside
//! every client's partition, so no client's Query sees it, and rotation skips it as an item of no
//! known kind. One cursor per region, because a global table replicates every item: drills in
//! two regions sharing one cursor would overwrite each other's walk (last writer wins there, and
//! the version condition is checked only in the writing region).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::checkpoints::progress;
use crate::adapters::dynamodb::{DynamoStore, dynamo_error, item_key};
use crate::domain::checkpoint::Status;
use crate::ports::drill::{CompletedBackup, CompletedPage, DrillCursor, DrillTable};
use crate::ports::rotation::ItemKey;
use crate::ports::store::StoreError;

/// The cursor items' `pk`.
pub const CURSOR_KEY: &str = "DRILL#CURSOR";

/// Completed checkpoints only: the filter of every drill Scan (it filters after reading, so the
/// items read, not the backups found, are what a page costs).
const COMPLETED: &str = "begins_with(sk, :backup) AND #status = :completed";

type Item = HashMap<String, AttributeValue>;

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A completed checkpoint item as a backup to prove.
fn completed(item: &Item) -> Option<CompletedBackup> {
    let pk = text(item, "pk")?;
    let sk = text(item, "sk")?;
    let progress = progress(item)?;
    (progress.status == Status::Completed).then_some(())?;
    Some(CompletedBackup {
        client_id: pk.strip_prefix("CLIENT#")?.to_owned(),
        key: text(item, "idempotencyKey")
            .or_else(|| sk.strip_prefix("BACKUP#").map(str::to_owned))?,
        progress,
        item: ItemKey { pk, sk },
    })
}

fn last_key(key: Option<Item>) -> Option<ItemKey> {
    let key = key?;
    Some(ItemKey {
        pk: text(&key, "pk")?,
        sk: text(&key, "sk")?,
    })
}

impl DynamoStore {
    /// The key of this region's cursor item.
    fn cursor_key(&self) -> Item {
        let region = self
            .client()
            .config()
            .region()
            .map_or_else(|| CURSOR_KEY.to_owned(), |r| r.as_ref().to_owned());
        item_key(CURSOR_KEY.into(), region)
    }

    /// A consistent Scan of up to `limit` items, filtered to completed checkpoints.
    fn completed_scan(
        &self,
        limit: u32,
    ) -> aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder {
        self.client()
            .scan()
            .table_name(self.table())
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .filter_expression(COMPLETED)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":backup", AttributeValue::S("BACKUP#".into()))
            .expression_attribute_values(":completed", AttributeValue::S("COMPLETED".into()))
            .consistent_read(true)
    }
}

impl DrillTable for DynamoStore {
    async fn drill_cursor(&self) -> Result<Option<DrillCursor>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(self.cursor_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", &e))?;
        Ok(out.item.map(|item| DrillCursor {
            next: match (text(&item, "nextPk"), text(&item, "nextSk")) {
                (Some(pk), Some(sk)) => Some(ItemKey { pk, sk }),
                _ => None,
            },
            cycle: number(&item, "cycle").unwrap_or(1),
            cycle_started_at: number(&item, "cycleStartedAt").unwrap_or(0),
            proven: number(&item, "proven").unwrap_or(0),
            last_cycle_ended_at: number(&item, "lastCycleEndedAt"),
            version: number(&item, "version").unwrap_or(0),
        }))
    }

    async fn save_drill_cursor(&self, cursor: &DrillCursor) -> Result<bool, StoreError> {
        let mut item = self.cursor_key();
        if let Some(next) = &cursor.next {
            item.insert("nextPk".into(), AttributeValue::S(next.pk.clone()));
            item.insert("nextSk".into(), AttributeValue::S(next.sk.clone()));
        }
        item.insert("cycle".into(), n(cursor.cycle));
        item.insert("cycleStartedAt".into(), n(cursor.cycle_started_at));
        item.insert("proven".into(), n(cursor.proven));
        if let Some(ended) = cursor.last_cycle_ended_at {
            item.insert("lastCycleEndedAt".into(), n(ended));
        }
        item.insert("version".into(), n(cursor.version));
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item));
        // Conditional on the version read, so two drills at once never move it back.
        let put = if cursor.version <= 1 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :previous")
                .expression_attribute_values(":previous", n(cursor.version - 1))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(dynamo_error("PutItem", &e)),
        }
    }

    async fn completed_page(
        &self,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> Result<CompletedPage, StoreError> {
        let out = self
            .completed_scan(limit)
            .set_exclusive_start_key(start.map(|k| item_key(k.pk.clone(), k.sk.clone())))
            .send()
            .await
            .map_err(|e| dynamo_error("Scan", &e))?;
        Ok(CompletedPage {
            backups: out.items().iter().filter_map(completed).collect(),
            last: last_key(out.last_evaluated_key),
        })
    }

    async fn completed_in_segment(
        &self,
        segment: u32,
        segments: u32,
        limit: u32,
    ) -> Result<Vec<CompletedBackup>, StoreError> {
        let out = self
            .completed_scan(limit)
            .segment(i32::try_from(segment).unwrap_or(0))
            .total_segments(i32::try_from(segments).unwrap_or(1))
            .send()
            .await
            .map_err(|e| dynamo_error("Scan", &e))?;
        Ok(out.items().iter().filter_map(completed).collect())
    }
}
