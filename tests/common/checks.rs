//! Checks the end-to-end tests share: what a backup left at the simulator and in the table, and
//! that no secret reached a log.

use base64::Engine;
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

use super::{Moto, Sim, python_decrypt};
use portal_backup::domain::ciphertext::{Format, Sealed};
use portal_backup::domain::esdk_message::{decode_text, encode_text, read_header};

/// A stored ciphertext in its text form: a binary attribute (an AWS Encryption SDK message) in
/// standard base64, a string (`pbe1`) as it is.
pub fn stored_text(value: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    use aws_sdk_dynamodb::types::AttributeValue;
    match value {
        AttributeValue::B(b) => encode_text(b.as_ref()),
        AttributeValue::S(s) => s.clone(),
        other => panic!("a ciphertext is binary or a string, not {other:?}"),
    }
}

/// A ciphertext the function wrote now: an ESDK message in a binary attribute.
pub fn new_ciphertext(value: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    assert!(
        value.is_b(),
        "a new ciphertext is stored as binary (an ESDK message)"
    );
    stored_text(value)
}

/// The key a ciphertext of either format is under (an ARN), read without opening it.
pub fn key_of(text: &str) -> String {
    match Format::of(text) {
        Format::Pbe1 => Sealed::decode(text).expect("a pbe1 string").key_id,
        Format::Esdk => read_header(&decode_text(text).expect("base64"))
            .expect("an ESDK message")
            .kms_key_arn()
            .expect("one KMS data key")
            .to_owned(),
    }
}

/// The KMS-wrapped data key of a ciphertext of either format.
pub fn wrapped_data_key(text: &str) -> Vec<u8> {
    match Format::of(text) {
        Format::Pbe1 => Sealed::decode(text).expect("pbe1").encrypted_data_key,
        Format::Esdk => {
            read_header(&decode_text(text).expect("base64"))
                .expect("an ESDK message")
                .data_keys
                .remove(0)
                .ciphertext
        }
    }
}

/// The client's backup pairs at the simulator.
pub async fn backup_pairs(sim: &Sim, client: &str) -> Vec<Value> {
    let state = sim.state().await;
    state["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "backup" && p["clientId"] == client)
        .cloned()
        .collect()
}

/// Checks a decrypted `{"share","id"}`: its id, and the share's embedded client and pair ids.
pub fn check_plaintext(plain: &[u8], client: &str, pair: &str) {
    let doc: Value = serde_json::from_slice(plain).expect("plaintext is JSON");
    assert_eq!(doc["id"], pair);
    let share = base64::engine::general_purpose::STANDARD
        .decode(doc["share"].as_str().unwrap())
        .unwrap();
    let share: Value = serde_json::from_slice(&share).unwrap();
    assert_eq!(share["backupSharePairId"], pair);
    assert_eq!(share["clientId"], client);
}

pub fn context(client: &str, pair: &Value) -> Value {
    json!({"clientId": client, "backupSharePairId": pair["id"], "curve": pair["curve"]})
}

/// Every completed pair of `client` is stored in the table and decrypts there (Python decryptor).
pub async fn assert_self_managed_backup(moto: &Moto, sim: &Sim, client: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let pairs = backup_pairs(sim, client).await;
    assert_eq!(pairs.len(), 2, "{client}: one backup pair per curve");
    for pair in &pairs {
        assert_eq!(pair["status"], "completed", "{client}");
        let id = pair["id"].as_str().unwrap();
        let item = moto
            .share_item(client, id)
            .await
            .unwrap_or_else(|| panic!("{client}: item for {id}"));
        assert_eq!(
            item["curve"].as_s().unwrap(),
            pair["curve"].as_str().unwrap()
        );
        let ct = new_ciphertext(&item["cipherText"]);
        let plain = python_decrypt(&moto.endpoint, &ct, &context(client, pair)).expect("decrypts");
        check_plaintext(&plain, client, id);
        secrets.extend(secrets_of_ciphertext(moto, &ct, &context(client, pair)).await);
    }
    secrets
}

/// Every form of a client's secrets a leak could take: the API key, each signing share (base64),
/// and the raw share inside it (hex).
pub fn secrets_of(key: &str, generate: &Value) -> Vec<String> {
    let mut s = vec![key.to_owned()];
    for curve in ["SECP256K1", "ED25519"] {
        let share = generate[curve]["share"].as_str().unwrap();
        s.push(share.to_owned());
        s.extend(inner_secret(share));
    }
    s
}

/// The `share` field inside a base64 JSON share document.
pub fn inner_secret(share_b64: &str) -> Option<String> {
    let doc = base64::engine::general_purpose::STANDARD
        .decode(share_b64)
        .ok()?;
    let doc: Value = serde_json::from_slice(&doc).ok()?;
    doc["share"].as_str().map(str::to_owned)
}

/// The secrets a stored backup holds: the client backup share, its raw share, and the plaintext
/// data key (base64 and hex), recovered through KMS from the ciphertext.
pub async fn secrets_of_ciphertext(moto: &Moto, ct: &str, context: &Value) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let plain = python_decrypt(&moto.endpoint, ct, context).expect("decrypts");
    let doc: Value = serde_json::from_slice(&plain).unwrap();
    let share = doc["share"].as_str().unwrap().to_owned();
    let edk = wrapped_data_key(ct);
    let mut kms_context = std::collections::HashMap::new();
    for k in ["clientId", "backupSharePairId", "curve"] {
        kms_context.insert(k.to_owned(), context[k].as_str().unwrap().to_owned());
    }
    let key = moto
        .kms()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(edk))
        .set_encryption_context(Some(kms_context))
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![STANDARD.encode(&key), URL_SAFE_NO_PAD.encode(&key), hex];
    out.extend(inner_secret(&share));
    out.push(share);
    out
}

