//! Key rotation: re-wraps every stored data key under the function's current KMS key.
//!
//! Only the encrypted data key of each `pbe1` ciphertext changes (KMS `ReEncrypt`, source and
//! destination encryption context both the ciphertext's own); the key id field names the new key,
//! and the nonce and ciphertext+tag stay byte for byte. No plaintext data key ever reaches this
//! process. Each write is conditional on the ciphertext read (`#attr = :old`), so a concurrent
//! change is never overwritten and a re-run re-wraps nothing twice.
//!
//! Reached by a direct invoke `{"action": "rotate", "clientId"?, "cursor"?, "pageSize"?}`: one
//! invocation handles one page of the table (a Scan, or a Query of one client), stops early when
//! its deadline nears, and answers the counts and the cursor to continue from (`null`: done).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::backup::BackupService;
use crate::envelope::{EncryptionContext, Envelope, EnvelopeError, KmsEnvelope, Sealed, kms_error};
use crate::error::{BackupError, Cause, Step};
use crate::idempotency::{Checkpoints, Status};
use crate::model::Curve;
use crate::portal::Portal;
use crate::request::InputError;
use crate::restore::Catalogue;
use crate::retry::Deadline;
use crate::store::{BackupStore, DynamoStore, StoreError, client_pk, dynamo_error, item_key};

/// Items read per invocation when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most items per invocation (DynamoDB's page limit is by size anyway; this bounds the run time).
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Time one item may take (a `ReEncrypt` per ciphertext and an `UpdateItem`, with SDK retries);
/// no item is started with less than this (plus the reserve) left.
pub const ITEM_BUDGET: Duration = Duration::from_secs(2);

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemKey {
    /// `CLIENT#<clientId>`.
    pub pk: String,
    /// `SHARE#…`, `BACKUP#…`, `CUSTODIAN#…`.
    pub sk: String,
}

/// Where a run resumes: the last item handled, and the client the run was limited to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorDoc {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
}

/// Longest cursor accepted (two keys of at most 1 KiB each, base64url).
const MAX_CURSOR_LEN: usize = 4096;

/// Encodes the resume point as the opaque string the operator passes back.
fn encode_cursor(key: &ItemKey, client: Option<&str>) -> String {
    let doc = CursorDoc {
        pk: key.pk.clone(),
        sk: key.sk.clone(),
        client: client.map(str::to_owned),
    };
    // A struct of strings always serialises.
    B64.encode(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Decodes a cursor made by `encode_cursor`, with the client it was limited to.
fn decode_cursor(text: &str) -> Option<(ItemKey, Option<String>)> {
    if text.len() > MAX_CURSOR_LEN {
        return None;
    }
    let doc: CursorDoc = serde_json::from_slice(&B64.decode(text).ok()?).ok()?;
    if doc.pk.is_empty() || doc.sk.is_empty() {
        return None;
    }
    Some((
        ItemKey {
            pk: doc.pk,
            sk: doc.sk,
        },
        doc.client,
    ))
}

/// A validated rotate request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateRequest {
    /// Limits the run to one client's items (a Query instead of a Scan).
    pub client_id: Option<String>,
    /// Resume after this item (from a previous answer's cursor).
    pub start: Option<ItemKey>,
    /// Items read in this invocation.
    pub page_size: u32,
}

/// The fields of a rotate request.
const ROTATE_FIELDS: [&str; 4] = ["action", "clientId", "cursor", "pageSize"];

/// Whether a direct-invoke payload asks for `rotate` (its other fields are read by `parse`).
pub fn is_rotate(payload: &[u8]) -> bool {
    // Only the top-level `action` is read; any other field is skipped unread.
    #[derive(Deserialize)]
    struct Probe {
        action: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(payload)
        .is_ok_and(|p| matches!(p.action, Some(serde_json::Value::String(a)) if a == "rotate"))
}

impl RotateRequest {
    /// Parses `{"action": "rotate", "clientId"?, "cursor"?, "pageSize"?}`; errors name the field.
    pub fn parse(payload: &[u8]) -> Result<Self, InputError> {
        let bad = |field: &str, problem: &str| InputError {
            field: field.chars().take(64).collect(),
            problem: problem.into(),
        };
        let doc: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| bad("body", "is not valid JSON"))?;
        let map = doc
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        if let Some(unknown) = map.keys().find(|k| !ROTATE_FIELDS.contains(&k.as_str())) {
            return Err(bad(unknown, "is not a field of a rotate request"));
        }
        let text = |name: &str| match map.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(bad(name, "must be a string")),
        };
        if text("action")? != Some("rotate") {
            return Err(bad("action", "must be rotate"));
        }
        let client_id = text("clientId")?.map(str::to_owned);
        if let Some(c) = &client_id
            && !crate::request::valid_client_id(c)
        {
            return Err(bad("clientId", crate::request::CLIENT_ID_RULE));
        }
        let start = match text("cursor")? {
            None => None,
            Some(c) => {
                let (key, client) = decode_cursor(c)
                    .ok_or_else(|| bad("cursor", "is not a cursor this function answered"))?;
                if client != client_id {
                    return Err(bad(
                        "cursor",
                        "belongs to a run with another clientId: pass the same clientId (or none)",
                    ));
                }
                Some(key)
            }
        };
        let page_size = match map.get("pageSize") {
            None | Some(serde_json::Value::Null) => DEFAULT_PAGE_SIZE,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_PAGE_SIZE)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| bad("pageSize", "must be a whole number from 1 to 1000"))?,
        };
        Ok(Self {
            client_id,
            start,
            page_size,
        })
    }
}

