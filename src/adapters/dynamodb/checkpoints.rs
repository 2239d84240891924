//! Exactly-once effect: one checkpoint record per backup, in the backup table.
//!
//! Key: `pk` = `CLIENT#<clientId>`, `sk` = `BACKUP#<idempotency key>` (by default the two signing
//! share pair ids; a message's `idempotencyKey` overrides). A delivery takes a lease with a
//! conditional write (a put for a new backup, an update to resume one; the lease expires with
//! its invocation, so a timed-out attempt never blocks its retry), then advances
//! `IN_PROGRESS → BACKED_UP → COMPLETED` (through `STORED` when Portal's mark fails, so the retry
//! only marks), each step conditional on holding the lease and on the expected previous status. `BACKED_UP` keeps the backup pair ids and the *encrypted*
//! shares, so a redelivery never calls `/v1/backup` again; for self-managed backups it is written
//! in one transaction with both share items (`advance_storing`). Records are never deleted on
//! error: that would re-create shares at Portal.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};

use crate::adapters::dynamodb::shares::{SHARE_WRITE_CONDITION, share_item};
use crate::adapters::dynamodb::{
    Cancellation, DynamoStore, client_pk, dynamo_error, item_key, sealed_value,
};
use crate::domain::checkpoint::{BackupKey, Progress, SealedRecord, Status};
use crate::domain::model::Curve;
use crate::domain::wallet_key::WalletPublic;
use crate::ports::checkpoints::{Acquired, Checkpoints};
use crate::ports::store::{StoreError, StoredShare};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

type Item = std::collections::HashMap<String, AttributeValue>;

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Public values read back together, or none.
pub(crate) fn wallet_public(
    public_key: Option<&str>,
    address: Option<&str>,
) -> Option<WalletPublic> {
    Some(WalletPublic {
        public_key: public_key?.to_owned(),
        address: address?.to_owned(),
    })
}

/// Reads a checkpoint item; `None` if it is not of the shape this code writes.
pub(crate) fn progress(item: &Item) -> Option<Progress> {
    let status = Status::parse(text(item, "status")?)?;
    let backup_mode = text(item, "backupMode")?.parse().ok()?;
    let signing = item.get("signingSharePairIds")?.as_l().ok()?;
    let signing_share_pair_ids = [
        signing.first()?.as_s().ok()?.clone(),
        signing.get(1)?.as_s().ok()?.clone(),
    ];
    let record = |curve: Curve, prefix: &str| {
        Some(SealedRecord {
            curve,
            id: text(item, &format!("{prefix}PairId"))?.to_owned(),
            cipher_text: crate::adapters::dynamodb::sealed_text(
                item.get(&format!("{prefix}CipherText"))?,
            )?,
            public: wallet_public(
                text(item, &format!("{prefix}PublicKey")),
                text(item, &format!("{prefix}Address")),
            ),
        })
    };
    let shares = match status {
        Status::InProgress => None,
        _ => Some([
            record(Curve::Secp256k1, "secp256k1")?,
            record(Curve::Ed25519, "ed25519")?,
        ]),
    };
    Some(Progress {
        status,
        backup_mode,
        signing_share_pair_ids,
        shares,
    })
}

fn corrupt(key: &BackupKey) -> StoreError {
    StoreError::Corrupt(
        key.key.clone(),
        "checkpoint record is not of the shape this function writes",
    )
}

fn is_condition_failure(
    err: &SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    matches!(err, SdkError::ServiceError(e) if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)))
}

/// Every checkpoint move is conditional on holding the lease and on the expected status.
const TRANSITION_CONDITION: &str = "leaseOwner = :owner AND #status = :from";

/// The update expression and values of a checkpoint move (`#status` names `status`).
struct Transition {
    expression: String,
    values: std::collections::HashMap<String, AttributeValue>,
}

