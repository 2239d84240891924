//! Key rotation through the built binary, as Lambda drives it, against moto and the Portal
//! simulator: a table of old `pbe1` backups under key A; point the function at key B, rotate page
//! by page with the cursor, disable A, and every backup still verifies, restores and decrypts
//! independently; then migrate every `pbe1` string to an AWS Encryption SDK message, and rotate
//! those to key C.

mod common;

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::checks::{key_of, stored_text};
use common::{
    Function, Moto, Sim, failed_ids, function_env, message, operator_env, python_decrypt, sqs_event,
};
use devstack::runtime_api::Answer;
use portal_backup::adapters::esdk::EsdkEnvelope;
use portal_backup::adapters::kms::KmsEnvelope;
use portal_backup::domain::ciphertext::{EncryptionContext, Format};
use portal_backup::domain::model::Curve;
use portal_backup::ports::envelope::Envelope;
use serde_json::{Value, json};

/// Every `*CipherText` attribute in the table, by (pk, sk, attribute).
async fn ciphertexts(moto: &Moto) -> BTreeMap<(String, String, String), String> {
    let items = moto
        .dynamodb()
        .scan()
        .table_name(&moto.table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("scan");
    let mut all = BTreeMap::new();
    for item in items {
        let s = |k: &str| item[k].as_s().unwrap().clone();
        for (attr, v) in &item {
            if attr.ends_with("ipherText") {
                all.insert((s("pk"), s("sk"), attr.clone()), stored_text(v));
            }
        }
    }
    all
}

/// The five fields of a pbe1 string; the key id decoded.
fn fields(ct: &str) -> (String, Vec<String>) {
    let parts: Vec<String> = ct.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 5, "{ct}");
    let key = String::from_utf8(B64.decode(&parts[1]).unwrap()).unwrap();
    (key, parts)
}

/// The encryption context of a share-bearing attribute, rebuilt from the item.
async fn context_of(moto: &Moto, pk: &str, sk: &str, attr: &str) -> BTreeMap<String, String> {
    let item = moto.item(pk, sk).await.unwrap();
    let s = |k: &str| item[k].as_s().unwrap().clone();
    let client = pk.strip_prefix("CLIENT#").unwrap().to_owned();
    let (pair, curve) = match attr {
        "cipherText" => (s("backupSharePairId"), s("curve")),
        "secp256k1CipherText" => (s("secp256k1PairId"), "SECP256K1".into()),
        _ => (s("ed25519PairId"), "ED25519".into()),
    };
    BTreeMap::from([
        ("clientId".to_owned(), client),
        ("backupSharePairId".to_owned(), pair),
        ("curve".to_owned(), curve),
    ])
}

/// The table as the previous version of the function left it: every ciphertext the function wrote
/// (ESDK messages) opened and sealed again as a `pbe1` string under the same key and context.
async fn as_written_by_the_previous_version(moto: &Moto) {
    let (esdk, pbe1) = (
        EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap(),
        KmsEnvelope::new(moto.kms(), &moto.key_id),
    );
    for ((pk, sk, attr), ct) in ciphertexts(moto).await {
        let c = context_of(moto, &pk, &sk, &attr).await;
        let curve = Curve::parse(&c["curve"]).unwrap();
        let ctx = EncryptionContext::backup_share(&c["clientId"], &c["backupSharePairId"], curve);
        let plain = esdk.open(&ctx, &ct).await.unwrap();
        let old = pbe1.seal(&ctx, plain.expose()).await.unwrap();
        moto.dynamodb()
            .update_item()
            .table_name(&moto.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":v", AttributeValue::S(old))
            .send()
            .await
            .unwrap();
    }
}

async fn rotate(f: &Function, body: Value) -> Value {
    match f.invoke(&body).await {
        Answer::Response(v) => v,
        other => panic!("rotate failed: {other:?}\n{}", f.logs()),
    }
}

/// Invokes `rotate` until the cursor is null; answers the summed counts and the invocations.
async fn rotate_to_end(
    f: &Function,
    page_size: u32,
    key_b: &str,
) -> (BTreeMap<&'static str, u64>, u32) {
    rotate_mode_to_end(f, page_size, key_b, "rewrap").await
}