/// What a rotate invocation answers (counts are of ciphertexts, `skipped` of items).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateAnswer {
    /// The key every ciphertext is re-wrapped into (an ARN).
    pub key_id: String,
    /// Ciphertexts re-wrapped in this invocation.
    pub rewrapped: u64,
    /// Ciphertexts already under the current key.
    pub already_current: u64,
    /// Items left as they are: an unknown kind, or a backup still in flight (see the logs).
    pub skipped: u64,
    /// Ciphertexts that could not be re-wrapped (see the logs, by pk/sk).
    pub failed: u64,
    /// Where to continue (pass it back as `cursor`); `None` when the run is complete.
    pub cursor: Option<String>,
}

/// One item as read: its key and its string attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedItem {
    /// Its primary key.
    pub key: ItemKey,
    /// Its string attributes (others are not needed here).
    pub attributes: HashMap<String, String>,
}

/// One page of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The items, in key order.
    pub items: Vec<ScannedItem>,
    /// DynamoDB's `LastEvaluatedKey`: more items may follow.
    pub last: Option<ItemKey>,
}

/// How a conditional write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// The new ciphertext replaced the old.
    Written,
    /// The attribute no longer held the old ciphertext; nothing was written.
    Changed,
}

/// The table as rotation sees it.
pub trait RotationTable: Send + Sync {
    /// Up to `limit` items after `start`: every item, or `client_id`'s only.
    fn page(
        &self,
        client_id: Option<&str>,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// The backup share pair ids of `client_id`'s backups in flight (checkpoint `BACKED_UP`).
    fn in_flight_pairs(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Sets `attribute` to `new` if it still holds `old`.
    fn swap(
        &self,
        key: &ItemKey,
        attribute: &str,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<Swap, StoreError>> + Send;
}

/// A data key wrapped anew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrapped {
    /// The key that wraps it now (an ARN, as KMS reports it).
    pub key_id: String,
    /// The newly wrapped data key.
    pub encrypted_data_key: Vec<u8>,
}

/// KMS as rotation sees it.
pub trait Rewrap: Send + Sync {
    /// The configured key (id, ARN or alias) resolved to its ARN; an error if it is not enabled.
    fn current_key(&self) -> impl Future<Output = Result<String, EnvelopeError>> + Send;

    /// Re-wraps `sealed`'s data key into `destination`, under the same `context` both sides.
    fn rewrap(
        &self,
        sealed: &Sealed,
        context: &EncryptionContext,
        destination: &str,
    ) -> impl Future<Output = Result<Rewrapped, EnvelopeError>> + Send;
}

/// A ciphertext attribute of an item and the context it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedField {
    /// The attribute holding the `pbe1` string.
    pub attribute: String,
    /// Its encryption context, rebuilt from the item.
    pub context: EncryptionContext,
}

/// The one map from item kind to its ciphertexts: the sort key's prefix decides, and each arm
/// rebuilds the context exactly as the writer of that kind sealed it. `Err` says why an item is
/// skipped (never a failure); an empty list means the item holds no ciphertext yet.
pub fn sealed_fields(item: &ScannedItem) -> Result<Vec<SealedField>, &'static str> {
    let attr = |name: &str| item.attributes.get(name).map(String::as_str);
    let field = |attribute: &str, context| SealedField {
        attribute: attribute.to_owned(),
        context,
    };
    let client = item
        .key
        .pk
        .strip_prefix("CLIENT#")
        .filter(|c| !c.is_empty())
        .ok_or("partition key is not CLIENT#<clientId>")?;
    let (kind, rest) = item.key.sk.split_once('#').ok_or("unknown item kind")?;
    match kind {
        // store.rs: one share item per backup share pair.
        "SHARE" => {
            let curve = attr("curve")
                .and_then(Curve::parse)
                .ok_or("share item has no known curve")?;
            Ok(vec![field(
                "cipherText",
                EncryptionContext::backup_share(client, rest, curve),
            )])
        }
        // idempotency.rs: a checkpoint keeps both sealed shares from BACKED_UP on.
        "BACKUP" => {
            // In flight: its retry stores the checkpoint's ciphertexts and must find the share
            // items byte-equal; it and its share items (see `rotate`) wait for a later run.
            if attr("status") == Some("BACKED_UP") {
                return Err("backup in flight (BACKED_UP): run rotation again once it completes");
            }
            Ok(
                [("secp256k1", Curve::Secp256k1), ("ed25519", Curve::Ed25519)]
                    .into_iter()
                    .filter_map(|(prefix, curve)| {
                        let attribute = format!("{prefix}CipherText");
                        attr(&attribute)?;
                        let pair = attr(&format!("{prefix}PairId"))?;
                        Some(field(
                            &attribute,
                            EncryptionContext::backup_share(client, pair, curve),
                        ))
                    })
                    .collect(),
            )
        }
        // A custodian-held copy of a backup share.
        "CUSTODIAN" => {
            let pair =
                attr("backupSharePairId").ok_or("custodian item has no backupSharePairId")?;
            Ok(vec![field(
                "cipherText",
                EncryptionContext::custodian_share(client, pair),
            )])
        }
        _ => Err("unknown item kind"),
    }
}

