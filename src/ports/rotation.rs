//! Ports of key rotation: a table to page through and swap ciphertexts in, and a re-wrapper.

use std::collections::HashMap;
use std::future::Future;

use crate::domain::ciphertext::{EncryptionContext, Sealed};
use crate::ports::envelope::EnvelopeError;
use crate::ports::store::StoreError;

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemKey {
    /// `CLIENT#<clientId>`.
    pub pk: String,
    /// `SHARE#…`, `BACKUP#…`, `CUSTODIAN#…`.
    pub sk: String,
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

    /// Opens `old` (either format) under `context` and seals it anew as an AWS Encryption SDK
    /// message under the current key: how an ESDK message changes key (its header, data key
    /// included, is authenticated, so the data key cannot be re-wrapped alone) and how a `pbe1`
    /// string is migrated.
    fn reseal(
        &self,
        context: &EncryptionContext,
        old: &str,
    ) -> impl Future<Output = Result<String, EnvelopeError>> + Send;

    /// Opens `new` under `context` and drops what it opened: rotation proves a ciphertext before
    /// it replaces the one that is known to open.
    fn proves(
        &self,
        context: &EncryptionContext,
        new: &str,
    ) -> impl Future<Output = Result<(), EnvelopeError>> + Send;
}