async fn rotate_mode_to_end(
    f: &Function,
    page_size: u32,
    key_b: &str,
    mode: &str,
) -> (BTreeMap<&'static str, u64>, u32) {
    let mut totals = BTreeMap::new();
    let mut cursor = Value::Null;
    let mut invocations = 0;
    loop {
        invocations += 1;
        let a = rotate(
            f,
            json!({"action": "rotate", "mode": mode, "pageSize": page_size, "cursor": cursor}),
        )
        .await;
        assert_eq!(a["keyId"], key_b, "{a}");
        assert_eq!(a["mode"], mode, "{a}");
        for k in [
            "rewrapped",
            "migrated",
            "alreadyCurrent",
            "skipped",
            "failed",
        ] {
            *totals.entry(k).or_insert(0) += a[k].as_u64().unwrap();
        }
        cursor = a["cursor"].clone();
        if cursor.is_null() {
            return (totals, invocations);
        }
        assert!(invocations < 100, "a run must end");
    }
}

#[tokio::test]
async fn rotation_rewraps_every_data_key_resumably_and_backups_survive_the_old_key() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let key_a = moto.key_id.clone();
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    let mut f = Function::start(&env).await;
    let mut clients = Vec::new();
    let mut records = Vec::new();
    for n in 1..=3 {
        let (client, key, generate) = sim.new_client(n).await;
        records.push((format!("m-{n}"), message(&client, &key, &generate, None)));
        clients.push((client, key));
    }
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());

    // The function writes ESDK messages; a table of an earlier version held pbe1 strings.
    assert!(
        ciphertexts(&moto)
            .await
            .values()
            .all(|ct| Format::of(ct) == Format::Esdk)
    );
    as_written_by_the_previous_version(&moto).await;
    let before = ciphertexts(&moto).await;
    // Per client: two share items and a checkpoint holding both sealed shares.
    assert_eq!(before.len(), 12, "{before:?}");
    assert!(before.values().all(|ct| fields(ct).0 == key_a));
    // An item of a kind rotation does not know: skipped and left as it is, never failed.
    let stray = before.values().next().unwrap().clone();
    moto.dynamodb()
        .put_item()
        .table_name(&moto.table)
        .item("pk", AttributeValue::S("CLIENT#client-1".into()))
        .item("sk", AttributeValue::S("NOTE#1".into()))
        .item("cipherText", AttributeValue::S(stray.clone()))
        .send()
        .await
        .unwrap();

    // Key B behind an alias; the function restarts pointed at the alias.
    let kms = moto.kms();
    let key_b = moto.new_key().await;
    kms.create_alias()
        .alias_name("alias/portal-backup-next")
        .target_key_id(&key_b)
        .send()
        .await
        .unwrap();
    f.kill().await;
    for (k, v) in &mut env {
        if k == "KMS_KEY_ID" {
            *v = "alias/portal-backup-next".into();
        }
    }
    // As RetiredKmsKeyArns does: the old key still opens what it sealed, until rotation is done.
    env.push(("RETIRED_KMS_KEY_IDS".into(), key_a.clone()));
    // Rotation, verify and restore are operator actions: the operator function runs them.
    let mut env = operator_env(&env);
    let f = Function::start(&env).await;

    // One client first (a Query): its four ciphertexts, and the stray item skipped.
    let one = rotate(&f, json!({"action": "rotate", "clientId": "client-1"})).await;
    assert_eq!(
        one["keyId"],
        key_b.as_str(),
        "the alias resolves to the key ARN"
    );
    assert_eq!(
        (
            &one["rewrapped"],
            &one["alreadyCurrent"],
            &one["skipped"],
            &one["failed"],
            &one["cursor"]
        ),
        (&json!(4), &json!(0), &json!(1), &json!(0), &Value::Null),
        "{one}"
    );

    // The whole table, two items per invocation: the cursor carries the run across invokes.
    let (totals, invocations) = rotate_to_end(&f, 2, &key_b).await;
    assert_eq!(totals["rewrapped"], 8, "{totals:?}");
    assert_eq!(totals["alreadyCurrent"], 4, "{totals:?}");
    assert_eq!(totals["skipped"], 1, "{totals:?}");
    assert_eq!(totals["failed"], 0, "{totals:?}\n{}", f.logs());
    // 10 items (6 share items, 3 checkpoints, the stray one), 2 a page.
    assert!(invocations >= 5, "{invocations} invocations");

    // Every ciphertext names B; the nonce and ciphertext+tag are byte for byte the same.
    let after = ciphertexts(&moto).await;
    assert_eq!(after.len(), 13);
    for ((pk, sk, attr), old) in &before {
        let new = &after[&(pk.clone(), sk.clone(), attr.clone())];
        let ((old_key, old_parts), (new_key, new_parts)) = (fields(old), fields(new));
        assert_eq!(
            (old_key.as_str(), new_key.as_str()),
            (key_a.as_str(), key_b.as_str())
        );
        assert_eq!(new_parts[0], "pbe1");
        assert_ne!(new_parts[2], old_parts[2], "the data key is wrapped anew");
        assert_eq!(
            new_parts[3..],
            old_parts[3..],
            "nonce and ciphertext+tag unchanged"
        );
    }
    let stray_key = (
        "CLIENT#client-1".to_owned(),
        "NOTE#1".to_owned(),
        "cipherText".to_owned(),
    );
    assert_eq!(after[&stray_key], stray, "an unknown item is not touched");

    // Disable A. moto does not refuse a disabled key, so also prove each data key is wrapped
    // under B: KMS Decrypt naming A is refused, naming B succeeds.
    // (moto's DisableKey takes the bare key id, not the ARN.)
    let key_a_id = key_a.rsplit('/').next().unwrap();
    kms.disable_key().key_id(key_a_id).send().await.unwrap();
    let state = kms.describe_key().key_id(&key_a).send().await.unwrap();
    assert!(!state.key_metadata.unwrap().enabled(), "A is disabled");
    for ((pk, sk, attr), ct) in &after {
        if sk == "NOTE#1" {
            continue;
        }
        let context = context_of(&moto, pk, sk, attr).await;
        let edk = B64.decode(fields(ct).1[2].as_str()).unwrap();
        let decrypt = |key: &str| {
            kms.decrypt()
                .key_id(key)
                .ciphertext_blob(Blob::new(edk.clone()))
                .set_encryption_context(Some(context.clone().into_iter().collect()))
                .send()
        };
        assert!(
            decrypt(&key_a).await.is_err(),
            "{pk} {sk} {attr} still needs A"
        );
        assert!(
            decrypt(&key_b).await.is_ok(),
            "{pk} {sk} {attr} opens under B"
        );
        if attr == "cipherText" {
            let ctx = serde_json::to_value(&context).unwrap();
            let plain =
                python_decrypt(&moto.endpoint, ct, &ctx).expect("the Python decryptor opens it");
            let doc: Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(doc["id"], context["backupSharePairId"].as_str());
        }
    }

    // Every client's backup verifies and restores; Portal accepts a restored one.
    for (n, (client, key)) in clients.iter().enumerate() {
        let Answer::Response(v) = f
            .invoke(&json!({"action": "verify", "clientId": client}))
            .await
        else {
            panic!("verify failed: {}", f.logs())
        };
        assert_eq!(v["ok"], true, "{v}");
        let Answer::Response(r) = f
            .invoke(&json!({"action": "restore", "clientId": client}))
            .await
        else {
            panic!("restore failed: {}", f.logs())
        };
        if n == 0 {
            // Sealed under the current key (A is disabled), opened as the recovery role would.
            let sealed = r["sealedBackupResponse"]
                .as_str()
                .expect("a sealed restore");
            let context = json!({"clientId": client, "purpose": "backup-response"});
            let opened = python_decrypt(&moto.endpoint, sealed, &context)
                .expect("the sealed restore opens under B");
            let backup_response = String::from_utf8(opened).unwrap();
            let resp = sim
                .http
                .post(format!("{}/v1/recover", sim.url))
                .bearer_auth(key)
                .json(&json!({"backupResponse": backup_response}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        }
    }

    // A fresh run from the start re-wraps nothing.
    let (again, _) = rotate_to_end(&f, 100, &key_b).await;
    assert_eq!(again["rewrapped"], 0, "{again:?}");
    assert_eq!(again["alreadyCurrent"], 12, "{again:?}");

    // Migration: every pbe1 string becomes an ESDK message under B, a binary attribute, in pages.
    let (migrated, _) = rotate_mode_to_end(&f, 3, &key_b, "migrate").await;
    assert_eq!(
        (
            migrated["migrated"],
            migrated["rewrapped"],
            migrated["failed"]
        ),
        (12, 0, 0),
        "{migrated:?}\n{}",
        f.logs()
    );
    let esdk_b = ciphertexts(&moto).await;
    for ((pk, sk, attr), ct) in &esdk_b {
        if sk == "NOTE#1" {
            assert_eq!(ct, &stray, "an unknown item is not touched");
            continue;
        }
        assert_eq!(Format::of(ct), Format::Esdk, "{pk} {sk} {attr}");
        assert_eq!(key_of(ct), key_b, "{pk} {sk} {attr}");
        let item = moto.item(pk, sk).await.unwrap();
        assert!(item[attr].is_b(), "{pk} {sk} {attr}: a binary attribute");
        let ctx = serde_json::to_value(context_of(&moto, pk, sk, attr).await).unwrap();
        let plain = python_decrypt(&moto.endpoint, ct, &ctx).expect("the Python ESDK opens it");
        let doc: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(doc["id"], ctx["backupSharePairId"]);
    }
    let (again, _) = rotate_mode_to_end(&f, 100, &key_b, "migrate").await;
    assert_eq!(
        (again["migrated"], again["alreadyCurrent"]),
        (0, 12),
        "{again:?}"
    );

    // ESDK messages change key by being opened and sealed anew: rotate to key C.
    let key_c = moto.new_key().await;
    let mut f = f;
    f.kill().await;
    for (k, v) in &mut env {
        if k == "KMS_KEY_ID" {
            *v = key_c.clone();
        }
        if k == "RETIRED_KMS_KEY_IDS" {
            *v = format!("{key_a},{key_b}");
        }
    }
    let f = Function::start(&env).await;
    let (to_c, _) = rotate_to_end(&f, 5, &key_c).await;
    assert_eq!((to_c["rewrapped"], to_c["failed"]), (12, 0), "{to_c:?}");
    for ((pk, sk, attr), ct) in ciphertexts(&moto).await {
        if sk != "NOTE#1" {
            assert_eq!(key_of(&ct), key_c, "{pk} {sk} {attr}");
            assert_ne!(ct, esdk_b[&(pk.clone(), sk.clone(), attr.clone())]);
        }
    }
    for (client, _) in &clients {
        let Answer::Response(v) = f
            .invoke(&json!({"action": "verify", "clientId": client}))
            .await
        else {
            panic!("verify failed: {}", f.logs())
        };
        assert_eq!(v["ok"], true, "{v}");
    }

    // A cursor is opaque but checked.
    let Answer::Error(e) = f
        .invoke(&json!({"action": "rotate", "cursor": "bm9wZQ"}))
        .await
    else {
        panic!("a forged cursor must be refused")
    };
    assert_eq!(e["errorType"], "INVALID_INPUT", "{e}");
    let logs = f.logs();
    assert!(logs.contains("rotation page done"), "progress is logged");
    assert!(!logs.contains("pbe1."), "no ciphertext in the logs");
}

/// Sets `key` in an environment list (added when absent).
fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
}

