//! Where a backup's client ciphertexts go: the backup table (self-managed) or Portal
//! (Portal-managed). The choice is made once per backup, by [`BackupService::vault`]; `store` and
//! `prove` only ask the vault to put and to read back.

use futures::future::{join, try_join};

use super::{BackupService, RunStats};
use crate::domain::model::BackupMode;
use crate::domain::secret::ClientApiKey;
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::{BackupStore, StoredShare};
use crate::workflow::error::{BackupError, Cause, Step};
use crate::workflow::retry::{Deadline, RetryPolicy};

/// The place a backup's two ciphertexts are kept.
pub(super) enum Vault<'a, P, S> {
    /// The backup table: both items in one write, read back in one consistent read.
    Table(&'a S),
    /// Portal, one ciphertext per backup share pair; each curve retries on its own.
    Portal(&'a P),
}

impl<P: Portal, E: Envelope, S: BackupStore + Checkpoints> BackupService<P, E, S> {
    /// The vault of a backup in `mode`.
    pub(super) fn vault(&self, mode: BackupMode) -> Vault<'_, P, S> {
        match mode {
            BackupMode::SelfManaged => Vault::Table(&self.store),
            BackupMode::PortalManaged => Vault::Portal(&self.portal),
        }
    }
}

impl<P: Portal, S: BackupStore> Vault<'_, P, S> {
    /// Writes both ciphertexts; safe to repeat (the table's write is conditional on the same
    /// ciphertext, Portal's `PATCH` replaces it with itself).
    pub(super) async fn put(
        &self,
        retry: &RetryPolicy,
        api_key: &ClientApiKey,
        items: &[StoredShare; 2],
        deadline: &Deadline,
        stats: &mut RunStats,
    ) -> Result<(), BackupError> {
        let step = |c: Cause| BackupError::new(Step::Store, c);
        match self {
            Vault::Table(store) => {
                try_join(store.put(&items[0]), store.put(&items[1]))
                    .await
                    .map_err(|e| step(Cause::Store(e)))?;
            }
            Vault::Portal(portal) => {
                let ((ra, na), (rb, nb)) = join(
                    store_one(*portal, retry, api_key, &items[0], deadline),
                    store_one(*portal, retry, api_key, &items[1], deadline),
                )
                .await;
                stats.retries += na + nb;
                ra?;
                rb?;
            }
        }
        Ok(())
    }

    /// Reads both ciphertexts back, as stored (`None`: not found).
    pub(super) async fn read_back(
        &self,
        retry: &RetryPolicy,
        (client_id, api_key): (&str, &ClientApiKey),
        ids: [&str; 2],
        deadline: &Deadline,
        stats: &mut RunStats,
    ) -> Result<[Option<String>; 2], BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        match self {
            // Both items in one strongly consistent read.
            Vault::Table(store) => {
                let (read, retries) = retry
                    .counted(Step::Verify, deadline, || async {
                        store
                            .cipher_texts(client_id, ids)
                            .await
                            .map_err(|e| step(e.into()))
                    })
                    .await;
                stats.retries += retries;
                read
            }
            Vault::Portal(portal) => {
                let ((ra, na), (rb, nb)) = join(
                    read_one(*portal, retry, api_key, ids[0], deadline),
                    read_one(*portal, retry, api_key, ids[1], deadline),
                )
                .await;
                stats.retries += na + nb;
                Ok([ra?, rb?])
            }
        }
    }
}

/// Sends one ciphertext to Portal under the retry policy; answers the result and its retries.
async fn store_one<P: Portal>(
    portal: &P,
    retry: &RetryPolicy,
    api_key: &ClientApiKey,
    item: &StoredShare,
    deadline: &Deadline,
) -> (Result<(), BackupError>, u32) {
    retry
        .counted(Step::Store, deadline, || async {
            portal
                .store_cipher_text(api_key, &item.backup_share_pair_id, &item.cipher_text)
                .await
                .map_err(|e| BackupError::new(Step::Store, e))
        })
        .await
}

/// Reads one ciphertext back from Portal under the retry policy; answers it and its retries.
async fn read_one<P: Portal>(
    portal: &P,
    retry: &RetryPolicy,
    api_key: &ClientApiKey,
    id: &str,
    deadline: &Deadline,
) -> (Result<Option<String>, BackupError>, u32) {
    retry
        .counted(Step::Verify, deadline, || async {
            portal
                .cipher_text(api_key, id)
                .await
                .map(Some)
                .map_err(|e| BackupError::new(Step::Verify, e))
        })
        .await
}