impl Transition {
    fn new(owner: &str, from: Status, to: &Progress) -> Self {
        let mut expression = "SET #status = :to, updatedAt = :now".to_owned();
        let mut values = std::collections::HashMap::from([
            (":to".to_owned(), s(to.status.as_str())),
            (":from".to_owned(), s(from.as_str())),
            (":owner".to_owned(), s(owner)),
            (":now".to_owned(), n(now_ms())),
        ]);
        if let (Status::InProgress, Some([a, b])) = (from, &to.shares) {
            expression.push_str(
                ", secp256k1PairId = :a_id, secp256k1CipherText = :a_ct, ed25519PairId = :b_id, ed25519CipherText = :b_ct",
            );
            values.extend([
                (":a_id".to_owned(), s(&a.id)),
                (":a_ct".to_owned(), sealed_value(&a.cipher_text)),
                (":b_id".to_owned(), s(&b.id)),
                (":b_ct".to_owned(), sealed_value(&b.cipher_text)),
            ]);
            // The wallets' public values, where the shares named them (public, in the clear).
            for (prefix, record) in [("secp256k1", a), ("ed25519", b)] {
                if let Some(public) = &record.public {
                    expression.push_str(&format!(
                        ", {prefix}PublicKey = :{prefix}_pk, {prefix}Address = :{prefix}_addr"
                    ));
                    values.extend([
                        (format!(":{prefix}_pk"), s(&public.public_key)),
                        (format!(":{prefix}_addr"), s(&public.address)),
                    ]);
                }
            }
        }
        if to.status == Status::Completed {
            expression.push_str(", completedAt = :now, leaseExpiresAt = :zero");
            values.insert(":zero".to_owned(), n(0));
        }
        Self { expression, values }
    }
}