#[tokio::test]
async fn when_kms_fails_between_the_reseal_and_the_swap_every_ciphertext_still_opens() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let env = function_env(&moto, &sim, "SELF_MANAGED");
    let f = Function::start(&env).await;
    let mut records = Vec::new();
    let mut clients = Vec::new();
    for n in 1..=2 {
        let (client, key, generate) = sim.new_client(70 + n).await;
        records.push((format!("m-{n}"), message(&client, &key, &generate, None)));
        clients.push(client);
    }
    let answer = f.invoke(&sqs_event(&records)).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let key_a = moto.key_id.clone();
    let key_b = moto.new_key().await;
    let before = ciphertexts(&moto).await;
    assert_eq!(
        before.len(),
        8,
        "two backups: two share items and a checkpoint's two each"
    );

    // KMS answers everything but a Decrypt under the new key: each message is opened and sealed
    // anew under B, then its proof (opening the new message) fails, so nothing may be swapped.
    let b = key_b.clone();
    let front =
        devstack::keepalive::KeepAliveFront::refusing(&moto.endpoint, move |headers, body| {
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            target == "TrentService.Decrypt" && String::from_utf8_lossy(body).contains(b.as_str())
        })
        .await;
    let mut op_env = operator_env(&env);
    set_env(&mut op_env, "AWS_ENDPOINT_URL", &front.url);
    set_env(&mut op_env, "KMS_KEY_ID", &key_b);
    set_env(&mut op_env, "RETIRED_KMS_KEY_IDS", &key_a);
    let failing = Function::start(&op_env).await;
    let (run, _) = rotate_to_end(&failing, 100, &key_b).await;
    assert_eq!((run["rewrapped"], run["failed"]), (0, 8), "{run:?}");
    assert_eq!(
        ciphertexts(&moto).await,
        before,
        "not one ciphertext replaced by one that was not proven"
    );

    // Every backup still opens: verify through an operator function that KMS answers fully.
    let mut direct = op_env.clone();
    set_env(&mut direct, "AWS_ENDPOINT_URL", &moto.endpoint);
    let op = Function::start(&direct).await;
    for client in &clients {
        let Answer::Response(v) = op
            .invoke(&json!({"action": "verify", "clientId": client}))
            .await
        else {
            panic!("verify failed: {}", op.logs())
        };
        assert_eq!(v["ok"], true, "{v}");
    }
    // KMS back: the same rotation proves each new message and swaps it.
    let (run, _) = rotate_to_end(&op, 100, &key_b).await;
    assert_eq!((run["rewrapped"], run["failed"]), (8, 0), "{run:?}");
    for ((pk, sk, attr), ct) in ciphertexts(&moto).await {
        assert_eq!(key_of(&ct), key_b, "{pk} {sk} {attr}");
    }
}
