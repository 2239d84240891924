//! Proof without combining, through the built functions against moto and the Portal simulator,
//! whose wallets have real keys: each stored half is checked against public values only. The
//! backup function's drill and the custody function's own drill prove a self-managed backup; a
//! half whose scalar was changed but which still opens, and a pair whose two domains recorded
//! different public keys, are each a `KEY_MISMATCH`, counted for the alarms.

mod common;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use common::checks::backup_pairs;
use common::{
    Function, Moto, Sim, Webhooks, failed_ids, function_env, message, operator_env, sqs_event,
};
use devstack::runtime_api::Answer;
use portal_backup::adapters::esdk::EsdkEnvelope;
use portal_backup::domain::ciphertext::EncryptionContext;
use portal_backup::domain::esdk_message::decode_text;
use portal_backup::domain::model::Curve;
use portal_backup::ports::envelope::Envelope;
use serde_json::{Value, json};

async fn act(f: &Function, payload: Value) -> Value {
    match f.invoke(&payload).await {
        Answer::Response(v) => v,
        other => panic!("{payload} failed: {other:?}\n{}", f.logs()),
    }
}

fn emf(logs: &str, metric: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get(metric).is_some())
        .collect()
}

#[tokio::test]
async fn both_domains_prove_each_half_against_public_values_and_find_a_changed_one() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let hooks = Webhooks::start(&moto, &sim).await;
    let env = function_env(&moto, &sim, "SELF_MANAGED");
    let f = Function::start(&env).await;
    let op = Function::start(&operator_env(&env)).await;
    let (client, key, generate) = sim.new_client(1).await;
    let answer = f
        .invoke(&sqs_event(&[(
            "m-1".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let pairs = backup_pairs(&sim, &client).await;
    assert_eq!(pairs.len(), 2);

    // Both domains recorded the simulator's wallets' public values beside each half.
    for p in &pairs {
        let id = p["id"].as_str().unwrap();
        let share = moto.share_item(&client, id).await.expect("share item");
        assert_eq!(
            share["publicKey"].as_s().unwrap(),
            p["publicKey"].as_str().unwrap()
        );
        assert_eq!(
            share["address"].as_s().unwrap(),
            p["address"].as_str().unwrap()
        );
        let custodian = moto
            .items(&moto.custody_table)
            .await
            .into_iter()
            .find(|i| i["sk"] == AttributeValue::S(format!("CUSTODIAN#{id}")))
            .expect("custodian item");
        assert_eq!(custodian["publicKey"], share["publicKey"]);
        assert_eq!(
            custodian["curve"].as_s().unwrap(),
            p["curve"].as_str().unwrap()
        );
    }

    // Every half proves: the backup drill, and the custody drill paired with the backup table.
    let a = act(&op, json!({"action": "drill", "sample": 20})).await;
    assert_eq!(
        (&a["verified"], &a["failed"], &a["keyUnchecked"]),
        (&json!(1), &json!(0), &json!(0)),
        "{a}"
    );
    let c = act(
        &hooks.function,
        json!({"action": "custody-drill", "sample": 20}),
    )
    .await;
    assert_eq!(
        (
            &c["verified"],
            &c["failed"],
            &c["keyUnchecked"],
            &c["unpaired"]
        ),
        (&json!(2), &json!(0), &json!(0), &json!(0)),
        "{c}"
    );

    // The SECP256K1 client half, its scalar changed, sealed anew under its own context: it
    // opens, names its pair and client, and is a KEY_MISMATCH.
    let secp = pairs.iter().find(|p| p["curve"] == "SECP256K1").unwrap();
    let secp_id = secp["id"].as_str().unwrap();
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).expect("envelope");
    let context = EncryptionContext::backup_share(&client, secp_id, Curve::Secp256k1);
    let stored = common::checks::stored_text(
        &moto.share_item(&client, secp_id).await.unwrap()["cipherText"],
    );
    let opened = envelope.open(&context, &stored).await.expect("opens");
    let mut record: Value = serde_json::from_slice(opened.expose()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut share: Value =
        serde_json::from_slice(&b64.decode(record["share"].as_str().unwrap()).unwrap()).unwrap();
    share["share"] = json!("1234567890123456789");
    record["share"] = json!(b64.encode(share.to_string()));
    let changed = envelope
        .seal(&context, record.to_string().as_bytes())
        .await
        .expect("seal");
    moto.dynamodb()
        .update_item()
        .table_name(&moto.table)
        .key("pk", AttributeValue::S(format!("CLIENT#{client}")))
        .key("sk", AttributeValue::S(format!("SHARE#{secp_id}")))
        .update_expression("SET cipherText = :ct")
        .expression_attribute_values(
            ":ct",
            AttributeValue::B(Blob::new(decode_text(&changed).unwrap())),
        )
        .send()
        .await
        .expect("swap the half");
    let a = act(&op, json!({"action": "drill", "sample": 20})).await;
    assert_eq!(
        (&a["verified"], &a["failed"]),
        (&json!(0), &json!(1)),
        "{a}"
    );
    assert_eq!(a["failures"][0]["kind"], "KEY_MISMATCH", "{a}");
    assert_eq!(a["failures"][0]["curve"], "SECP256K1", "{a}");
    assert!(!a.to_string().contains("1234567890123456789"));
    let v = act(&op, json!({"action": "verify", "clientId": client})).await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["curves"]["SECP256K1"]
            .as_str()
            .unwrap()
            .starts_with("KEY_MISMATCH"),
        "{v}"
    );
    assert_eq!(v["curves"]["ED25519"], "ok", "{v}");
    let counted = emf(&op.logs(), "DrillKeyMismatches");
    assert_eq!(
        counted.last().unwrap()["DrillKeyMismatches"],
        1,
        "{}",
        op.logs()
    );

    // The two domains disagree on the ED25519 wallet's public key: the custody drill says so.
    let ed = pairs.iter().find(|p| p["curve"] == "ED25519").unwrap();
    let ed_id = ed["id"].as_str().unwrap();
    moto.dynamodb()
        .update_item()
        .table_name(&moto.table)
        .key("pk", AttributeValue::S(format!("CLIENT#{client}")))
        .key("sk", AttributeValue::S(format!("SHARE#{ed_id}")))
        .update_expression("SET publicKey = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("00".repeat(32)))
        .send()
        .await
        .expect("change a public key");
    let c = act(
        &hooks.function,
        json!({"action": "custody-drill", "sample": 20}),
    )
    .await;
    assert_eq!(
        (&c["verified"], &c["failed"]),
        (&json!(1), &json!(1)),
        "{c}"
    );
    assert_eq!(c["failures"][0]["kind"], "KEY_MISMATCH", "{c}");
    assert_eq!(c["failures"][0]["backupSharePairId"], ed_id, "{c}");
    let counted = emf(&hooks.function.logs(), "CustodyDrillKeyMismatches");
    assert_eq!(counted.last().unwrap()["CustodyDrillKeyMismatches"], 1);
}
