//! The custody drill: the custody function proves the custodian shares it keeps, on a schedule
//! of its own (`{"action": "custody-drill", "sample": N}`), walking every share once per cycle
//! along a cursor in the custody table. Each share is read back and opened under its context,
//! then checked against public values only: its scalar times `G` is its own partial public key
//! and the partial public keys combine to the wallet's public key; the public key it names is
//! the one recorded beside it, and the one the backup table recorded for the same pair (where
//! the stack lets custody read those public attributes). A share that opens but fails this is
//! a `KEY_MISMATCH`. The answer holds counts, ids and problems: never a share or a ciphertext.

use futures::StreamExt;
use serde::Serialize;

use super::CustodyService;
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::wallet_key::{Verdict, check_custodian};
use crate::ports::custody::CustodianShare;
use crate::ports::custody_drill::{CustodyDrillTable, PublicValues};
use crate::ports::envelope::Envelope;
use crate::ports::rotation::ItemKey;
use crate::workflow::drill::{Cycle, DrillRequest, KEY_MISMATCH, save_cursor, start_cursor};
use crate::workflow::error::{BackupError, Cause, Step};
use crate::workflow::retry::Deadline;

/// Scan pages one custody drill reads at most: its cost is bounded.
const MAX_PAGES: usize = 8;

/// Shares proven at once.
const CONCURRENCY: usize = 4;

/// Time a drill needs before it starts.
const NEEDED: std::time::Duration = std::time::Duration::from_secs(3);

/// One custodian share that did not prove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodyDrillFailure {
    /// The share's client.
    pub client_id: String,
    /// Its backup share pair.
    pub backup_share_pair_id: String,
    /// `UNREADABLE` (did not open) or `KEY_MISMATCH`.
    pub kind: &'static str,
    /// What went wrong (never a value).
    pub problem: String,
}

/// What a custody drill answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodyDrillAnswer {
    /// Shares that opened and checked.
    pub verified: u64,
    /// Shares that did not.
    pub failed: u64,
    /// Each, and why.
    pub failures: Vec<CustodyDrillFailure>,
    /// Shares that opened but carry no public values to check the wallet's key against.
    pub key_unchecked: u64,
    /// Shares whose pair has no public values in the backup table to compare with (a
    /// Portal-managed backup, a backup table custody may not read, or none at all).
    pub unpaired: u64,
    /// The walk through every share.
    pub cycle: Cycle,
}

/// What proving one share found.
enum Proof {
    Proven { checked: bool, paired: bool },
    Failed(CustodyDrillFailure),
}

impl<E: Envelope, S: CustodyDrillTable> CustodyService<E, S> {
    /// Runs one custody drill at `now` (epoch milliseconds); `public` reads the backup table's
    /// public values when the stack allows it.
    pub async fn drill<P: PublicValues>(
        &self,
        public: Option<&P>,
        req: DrillRequest,
        deadline: &Deadline,
        now: u64,
    ) -> Result<CustodyDrillAnswer, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Drill, c);
        deadline.check(Step::Drill, NEEDED)?;
        let stored = self
            .store
            .drill_cursor()
            .await
            .map_err(|e| step(e.into()))?;
        let mut cursor = start_cursor(stored.as_ref(), now);
        let quota = req.sample as usize;
        let mut picked: Vec<(CustodianShare, ItemKey)> = Vec::new();
        let page_items = (req.sample * 4).clamp(25, 1000);
        for _ in 0..MAX_PAGES {
            if picked.len() >= quota {
                break;
            }
            let page = self
                .store
                .custodian_page(cursor.next.as_ref(), page_items)
                .await
                .map_err(|e| step(e.into()))?;
            let room = quota - picked.len();
            if page.shares.len() > room {
                // Stop after the last one taken; the rest of the page comes first next time.
                picked.extend(page.shares.into_iter().take(room));
                cursor.next = picked.last().map(|(_, key)| key.clone());
                break;
            }
            picked.extend(page.shares);
            cursor.next = page.last;
            if cursor.next.is_none() {
                break;
            }
        }
        let cycle_done = cursor.next.is_none();
        let proofs: Vec<Proof> = futures::stream::iter(picked.iter())
            .map(|(share, _)| self.prove(public, share))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut answer = CustodyDrillAnswer::default();
        for proof in proofs {
            match proof {
                Proof::Proven { checked, paired } => {
                    answer.verified += 1;
                    answer.key_unchecked += u64::from(!checked);
                    answer.unpaired += u64::from(!paired);
                }
                Proof::Failed(f) => {
                    tracing::error!(client_id = %f.client_id, backup_share_pair_id = %f.backup_share_pair_id, kind = f.kind, problem = %f.problem, "custody drill: a custodian share did not prove");
                    answer.failed += 1;
                    answer.failures.push(f);
                }
            }
        }
        let walked = picked.len() as u64;
        answer.cycle = save_cursor(
            &self.store,
            stored.as_ref(),
            cursor,
            walked,
            cycle_done,
            now,
        )
        .await?;
        tracing::info!(
            verified = answer.verified,
            failed = answer.failed,
            key_unchecked = answer.key_unchecked,
            unpaired = answer.unpaired,
            cycle = answer.cycle.number,
            cycle_done,
            "custody drill done"
        );
        Ok(answer)
    }

    /// Proves one custodian share: opened under its context, checked against public values.
    async fn prove<P: PublicValues>(&self, public: Option<&P>, share: &CustodianShare) -> Proof {
        let fail = |kind, problem: String| {
            Proof::Failed(CustodyDrillFailure {
                client_id: share.client_id.clone(),
                backup_share_pair_id: share.backup_share_pair_id.clone(),
                kind,
                problem,
            })
        };
        let context =
            EncryptionContext::custodian_share(&share.client_id, &share.backup_share_pair_id);
        let opened = match self.envelope.open(&context, &share.cipher_text).await {
            Ok(opened) => opened,
            Err(e) => return fail("UNREADABLE", e.to_string()),
        };
        let (curve, check) = check_custodian(opened.expose());
        drop(opened);
        if let Verdict::Mismatch(why) = &check.verdict {
            return fail(KEY_MISMATCH, format!("KEY_MISMATCH: {why}"));
        }
        let named = curve.zip(check.public);
        if let (Some(recorded), Some(named)) = (&share.wallet, &named)
            && recorded.1.public_key != named.1.public_key
        {
            return fail(
                KEY_MISMATCH,
                "KEY_MISMATCH: the share names another wallet public key than the one recorded when it was stored".into(),
            );
        }
        let mut paired = false;
        if let (Some(table), Some((_, named))) = (public, &named) {
            match table
                .public_values(&share.client_id, &share.backup_share_pair_id)
                .await
            {
                Ok(Some((_, other))) if other.public_key != named.public_key => {
                    return fail(
                        KEY_MISMATCH,
                        "KEY_MISMATCH: the backup table recorded another wallet public key for this pair".into(),
                    );
                }
                Ok(Some(_)) => paired = true,
                Ok(None) => {}
                Err(e) => {
                    return fail(
                        "UNREADABLE",
                        format!("the backup table's public values: {e}"),
                    );
                }
            }
        }
        Proof::Proven {
            checked: check.verdict == Verdict::Proven,
            paired,
        }
    }
}

#[cfg(test)]
mod tests;
