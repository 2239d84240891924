//! Key rotation: moves every stored ciphertext under the function's current KMS key, and
//! migrates `pbe1` strings to AWS Encryption SDK messages.
//!
//! A `pbe1` string changes key without being opened: only its encrypted data key changes (KMS
//! `ReEncrypt`, source and destination context both the ciphertext's own), and the nonce and
//! ciphertext+tag stay byte for byte. An ESDK message authenticates its header, data key
//! included, so it changes key by being opened and sealed anew (`Rewrap::reseal`), in memory, as
//! a backup is. Mode `migrate` re-seals every `pbe1` string as an ESDK message under the current
//! key. Each write is conditional on the ciphertext read (`#attr = :old`), so a concurrent
//! change is never overwritten and a re-run does nothing twice.
//!
//! Reached by a direct invoke `{"action": "rotate", "mode"?, "clientId"?, "cursor"?,
//! "pageSize"?}`: one invocation handles one page of the table (a Scan, or a Query of one
//! client), stops early when its deadline nears, and answers the counts and the cursor to
//! continue from (`null`: done).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::domain::ciphertext::{EncryptionContext, Format, Sealed};
use crate::domain::esdk_message::{decode_text, read_header, same_key};
use crate::domain::model::Curve;
use crate::domain::request::InputError;
use crate::ports::envelope::EnvelopeError;
use crate::ports::rotation::{ItemKey, Rewrap, RotationTable, ScannedItem, Swap};
use crate::ports::store::StoreError;
use crate::workflow::error::{BackupError, Cause, Step};
use crate::workflow::retry::Deadline;

/// Items read per invocation when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Most items per invocation (DynamoDB's page limit is by size anyway; this bounds the run time).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Time one item may take (a `ReEncrypt`, or a `Decrypt` and a `GenerateDataKey`, per ciphertext
/// and an `UpdateItem`, with SDK retries);
/// no item is started with less than this (plus the reserve) left.
pub const ITEM_BUDGET: Duration = Duration::from_secs(2);

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

/// What a rotation does to the ciphertexts it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Moves every ciphertext under the current key, each in its own format.
    #[default]
    Rewrap,
    /// As `Rewrap`, and re-seals every `pbe1` string as an ESDK message.
    Migrate,
}

/// A validated rotate request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateRequest {
    /// What to do with the ciphertexts.
    pub mode: Mode,
    /// Limits the run to one client's items (a Query instead of a Scan).
    pub client_id: Option<String>,
    /// Resume after this item (from a previous answer's cursor).
    pub start: Option<ItemKey>,
    /// Items read in this invocation.
    pub page_size: u32,
}

/// The fields of a rotate request.
const ROTATE_FIELDS: [&str; 5] = ["action", "mode", "clientId", "cursor", "pageSize"];

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
        let mode = match text("mode")? {
            None | Some("rewrap") => Mode::Rewrap,
            Some("migrate") => Mode::Migrate,
            Some(_) => return Err(bad("mode", "must be rewrap (the default) or migrate")),
        };
        let client_id = text("clientId")?.map(str::to_owned);
        if let Some(c) = &client_id
            && !crate::domain::request::valid_client_id(c)
        {
            return Err(bad("clientId", crate::domain::request::CLIENT_ID_RULE));
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
            mode,
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
    /// The key every ciphertext is moved under (an ARN).
    pub key_id: String,
    /// The mode of the run.
    pub mode: Mode,
    /// Ciphertexts moved under the current key in this invocation, each in its own format.
    pub rewrapped: u64,
    /// `pbe1` strings re-sealed as ESDK messages in this invocation (mode `migrate`).
    pub migrated: u64,
    /// Ciphertexts already under the current key.
    pub already_current: u64,
    /// Items left as they are: an unknown kind, or a backup still in flight (see the logs).
    pub skipped: u64,
    /// Ciphertexts that could not be re-wrapped (see the logs, by pk/sk).
    pub failed: u64,
    /// Where to continue (pass it back as `cursor`); `None` when the run is complete.
    pub cursor: Option<String>,
}