/// Why one ciphertext was not re-wrapped (counted and logged; the run goes on).
#[derive(Debug, thiserror::Error)]
enum ItemError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the ciphertext changed while it was being re-wrapped; run rotation again")]
    Changed,
}

/// What happened to one ciphertext.
enum Done {
    Rewrapped,
    Current,
}

/// Re-wraps one ciphertext into `target` and writes it back if it is unchanged.
async fn rotate_one<K: Rewrap, T: RotationTable>(
    kms: &K,
    table: &T,
    target: &str,
    key: &ItemKey,
    field: &SealedField,
    old: &str,
) -> Result<Result<Done, ItemError>, StoreError> {
    let sealed = match Sealed::decode(old) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    if sealed.key_id == target {
        return Ok(Ok(Done::Current));
    }
    let wrapped = match kms.rewrap(&sealed, &field.context, target).await {
        Ok(w) => w,
        Err(e) => return Ok(Err(e.into())),
    };
    let new = Sealed {
        key_id: wrapped.key_id,
        encrypted_data_key: wrapped.encrypted_data_key,
        ..sealed
    }
    .encode();
    Ok(match table.swap(key, &field.attribute, old, &new).await? {
        Swap::Written => Ok(Done::Rewrapped),
        Swap::Changed => Err(ItemError::Changed),
    })
}

/// The (pk, pair id) of every share item in `items` whose backup is in flight. Read after the page:
/// a share item exists only once its checkpoint is `BACKED_UP`, so a backup seen here as `STORED`
/// or later has been verified, and its share items may be re-wrapped.
async fn in_flight<'a, T: RotationTable>(
    table: &T,
    items: &'a [ScannedItem],
) -> Result<std::collections::HashSet<(&'a String, String)>, StoreError> {
    let mut clients: Vec<&String> = items
        .iter()
        .filter(|i| i.key.sk.starts_with("SHARE#"))
        .map(|i| &i.key.pk)
        .collect();
    clients.dedup();
    let mut pairs = std::collections::HashSet::new();
    for pk in clients {
        if let Some(client) = pk.strip_prefix("CLIENT#") {
            for pair in table.in_flight_pairs(client).await? {
                pairs.insert((pk, pair));
            }
        }
    }
    Ok(pairs)
}

