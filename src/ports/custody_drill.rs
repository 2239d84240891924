//! Port: the custody drill's view of the custody table (custodian shares page by page along a
//! cursor; the cursor is the drills' own, [`DrillTable`]), and the public values the other
//! domain recorded for a pair.

use std::future::Future;

use crate::domain::model::Curve;
use crate::domain::wallet_key::WalletPublic;
use crate::ports::custody::CustodianShare;
use crate::ports::drill::DrillTable;
use crate::ports::rotation::ItemKey;
use crate::ports::store::StoreError;

/// One page of the walk through the custodian shares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustodianPage {
    /// The custodian shares among the items read, each with its item's key (where a cursor
    /// stopping after it resumes).
    pub shares: Vec<(CustodianShare, ItemKey)>,
    /// DynamoDB's `LastEvaluatedKey`: `None` once the walk has read the last item.
    pub last: Option<ItemKey>,
}

/// The custody table as the custody drill sees it.
pub trait CustodyDrillTable: DrillTable {
    /// Up to `limit` items read after `start` (a Scan page), and the custodian shares among them.
    fn custodian_page(
        &self,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> impl Future<Output = Result<CustodianPage, StoreError>> + Send;
}

/// The public values the backup table recorded beside a client backup half: only those
/// attributes, never its ciphertext (the custody role may read nothing else there).
pub trait PublicValues: Send + Sync {
    /// The curve and public values recorded for the pair, if the table holds its half with them.
    fn public_values(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> impl Future<Output = Result<Option<(Curve, WalletPublic)>, StoreError>> + Send;
}