/// A ciphertext attribute of an item and the context it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedField {
    /// The attribute holding the ciphertext.
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
        // Custodian shares belong to the custody table and key: the backup function never
        // touches one, wherever it is found (it must not hold both halves of a wallet).
        "CUSTODIAN" => Err(
            "custodian share in the backup table: refused (custodian shares belong to the custody table and key)",
        ),
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
    Migrated,
    Current,
}

/// The key a ciphertext of either format is under, read without opening it.
fn key_of(text: &str) -> Result<String, EnvelopeError> {
    match Format::of(text) {
        Format::Pbe1 => Ok(Sealed::decode(text)?.key_id),
        Format::Esdk => Ok(read_header(&decode_text(text)?)?.kms_key_arn()?.to_owned()),
    }
}

/// Moves one ciphertext under `target` (and to the ESDK format when migrating), and writes it
/// back if it is unchanged.
async fn rotate_one<K: Rewrap, T: RotationTable>(
    kms: &K,
    table: &T,
    (target, mode): (&str, Mode),
    key: &ItemKey,
    field: &SealedField,
    old: &str,
) -> Result<Result<Done, ItemError>, StoreError> {
    let under = match key_of(old) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e.into())),
    };
    let format = Format::of(old);
    let (new, done) = match (format, mode) {
        (Format::Pbe1, Mode::Migrate) => (kms.reseal(&field.context, old).await, Done::Migrated),
        _ if same_key(&under, target) => return Ok(Ok(Done::Current)),
        (Format::Esdk, _) => (kms.reseal(&field.context, old).await, Done::Rewrapped),
        (Format::Pbe1, Mode::Rewrap) => {
            // Only the data key changes; a pbe1 string is never opened to change key.
            let rewrapped = match Sealed::decode(old) {
                Ok(sealed) => match kms.rewrap(&sealed, &field.context, target).await {
                    Ok(w) => Ok(Sealed {
                        key_id: w.key_id,
                        encrypted_data_key: w.encrypted_data_key,
                        nonce: sealed.nonce,
                        ciphertext: sealed.ciphertext,
                    }
                    .encode()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            (rewrapped, Done::Rewrapped)
        }
    };
    let new = match new {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.into())),
    };
    // Proven, then swapped: the stored ciphertext is replaced only by one that has just opened,
    // so a KMS failure at any point leaves a readable one in place.
    if let Err(e) = kms.proves(&field.context, &new).await {
        return Ok(Err(e.into()));
    }
    Ok(match table.swap(key, &field.attribute, old, &new).await? {
        Swap::Written => Ok(done),
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
        mode: req.mode,
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
            match rotate_one(kms, table, (&target, req.mode), &item.key, field, old)
                .await
                .map_err(|e| step(e.into()))?
            {
                Ok(Done::Rewrapped) => answer.rewrapped += 1,
                Ok(Done::Migrated) => answer.migrated += 1,
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
        mode = ?answer.mode,
        client_id = client,
        items = page.items.len(),
        rewrapped = answer.rewrapped,
        migrated = answer.migrated,
        already_current = answer.already_current,
        skipped = answer.skipped,
        failed = answer.failed,
        stopped_early,
        cursor = answer.cursor.as_deref(),
        "rotation page done"
    );
    Ok(answer)
}

/// Key rotation over the backup table: a service of its own beside the backup workflow.
#[derive(Debug, Clone)]
pub struct RotationService<E, S> {
    envelope: E,
    store: S,
}

impl<E, S> RotationService<E, S> {
    /// Wires rotation to its adapters.
    pub fn new(envelope: E, store: S) -> Self {
        Self { envelope, store }
    }
}

impl<E: Rewrap, S: RotationTable> RotationService<E, S> {
    /// Runs one invocation of a key rotation over the backup table.
    pub async fn rotate_keys(
        &self,
        req: &RotateRequest,
        deadline: &Deadline,
    ) -> Result<RotateAnswer, BackupError> {
        rotate(&self.envelope, &self.store, req, deadline).await
    }
}

#[cfg(test)]
mod tests;
