//! Recovery records in the backup table: `pk` = `CLIENT#<clientId>`, `sk` = `RECOVERY#<key>`.
//! Started with a conditional put (one recovery per key), finished only from started.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::adapters::dynamodb::{
    DynamoStore, client_pk, dynamo_error, item_key, sealed_text, sealed_value,
};
use crate::ports::catalogue::{Recovered, Recoveries, RecoveryStart};
use crate::ports::store::StoreError;

/// Sort key of a recovery record.
fn recovery_sk(key: &str) -> String {
    format!("RECOVERY#{key}")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn pair(item: &HashMap<String, AttributeValue>, a: &str, b: &str) -> Option<[String; 2]> {
    let get = |k: &str| item.get(k)?.as_s().ok().cloned();
    Some([get(a)?, get(b)?])
}

/// A finished record; `None` if it is not (or does not read as) finished.
fn recovered(item: &HashMap<String, AttributeValue>) -> Option<Recovered> {
    if item.get("status")?.as_s().ok()? != "RECOVERED" {
        return None;
    }
    Some(Recovered {
        backup_share_pair_ids: pair(item, "secp256k1PairId", "ed25519PairId")?,
        signing_share_pair_ids: pair(item, "secp256k1SigningPairId", "ed25519SigningPairId")?,
        sealed_generate_response: sealed_text(item.get("sealedGenerateResponse")?)?,
        enqueued_message_id: item
            .get("enqueuedMessageId")
            .and_then(|v| v.as_s().ok())
            .cloned(),
    })
}

impl Recoveries for DynamoStore {
    async fn start_recovery(
        &self,
        client_id: &str,
        key: &str,
        now_ms: u64,
    ) -> Result<RecoveryStart, StoreError> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(&client_pk(client_id)))
            .item("sk", s(&recovery_sk(key)))
            .item("status", s("IN_PROGRESS"))
            .item("startedAt", AttributeValue::N(now_ms.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(RecoveryStart::Fresh),
            Err(e) => e,
        };
        if let SdkError::ServiceError(se) = &err
            && let PutItemError::ConditionalCheckFailedException(c) = se.err()
        {
            let old = c.item.clone().unwrap_or_default();
            if let Some(done) = recovered(&old) {
                return Ok(RecoveryStart::Done(done));
            }
            let at = old
                .get("startedAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Ok(RecoveryStart::Started(at));
        }
        Err(dynamo_error("PutItem", &err))
    }

    async fn finish_recovery(
        &self,
        client_id: &str,
        key: &str,
        r: &Recovered,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key(client_pk(client_id), recovery_sk(key))))
            .update_expression(
                "SET #s = :done, secp256k1PairId = :a, ed25519PairId = :b, \
                 secp256k1SigningPairId = :sa, ed25519SigningPairId = :sb, \
                 sealedGenerateResponse = :sealed",
            )
            .condition_expression("#s = :started")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":done", s("RECOVERED"))
            .expression_attribute_values(":started", s("IN_PROGRESS"))
            .expression_attribute_values(":a", s(&r.backup_share_pair_ids[0]))
            .expression_attribute_values(":b", s(&r.backup_share_pair_ids[1]))
            .expression_attribute_values(":sa", s(&r.signing_share_pair_ids[0]))
            .expression_attribute_values(":sb", s(&r.signing_share_pair_ids[1]))
            .expression_attribute_values(":sealed", sealed_value(&r.sealed_generate_response))
            .send()
            .await
            .map_err(|e| dynamo_error("UpdateItem", &e))?;
        Ok(())
    }

    async fn release_recovery(&self, client_id: &str, key: &str) -> Result<(), StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(item_key(client_pk(client_id), recovery_sk(key))))
            .condition_expression("#s = :started")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":started", s("IN_PROGRESS"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Finished meanwhile, or gone: nothing to release.
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(dynamo_error("DeleteItem", &e)),
        }
    }

    async fn recovery_enqueued(
        &self,
        client_id: &str,
        key: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key(client_pk(client_id), recovery_sk(key))))
            .update_expression("SET enqueuedMessageId = :m")
            .expression_attribute_values(":m", s(message_id))
            .send()
            .await
            .map_err(|e| dynamo_error("UpdateItem", &e))?;
        Ok(())
    }
}
