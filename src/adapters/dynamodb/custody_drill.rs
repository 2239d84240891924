//! The custody drill's reads: custodian share items by Scan pages along the drills' cursor (the
//! cursor item is the one `drill.rs` keeps, here in the custody table), and the public values of
//! a pair in the backup table, projected so that nothing but them is read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapters::dynamodb::checkpoints::wallet_public;
use crate::adapters::dynamodb::custodian::{CUSTODIAN_PREFIX, custodian_from_item};
use crate::adapters::dynamodb::{DynamoStore, client_pk, dynamo_error, item_key, share_sk};
use crate::domain::model::Curve;
use crate::domain::wallet_key::WalletPublic;
use crate::ports::custody_drill::{CustodianPage, CustodyDrillTable, PublicValues};
use crate::ports::rotation::ItemKey;
use crate::ports::store::StoreError;

type Item = HashMap<String, AttributeValue>;

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

impl CustodyDrillTable for DynamoStore {
    async fn custodian_page(
        &self,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> Result<CustodianPage, StoreError> {
        let out = self
            .client()
            .scan()
            .table_name(self.table())
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .filter_expression("begins_with(sk, :custodian)")
            .expression_attribute_values(":custodian", AttributeValue::S(CUSTODIAN_PREFIX.into()))
            .consistent_read(true)
            .set_exclusive_start_key(start.map(|k| item_key(k.pk.clone(), k.sk.clone())))
            .send()
            .await
            .map_err(|e| dynamo_error("Scan", &e))?;
        let mut shares = Vec::new();
        for item in out.items() {
            let client = text(item, "clientId").unwrap_or_default();
            let key = ItemKey {
                pk: text(item, "pk").unwrap_or_default(),
                sk: text(item, "sk").unwrap_or_default(),
            };
            shares.push((custodian_from_item(&client, item)?, key));
        }
        let last = out.last_evaluated_key.and_then(|k| {
            Some(ItemKey {
                pk: text(&k, "pk")?,
                sk: text(&k, "sk")?,
            })
        });
        Ok(CustodianPage { shares, last })
    }
}

impl PublicValues for DynamoStore {
    async fn public_values(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> Result<Option<(Curve, WalletPublic)>, StoreError> {
        // Only these attributes: the custody role's grant on the backup table allows no other.
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(item_key(
                client_pk(client_id),
                share_sk(backup_share_pair_id),
            )))
            .projection_expression("#curve, publicKey, address")
            .expression_attribute_names("#curve", "curve")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", &e))?;
        Ok(out.item.and_then(|item| {
            let curve = Curve::parse(&text(&item, "curve")?)?;
            let public = wallet_public(
                text(&item, "publicKey").as_deref(),
                text(&item, "address").as_deref(),
            )?;
            Some((curve, public))
        }))
    }
}