pub fn assert_no_secret_in(logs: &str, secrets: &[String]) {
    assert!(!logs.is_empty());
    for s in secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret appears in the function's output"
        );
    }
}

pub async fn assert_self_managed_backup_count(moto: &Moto, n: usize) {
    assert_eq!(share_items(moto).await, n);
}

/// Share items in the table (checkpoint records, `sk` = `BACKUP#…`, are not counted).
pub async fn share_items(moto: &Moto) -> usize {
    let scan = moto
        .dynamodb()
        .scan()
        .table_name(&moto.table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scan.items()
        .iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with("SHARE#"))
        .count()
}

/// The sim's backup pair ids of a direct-invoke answer.
pub fn outcome_ids(answer: &Answer) -> Vec<String> {
    let Answer::Response(r) = answer else {
        panic!("function error: {answer:?}")
    };
    r["backupSharePairIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The two trust domains kept apart: client shares and checkpoints only in the backup table,
/// wrapped by the backup key; custodian shares only in the custody table, wrapped by the custody
/// key. At least one item of each kind must be there.
pub async fn assert_two_trust_domains(moto: &Moto) {
    let backup = moto.items(&moto.table).await;
    let custody = moto.items(&moto.custody_table).await;
    let sk = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        i["sk"].as_s().expect("sk").clone()
    };
    let shares: Vec<_> = backup
        .iter()
        .filter(|i| sk(i).starts_with("SHARE#"))
        .collect();
    assert!(!shares.is_empty(), "client shares in the backup table");
    for item in &backup {
        assert!(
            !sk(item).starts_with("CUSTODIAN#"),
            "no custodian share in the backup table"
        );
    }
    for item in &shares {
        let ct = new_ciphertext(&item["cipherText"]);
        assert_eq!(
            key_of(&ct),
            moto.key_id,
            "client shares under the backup key"
        );
    }
    assert!(!custody.is_empty(), "custodian shares in the custody table");
    for item in &custody {
        // A client's totals (shares and answer bytes, for its caps): counts only.
        if sk(item) == "TOTALS#CUSTODIAN" {
            assert!(!item.contains_key("cipherText"), "totals hold no share");
            continue;
        }
        assert!(
            sk(item).starts_with("CUSTODIAN#"),
            "only custodian shares in the custody table"
        );
        let ct = new_ciphertext(&item["cipherText"]);
        assert_eq!(
            key_of(&ct),
            moto.custody_key_id,
            "custodian shares under the custody key"
        );
    }
}
