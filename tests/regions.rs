//! A second region, on moto's two regions: backups made in us-east-1 under a multi-Region key,
//! their items copied to the table in eu-west-1 as a global table replicates them, then verified,
//! drilled and restored by the function running in eu-west-1 with the replica key alone.

mod common;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use common::checks::key_of;
use common::{
    Function, Moto, Sim, create_table, failed_ids, function_env, message, operator_env, sqs_event,
};
use serde_json::json;

const SECONDARY: &str = "eu-west-1";

async fn sdk_in(endpoint: &str, region: &'static str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

#[tokio::test]
async fn backups_open_in_the_secondary_region_with_the_replica_key_alone() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    // A multi-Region primary key in us-east-1 and its replica in eu-west-1.
    let primary = moto
        .kms()
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    assert!(
        primary.contains(":us-east-1:") && primary.contains(":key/mrk-"),
        "{primary}"
    );
    let replica = moto
        .kms()
        .replicate_key()
        // moto's ReplicateKey takes the bare key id, not the ARN.
        .key_id(primary.rsplit('/').next().unwrap())
        .replica_region(SECONDARY)
        .send()
        .await
        .unwrap()
        .replica_key_metadata
        .unwrap()
        .arn
        .unwrap();
    assert_eq!(replica, primary.replace(":us-east-1:", ":eu-west-1:"));

    // Back up in the primary region under the primary key.
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    set(&mut env, "KMS_KEY_ID", &primary);
    let f = Function::start(&env).await;
    let mut records = Vec::new();
    let mut clients = Vec::new();
    for n in 1..=2 {
        let (client, key, generate) = sim.new_client(n).await;
        records.push((format!("m-{n}"), message(&client, &key, &generate, None)));
        clients.push(client);
    }
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());

    // A drill in the primary region first (the operator function): its cursor item is
    // replicated with the rest.
    let op = Function::start(&operator_env(&env)).await;
    let d = op
        .respond(
            &json!({"action": "drill", "sample": 10}),
            "drill in the primary region",
        )
        .await;
    assert_eq!(
        (&d["verified"], &d["failed"]),
        (&json!(2), &json!(0)),
        "{d}"
    );

    // The global table's replication: every item copied to the same table in eu-west-1.
    let secondary_sdk = sdk_in(&moto.endpoint, SECONDARY).await;
    let ddb_b = aws_sdk_dynamodb::Client::new(&secondary_sdk);
    create_table(&ddb_b, &moto.table).await;
    let items = moto.items(&moto.table).await;
    assert!(
        items.len() >= 6,
        "two backups: 4 share items, 2 checkpoints"
    );
    for item in items {
        if let Some(ct) = item.get("cipherText") {
            assert_eq!(
                key_of(&common::checks::stored_text(ct)),
                primary,
                "sealed under the primary key"
            );
        }
        ddb_b
            .put_item()
            .table_name(&moto.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    // The function in eu-west-1, configured as template-secondary.yaml configures its standby
    // function: its KMS client calls eu-west-1 only, with the replica key. A
    // message names the primary's ARN; it opens with the replica of the reading region.
    let mut env_b = env.clone();
    set(&mut env_b, "AWS_REGION", SECONDARY);
    set(&mut env_b, "KMS_KEY_ID", &replica);
    let g = Function::start(&operator_env(&env_b)).await;
    for client in &clients {
        let v = g
            .respond(
                &json!({"action": "verify", "clientId": client}),
                &format!("verify in {SECONDARY}"),
            )
            .await;
        assert_eq!(v["ok"], true, "{v}");
        let r = g
            .respond(
                &json!({"action": "restore", "clientId": client}),
                &format!("restore in {SECONDARY}"),
            )
            .await;
        // Sealed in the secondary region, under the replica.
        let sealed = r["sealedBackupResponse"].as_str().expect("sealed");
        assert_eq!(key_of(sealed), replica);
    }
    let d = g
        .respond(
            &json!({"action": "drill", "sample": 10}),
            &format!("drill in {SECONDARY}"),
        )
        .await;
    assert_eq!(
        (&d["verified"], &d["failed"]),
        (&json!(2), &json!(0)),
        "{d}"
    );
    // Each region walks with a cursor of its own: the primary's, replicated here, is not
    // continued (nor overwritten, which would move the primary's walk back when it replicates).
    let cursors: Vec<_> = moto_items_in(&ddb_b, &moto.table)
        .await
        .into_iter()
        .filter(|i| i["pk"].as_s().is_ok_and(|pk| pk == "DRILL#CURSOR"))
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect();
    assert_eq!(cursors.len(), 2, "{cursors:?}");
    assert!(
        cursors.contains(&"us-east-1".to_owned()) && cursors.contains(&SECONDARY.to_owned()),
        "{cursors:?}"
    );
    assert_eq!(d["cycle"]["number"], 1, "a cycle of its own: {d}");

    // moto keeps each region's keys apart, as KMS does: eu-west-1 holds the replica and no
    // other key of this test, and the function there called only eu-west-1.
    let listed = aws_sdk_kms::Client::new(&secondary_sdk)
        .list_keys()
        .send()
        .await
        .unwrap();
    let arns: Vec<_> = listed.keys().iter().filter_map(|k| k.key_arn()).collect();
    assert_eq!(
        arns,
        [replica.as_str()],
        "the replica is the only key in {SECONDARY}"
    );
}

async fn moto_items_in(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    ddb.scan()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

fn set(env: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in env.iter_mut() {
        if k == key {
            *v = value.to_owned();
        }
    }
}