/// Runs one invocation of a rotation: one page, stopping early before the deadline.
pub async fn rotate<K: Rewrap, T: RotationTable>(
    kms: &K,
    table: &T,
    req: &RotateRequest,
    deadline: &Deadline,
) -> Result<RotateAnswer, BackupError> {
    let step = |c: Cause| BackupError::new(Step::Rotate, c);
    deadline.check(Step::Rotate, ITEM_BUDGET)?;
    // The target key is checked once, up front: a missing or disabled target stops the run.
    let target = kms.current_key().await.map_err(|e| step(e.into()))?;
    let client = req.client_id.as_deref();
    let page = table
        .page(client, req.start.as_ref(), req.page_size)
        .await
        .map_err(|e| step(e.into()))?;
    let in_flight = in_flight(table, &page.items)
        .await
        .map_err(|e| step(e.into()))?;
    let mut answer = RotateAnswer {
        key_id: target.clone(),
        ..RotateAnswer::default()
    };
    let mut handled: Option<&ItemKey> = None;
    let mut stopped_early = false;
    for item in &page.items {
        // At least one item per invocation, so a run always moves forward.
        if handled.is_some() && !deadline.allows(ITEM_BUDGET) {
            stopped_early = true;
            break;
        }
        let in_flight_share = item
            .key
            .sk
            .strip_prefix("SHARE#")
            .is_some_and(|p| in_flight.contains(&(&item.key.pk, p.to_owned())));
        let fields = if in_flight_share {
            Err("share of a backup in flight (BACKED_UP): run rotation again once it completes")
        } else {
            sealed_fields(item)
        };
        let fields = match fields {
            Ok(f) => f,
            Err(reason) => {
                answer.skipped += 1;
                tracing::warn!(pk = %item.key.pk, sk = %item.key.sk, reason, "rotation skipped an item");
                handled = Some(&item.key);
                continue;
            }
        };
        for field in &fields {
            let Some(old) = item.attributes.get(&field.attribute) else {
                continue;
            };
            match rotate_one(kms, table, &target, &item.key, field, old)
                .await
                .map_err(|e| step(e.into()))?
            {
                Ok(Done::Rewrapped) => answer.rewrapped += 1,
                Ok(Done::Current) => answer.already_current += 1,
                Err(e) => {
                    answer.failed += 1;
                    tracing::error!(
                        pk = %item.key.pk,
                        sk = %item.key.sk,
                        attribute = %field.attribute,
                        error = %e,
                        "rotation could not re-wrap a ciphertext"
                    );
                }
            }
        }
        handled = Some(&item.key);
    }
    let resume = if stopped_early {
        handled
    } else {
        page.last.as_ref()
    };
    answer.cursor = resume.map(|k| encode_cursor(k, client));
    tracing::info!(
        key_id = %answer.key_id,
        client_id = client,
        items = page.items.len(),
        rewrapped = answer.rewrapped,
        already_current = answer.already_current,
        skipped = answer.skipped,
        failed = answer.failed,
        stopped_early,
        cursor = answer.cursor.as_deref(),
        "rotation page done"
    );
    Ok(answer)
}

impl<P, E, S> BackupService<P, E, S>
where
    P: Portal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + RotationTable,
{
    /// Runs one invocation of a key rotation over the backup table.
    pub async fn rotate_keys(
        &self,
        req: &RotateRequest,
        deadline: &Deadline,
    ) -> Result<RotateAnswer, BackupError> {
        let table = self.table().ok_or_else(|| {
            BackupError::new(
                Step::Input,
                InputError {
                    field: "action".into(),
                    problem: "needs BACKUP_TABLE_NAME: this deployment keeps no ciphertexts".into(),
                },
            )
        })?;
        rotate(self.envelope(), table, req, deadline).await
    }
}

impl Rewrap for KmsEnvelope {
    async fn current_key(&self) -> Result<String, EnvelopeError> {
        let out = self
            .client()
            .describe_key()
            .key_id(self.key_id())
            .send()
            .await
            .map_err(|e| kms_error("DescribeKey", &e))?;
        let meta = out
            .key_metadata
            .ok_or(EnvelopeError::KmsContract("DescribeKey", "key metadata"))?;
        let arn = meta
            .arn()
            .ok_or(EnvelopeError::KmsContract("DescribeKey", "a key ARN"))?
            .to_owned();
        if !meta.enabled() {
            return Err(EnvelopeError::Kms {
                operation: "DescribeKey",
                transient: false,
                code: Some("KeyNotEnabled".into()),
                detail: format!(
                    "the current key {arn} is not enabled: nothing can be re-wrapped into it"
                ),
            });
        }
        Ok(arn)
    }