impl Checkpoints for DynamoStore {
    async fn acquire(
        &self,
        key: &BackupKey,
        owner: &str,
        lease_until_ms: u64,
        fresh: &Progress,
    ) -> Result<Acquired, StoreError> {
        let now = now_ms();
        let signing =
            AttributeValue::L(fresh.signing_share_pair_ids.iter().map(|i| s(i)).collect());
        // Nearly every delivery is a new backup: a conditional put creates its record. Only when
        // a record exists does the update below decide between resuming it and leaving it be.
        let mut record = record_key(key);
        record.extend([
            ("leaseOwner".to_owned(), s(owner)),
            ("leaseExpiresAt".to_owned(), n(lease_until_ms)),
            ("updatedAt".to_owned(), n(now)),
            ("createdAt".to_owned(), n(now)),
            ("attempts".to_owned(), n(1)),
            ("status".to_owned(), s(Status::InProgress.as_str())),
            ("backupMode".to_owned(), s(fresh.backup_mode.as_str())),
            ("signingSharePairIds".to_owned(), signing.clone()),
            ("clientId".to_owned(), s(&key.client_id)),
            ("idempotencyKey".to_owned(), s(&key.key)),
        ]);
        let created = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match created {
            Ok(_) => return Ok(Acquired::Run(fresh.clone())),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {}
            Err(e) => return Err(dynamo_error("PutItem", &e)),
        }
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(record_key(key)))
            .update_expression(
                "SET leaseOwner = :owner, leaseExpiresAt = :until, updatedAt = :now, \
                 attempts = if_not_exists(attempts, :zero) + :one, \
                 #status = if_not_exists(#status, :in_progress), \
                 createdAt = if_not_exists(createdAt, :now), \
                 backupMode = if_not_exists(backupMode, :mode), \
                 signingSharePairIds = if_not_exists(signingSharePairIds, :signing), \
                 clientId = :client, idempotencyKey = :key",
            )
            // A new backup, or an unfinished one whose holder's invocation has ended.
            .condition_expression(
                "attribute_not_exists(pk) OR (#status <> :completed AND leaseExpiresAt < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":in_progress", s(Status::InProgress.as_str()))
            .expression_attribute_values(":completed", s(Status::Completed.as_str()))
            .expression_attribute_values(":mode", s(fresh.backup_mode.as_str()))
            .expression_attribute_values(":signing", signing)
            .expression_attribute_values(":client", s(&key.client_id))
            .expression_attribute_values(":key", s(&key.key))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| corrupt(key))?;
                Ok(Acquired::Run(progress(&item).ok_or_else(|| corrupt(key))?))
            }
            Err(e) if is_condition_failure(&e) => {
                // Someone else's: completed, or leased. Read it back to tell which.
                let out = self
                    .client()
                    .get_item()
                    .table_name(self.table())
                    .set_key(Some(record_key(key)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("GetItem", &e))?;
                match out.item.as_ref().and_then(progress) {
                    Some(p) if p.status == Status::Completed => Ok(Acquired::Completed(p)),
                    _ => Ok(Acquired::Busy),
                }
            }
            Err(e) => Err(dynamo_error("UpdateItem", &e)),
        }
    }

    async fn advance(
        &self,
        key: &BackupKey,
        owner: &str,
        from: Status,
        to: &Progress,
    ) -> Result<(), StoreError> {
        let change = Transition::new(owner, from, to);
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(record_key(key)))
            .condition_expression(TRANSITION_CONDITION)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(change.values))
            .update_expression(change.expression)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::LeaseLost(key.key.clone())),
            Err(e) => Err(dynamo_error("UpdateItem", &e)),
        }
    }

    async fn advance_storing(
        &self,
        key: &BackupKey,
        owner: &str,
        from: Status,
        to: &Progress,
        shares: &[StoredShare; 2],
    ) -> Result<(), StoreError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend {
            operation: "TransactWriteItems",
            transient: false,
            detail: e.to_string(),
        };
        let change = Transition::new(owner, from, to);
        let mut items = vec![
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(self.table())
                        .set_key(Some(record_key(key)))
                        .condition_expression(TRANSITION_CONDITION)
                        .expression_attribute_names("#status", "status")
                        .set_expression_attribute_values(Some(change.values))
                        .update_expression(change.expression)
                        .build()
                        .map_err(invalid)?,
                )
                .build(),
        ];
        for share in shares {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(self.table())
                            .set_item(Some(share_item(share)))
                            .condition_expression(SHARE_WRITE_CONDITION)
                            .expression_attribute_values(":ct", sealed_value(&share.cipher_text))
                            .build()
                            .map_err(invalid)?,
                    )
                    .build(),
            );
        }
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(e) = result else {
            return Ok(());
        };
        // Which condition cancelled the transaction: the checkpoint's (item 0) or a share's.
        let cancelled = Cancellation::of(&e);
        let failed = |i: usize| cancelled.condition_failed(i);
        if failed(0) {
            return Err(StoreError::LeaseLost(key.key.clone()));
        }
        if let Some(share) = (0..2).find(|&i| failed(i + 1)).map(|i| &shares[i]) {
            return Err(StoreError::Conflict(share.backup_share_pair_id.clone()));
        }
        // Cancelled by a concurrent write or by throttling: worth retrying.
        let contended = cancelled.any(|c| {
            matches!(
                c,
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        });
        let mut err = dynamo_error("TransactWriteItems", &e);
        if let StoreError::Backend { transient, .. } = &mut err {
            *transient |= contended;
        }
        Err(err)
    }

    async fn release(&self, key: &BackupKey, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(record_key(key)))
            .update_expression("SET leaseExpiresAt = :zero")
            .condition_expression("leaseOwner = :owner")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(dynamo_error("UpdateItem", &e)),
        }
    }
}

/// A checkpoint record's key in the table: `pk` = `CLIENT#<clientId>`, `sk` = `BACKUP#<key>`.
fn record_key(key: &BackupKey) -> Item {
    item_key(client_pk(&key.client_id), format!("BACKUP#{}", key.key))
}