    async fn rewrap(
        &self,
        sealed: &Sealed,
        context: &EncryptionContext,
        destination: &str,
    ) -> Result<Rewrapped, EnvelopeError> {
        let out = self
            .client()
            .re_encrypt()
            .ciphertext_blob(Blob::new(sealed.encrypted_data_key.clone()))
            .source_key_id(&sealed.key_id)
            .set_source_encryption_context(Some(context.to_kms()))
            .destination_key_id(destination)
            .set_destination_encryption_context(Some(context.to_kms()))
            .send()
            .await
            .map_err(|e| kms_error("ReEncrypt", &e))?;
        Ok(Rewrapped {
            key_id: out.key_id.unwrap_or_else(|| destination.to_owned()),
            encrypted_data_key: out
                .ciphertext_blob
                .ok_or(EnvelopeError::KmsContract("ReEncrypt", "a ciphertext"))?
                .into_inner(),
        })
    }
}

/// An item's string attributes, and its key if it has string `pk` and `sk`.
fn scanned(item: HashMap<String, AttributeValue>) -> Option<ScannedItem> {
    let attributes: HashMap<String, String> = item
        .into_iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(s) => Some((k, s)),
            _ => None,
        })
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
            .expression_attribute_values(":new", AttributeValue::S(new.to_owned()))
            .expression_attribute_values(":old", AttributeValue::S(old.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const OLD: &str = "arn:aws:kms:us-east-1:1:key/old";
    const NEW: &str = "arn:aws:kms:us-east-1:1:key/new";
    const GONE: &str = "arn:aws:kms:us-east-1:1:key/disabled";

    /// Re-wraps by tagging the data key with the context and the destination; refuses `GONE`.
    struct FakeKms {
        current: Result<String, ()>,
        calls: Mutex<u32>,
    }

    impl FakeKms {
        fn new() -> Self {
            Self {
                current: Ok(NEW.into()),
                calls: Mutex::new(0),
            }
        }
    }

    impl Rewrap for FakeKms {
        async fn current_key(&self) -> Result<String, EnvelopeError> {
            self.current.clone().map_err(|()| EnvelopeError::Kms {
                operation: "DescribeKey",
                transient: false,
                code: Some("NotFoundException".into()),
                detail: "no such key".into(),
            })
        }

        async fn rewrap(
            &self,
            sealed: &Sealed,
            context: &EncryptionContext,
            destination: &str,
        ) -> Result<Rewrapped, EnvelopeError> {
            *self.calls.lock().unwrap() += 1;
            // A KMS call takes time: under a paused clock this moves it on.
            tokio::time::sleep(Duration::from_millis(1)).await;
            if sealed.key_id == GONE {
                return Err(EnvelopeError::Kms {
                    operation: "ReEncrypt",
                    transient: false,
                    code: Some("DisabledException".into()),
                    detail: "key is disabled".into(),
                });
            }
            let mut edk = destination.as_bytes().to_vec();
            edk.extend(context.aad());
            Ok(Rewrapped {
                key_id: destination.into(),
                encrypted_data_key: edk,
            })
        }
    }

    /// A sorted in-memory table; `changed` makes every swap find another value.
    #[derive(Default)]
    struct FakeTable {
        items: Mutex<BTreeMap<(String, String), HashMap<String, String>>>,
        changed: bool,
    }

    impl FakeTable {
        fn insert(&self, pk: &str, sk: &str, attrs: &[(&str, &str)]) {
            let mut a: HashMap<String, String> = attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            a.insert("pk".into(), pk.into());
            a.insert("sk".into(), sk.into());
            self.items.lock().unwrap().insert((pk.into(), sk.into()), a);
        }

        fn get(&self, pk: &str, sk: &str, attr: &str) -> String {
            self.items.lock().unwrap()[&(pk.to_owned(), sk.to_owned())][attr].clone()
        }
    }

    impl RotationTable for FakeTable {
        async fn page(
            &self,
            client_id: Option<&str>,
            start: Option<&ItemKey>,
            limit: u32,
        ) -> Result<Page, StoreError> {
            let items = self.items.lock().unwrap();
            let all: Vec<ScannedItem> = items
                .iter()
                .filter(|((pk, sk), _)| {
                    client_id.is_none_or(|c| *pk == client_pk(c))
                        && start.is_none_or(|s| (pk, sk) > (&s.pk, &s.sk))
                })
                .map(|((pk, sk), a)| ScannedItem {
                    key: ItemKey {
                        pk: pk.clone(),
                        sk: sk.clone(),
                    },
                    attributes: a.clone(),
                })
                .collect();
            let more = all.len() > limit as usize;
            let items: Vec<_> = all.into_iter().take(limit as usize).collect();
            let last = more.then(|| items.last().map(|i| i.key.clone())).flatten();
            Ok(Page { items, last })
        }

        async fn in_flight_pairs(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
            let items = self.items.lock().unwrap();
            Ok(items
                .iter()
                .filter(|((pk, sk), a)| {
                    *pk == client_pk(client_id)
                        && sk.starts_with("BACKUP#")
                        && a.get("status").map(String::as_str) == Some("BACKED_UP")
                })
                .flat_map(|(_, a)| {
                    ["secp256k1PairId", "ed25519PairId"]
                        .into_iter()
                        .filter_map(|k| a.get(k).cloned())
                })
                .collect())
        }

        async fn swap(
            &self,
            key: &ItemKey,
            attribute: &str,
            old: &str,
            new: &str,
        ) -> Result<Swap, StoreError> {
            let mut items = self.items.lock().unwrap();
            let item = items.get_mut(&(key.pk.clone(), key.sk.clone())).unwrap();
            if self.changed || item.get(attribute).map(String::as_str) != Some(old) {
                return Ok(Swap::Changed);
            }
            item.insert(attribute.into(), new.into());
            Ok(Swap::Written)
        }
    }

    fn pbe1(key_id: &str, nonce: u8) -> String {
        Sealed {
            key_id: key_id.into(),
            encrypted_data_key: vec![7; 8],
            nonce: [nonce; 12],
            ciphertext: vec![nonce; 24],
        }
        .encode()
    }

    /// Two clients: shares, a completed checkpoint, a custodian copy, and oddities.
    fn table() -> FakeTable {
        let t = FakeTable::default();
        for c in ["c1", "c2"] {
            let pk = format!("CLIENT#{c}");
            t.insert(
                &pk,
                "SHARE#a",
                &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 1))],
            );
            t.insert(
                &pk,
                "SHARE#b",
                &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 2))],
            );
            t.insert(
                &pk,
                "BACKUP#s1.s2",
                &[
                    ("status", "COMPLETED"),
                    ("secp256k1PairId", "a"),
                    ("secp256k1CipherText", &pbe1(OLD, 1)),
                    ("ed25519PairId", "b"),
                    ("ed25519CipherText", &pbe1(OLD, 2)),
                ],
            );
        }
        t.insert(
            "CLIENT#c1",
            "CUSTODIAN#x",
            &[("backupSharePairId", "a"), ("cipherText", &pbe1(OLD, 3))],
        );
        t.insert("CLIENT#c1", "BACKUP#fresh", &[("status", "IN_PROGRESS")]);
        t.insert("CLIENT#c1", "WEBHOOK#1", &[("cipherText", &pbe1(OLD, 4))]);
        t
    }

    fn request(page_size: u32) -> RotateRequest {
        RotateRequest {
            client_id: None,
            start: None,
            page_size,
        }
    }

    async fn run_to_end(kms: &FakeKms, t: &FakeTable, page_size: u32) -> (RotateAnswer, u32) {
        let mut total = RotateAnswer::default();
        let mut req = request(page_size);
        let mut invocations = 0;
        loop {
            invocations += 1;
            let a = rotate(kms, t, &req, &Deadline::none()).await.unwrap();
            total.rewrapped += a.rewrapped;
            total.already_current += a.already_current;
            total.skipped += a.skipped;
            total.failed += a.failed;
            let Some(cursor) = a.cursor else { break };
            req.start = decode_cursor(&cursor).map(|(k, _)| k);
        }
        (total, invocations)
    }

    #[tokio::test]
    async fn every_kind_is_rewrapped_keeping_nonce_and_ciphertext_and_a_rerun_does_nothing() {
        let (kms, t) = (FakeKms::new(), table());
        let (total, invocations) = run_to_end(&kms, &t, 2).await;
        // 2 × (2 shares + 2 checkpoint ciphertexts) + 1 custodian.
        assert_eq!(total.rewrapped, 9, "{total:?}");
        assert_eq!((total.already_current, total.failed), (0, 0));
        assert_eq!(total.skipped, 1, "the unknown kind only");
        assert!(invocations >= 5, "{invocations}");
        let after =
            Sealed::decode(&t.get("CLIENT#c2", "BACKUP#s1.s2", "ed25519CipherText")).unwrap();
        let before = Sealed::decode(&pbe1(OLD, 2)).unwrap();
        assert_eq!(after.key_id, NEW);
        assert_eq!(
            (after.nonce, &after.ciphertext),
            (before.nonce, &before.ciphertext)
        );
        let expected_ctx = EncryptionContext::backup_share("c2", "b", Curve::Ed25519);
        assert!(after.encrypted_data_key.ends_with(&expected_ctx.aad()));
        let custodian = Sealed::decode(&t.get("CLIENT#c1", "CUSTODIAN#x", "cipherText")).unwrap();
        assert!(
            custodian
                .encrypted_data_key
                .ends_with(&EncryptionContext::custodian_share("c1", "a").aad())
        );
        assert_eq!(t.get("CLIENT#c1", "WEBHOOK#1", "cipherText"), pbe1(OLD, 4));

        let calls = *kms.calls.lock().unwrap();
        let (again, _) = run_to_end(&kms, &t, 100).await;
        assert_eq!((again.rewrapped, again.already_current), (0, 9));
        assert_eq!(
            *kms.calls.lock().unwrap(),
            calls,
            "no KMS call for current ciphertexts"
        );
    }

    #[tokio::test]
    async fn one_bad_item_is_counted_and_the_run_goes_on() {
        let (kms, t) = (FakeKms::new(), FakeTable::default());
        t.insert(
            "CLIENT#c",
            "SHARE#a",
            &[("curve", "ED25519"), ("cipherText", &pbe1(GONE, 1))],
        );
        t.insert(
            "CLIENT#c",
            "SHARE#b",
            &[("curve", "ED25519"), ("cipherText", "pbe1.garbage")],
        );
        t.insert(
            "CLIENT#c",
            "SHARE#c",
            &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 3))],
        );
        t.insert("CLIENT#c", "SHARE#d", &[("cipherText", &pbe1(OLD, 3))]);
        let a = rotate(&kms, &t, &request(10), &Deadline::none())
            .await
            .unwrap();
        assert_eq!((a.rewrapped, a.failed, a.skipped), (1, 2, 1), "{a:?}");
        assert_eq!(a.cursor, None);
        assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(GONE, 1));
    }

    #[tokio::test]
    async fn a_concurrent_change_is_never_overwritten() {
        let kms = FakeKms::new();
        let t = FakeTable {
            changed: true,
            ..FakeTable::default()
        };
        t.insert(
            "CLIENT#c",
            "SHARE#a",
            &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 1))],
        );
        let a = rotate(&kms, &t, &request(10), &Deadline::none())
            .await
            .unwrap();
        assert_eq!((a.rewrapped, a.failed), (0, 1));
        assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(OLD, 1));
    }

    #[tokio::test]
    async fn backups_in_flight_are_skipped_with_their_shares_and_a_missing_target_key_is_an_error()
    {
        let t = FakeTable::default();
        t.insert(
            "CLIENT#c",
            "BACKUP#k",
            &[
                ("status", "BACKED_UP"),
                ("secp256k1PairId", "a"),
                ("secp256k1CipherText", &pbe1(OLD, 1)),
            ],
        );
        // Its share item was stored before a crash: its retry must find it byte-equal.
        t.insert(
            "CLIENT#c",
            "SHARE#a",
            &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 1))],
        );
        t.insert(
            "CLIENT#c",
            "SHARE#z",
            &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 2))],
        );
        let a = rotate(&FakeKms::new(), &t, &request(10), &Deadline::none())
            .await
            .unwrap();
        assert_eq!((a.rewrapped, a.skipped), (1, 2), "{a:?}");
        assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(OLD, 1));
        let kms = FakeKms {
            current: Err(()),
            ..FakeKms::new()
        };
        let e = rotate(&kms, &t, &request(10), &Deadline::none())
            .await
            .unwrap_err();
        assert_eq!(e.step, Step::Rotate);
        assert!(!e.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn near_the_deadline_it_stops_after_an_item_and_answers_where_to_resume() {
        let (kms, t) = (FakeKms::new(), table());
        let deadline = Deadline::after(ITEM_BUDGET + crate::retry::RESERVE);
        // Exactly the budget: the first item that calls KMS uses some of it, so the run stops there.
        let a = rotate(&kms, &t, &request(100), &deadline).await.unwrap();
        let (key, client) = decode_cursor(a.cursor.as_deref().unwrap()).unwrap();
        assert_eq!(client, None);
        assert_eq!(a.rewrapped, 2, "{a:?}");
        let mut req = request(100);
        req.start = Some(key);
        let rest = rotate(&kms, &t, &req, &Deadline::none()).await.unwrap();
        assert_eq!(rest.cursor, None);
        assert_eq!(a.rewrapped + rest.rewrapped, 9);
        let too_late = Deadline::after(Duration::from_millis(10));
        let e = rotate(&kms, &t, &request(100), &too_late)
            .await
            .unwrap_err();
        assert!(matches!(e.cause, Cause::Deadline(_)) && e.is_transient());
    }

    #[tokio::test]
    async fn a_client_run_reads_only_that_client() {
        let (kms, t) = (FakeKms::new(), table());
        let mut req = request(100);
        req.client_id = Some("c2".into());
        let a = rotate(&kms, &t, &req, &Deadline::none()).await.unwrap();
        assert_eq!(a.rewrapped, 4);
        assert_eq!(t.get("CLIENT#c1", "SHARE#a", "cipherText"), pbe1(OLD, 1));
    }

    #[test]
    fn requests_are_strict_and_cursors_round_trip_within_their_scope() {
        let key = ItemKey {
            pk: "CLIENT#c".into(),
            sk: "SHARE#a".into(),
        };
        let cursor = encode_cursor(&key, Some("c"));
        let body =
            format!(r#"{{"action":"rotate","clientId":"c","cursor":"{cursor}","pageSize":5}}"#);
        assert!(is_rotate(body.as_bytes()));
        let r = RotateRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(
            (r.start, r.page_size, r.client_id.as_deref()),
            (Some(key), 5, Some("c"))
        );
        let r = RotateRequest::parse(br#"{"action":"rotate"}"#).unwrap();
        assert_eq!(
            (r.start, r.page_size, r.client_id),
            (None, DEFAULT_PAGE_SIZE, None)
        );
        assert!(!is_rotate(br#"{"action":"list","clientId":"c"}"#));
        assert!(!is_rotate(br#"{"clientId":"c"}"#));
        for bad in [
            format!(r#"{{"action":"rotate","cursor":"{cursor}"}}"#),
            r#"{"action":"rotate","cursor":"bm90IGpzb24"}"#.to_owned(),
            r#"{"action":"rotate","pageSize":0}"#.to_owned(),
            r#"{"action":"rotate","pageSize":1001}"#.to_owned(),
            r#"{"action":"rotate","pageSize":"5"}"#.to_owned(),
            r#"{"action":"rotate","clientId":""}"#.to_owned(),
            r#"{"action":"rotate","extra":1}"#.to_owned(),
        ] {
            assert!(RotateRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_item_kind_maps_to_its_attributes_and_context() {
        let item = |sk: &str, attrs: &[(&str, &str)]| ScannedItem {
            key: ItemKey {
                pk: "CLIENT#c".into(),
                sk: sk.into(),
            },
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let f = sealed_fields(&item("SHARE#p", &[("curve", "SECP256K1")])).unwrap();
        assert_eq!(f[0].attribute, "cipherText");
        assert_eq!(
            f[0].context,
            EncryptionContext::backup_share("c", "p", Curve::Secp256k1)
        );
        let f = sealed_fields(&item(
            "BACKUP#k",
            &[
                ("status", "STORED"),
                ("ed25519PairId", "e"),
                ("ed25519CipherText", "x"),
            ],
        ))
        .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].attribute, "ed25519CipherText");
        assert_eq!(
            f[0].context,
            EncryptionContext::backup_share("c", "e", Curve::Ed25519)
        );
        assert!(
            sealed_fields(&item("BACKUP#k", &[("status", "IN_PROGRESS")]))
                .unwrap()
                .is_empty()
        );
        assert!(sealed_fields(&item("OTHER#k", &[])).is_err());
        assert!(sealed_fields(&item("nohash", &[])).is_err());
        let mut stray = item("SHARE#p", &[("curve", "SECP256K1")]);
        stray.key.pk = "USER#c".into();
        assert!(sealed_fields(&stray).is_err());
    }
}
