//! Through the built backup function: a backup is filed only under the client its shares name,
//! and a message under a KMS key that is not the function's is refused before KMS sees it.

mod common;

use base64::Engine;
use common::{Function, Moto, Sim, failed_ids, function_env, message, python_seal, sqs_event};
use serde_json::{Value, json};

/// A share document as Portal issues it: base64 of JSON naming its client and pair.
fn share_of(client: &str, pair: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"clientId": client, "backupSharePairId": pair, "share": "123456789"}).to_string(),
    )
}

async fn backup_items(moto: &Moto) -> usize {
    moto.items(&moto.table)
        .await
        .iter()
        .filter(|i| i["sk"].as_s().is_ok_and(|sk| sk.starts_with("SHARE#")))
        .count()
}

#[tokio::test]
async fn signing_shares_of_another_client_never_reach_portal() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(1).await;
    let (victim, _, _) = sim.new_client(2).await;
    // The attacker's own shares and key, filed under the victim's id.
    let forged = message(&victim, &key, &generate, None);
    let answer = f.invoke(&sqs_event(&[("m-forged".into(), forged)])).await;
    assert_eq!(
        failed_ids(&answer),
        ["m-forged"],
        "a batch item failure: retried, then the DLQ"
    );
    assert_eq!(sim.calls("backup").await, 0, "Portal was never called");
    assert_eq!(backup_items(&moto).await, 0, "nothing stored");
    let logs = f.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"code\":\"CLIENT_MISMATCH\"")
                && l.contains("\"kind\":\"permanent\"")),
        "{logs}"
    );
    // The same shares under their own client complete.
    let own = message(&client, &key, &generate, None);
    let answer = f.invoke(&sqs_event(&[("m-own".into(), own)])).await;
    assert!(failed_ids(&answer).is_empty());
    assert_eq!(sim.calls("backup").await, 1);
}

#[tokio::test]
async fn backup_shares_from_portal_naming_another_client_are_never_stored() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(3).await;
    // Portal answers backup shares that name someone else.
    let wrong: Value = json!({
        "SECP256K1": {"share": share_of("someone-else", "cmwrongsecp"), "id": "cmwrongsecp"},
        "ED25519": {"share": share_of("someone-else", "cmwronged"), "id": "cmwronged"},
    });
    sim.admin(
        "faults",
        json!({"route": "backup", "count": 1, "status": 200, "body": wrong}),
    )
    .await;
    let body = message(&client, &key, &generate, None);
    let answer = f.invoke(&sqs_event(&[("m-1".into(), body)])).await;
    assert_eq!(failed_ids(&answer), ["m-1"]);
    assert_eq!(sim.calls("backup").await, 1);
    assert_eq!(backup_items(&moto).await, 0, "nothing sealed or stored");
    assert_eq!(sim.calls("mark-stored").await, 0, "nothing marked stored");
    assert!(f.logs().contains("\"code\":\"CLIENT_MISMATCH\""));
}

#[tokio::test]
async fn a_message_under_a_foreign_key_is_refused_before_kms() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.retain(|(k, _)| k != "REQUIRE_SEALED_INPUT");
    let f = Function::start(&env).await;
    let (client, key, generate) = sim.new_client(4).await;
    // A key of the same account that the function was never told of. moto lets anyone use any
    // key, so had the function asked KMS, the message would have opened.
    let foreign = moto.new_key().await;
    let payload = json!({"clientApiKey": key, "generateResponse": generate});
    for (id, under) in [
        ("m-foreign", foreign.as_str()),
        ("m-own", moto.key_id.as_str()),
    ] {
        let sealed = python_seal(&moto.endpoint, under, &client, &payload);
        let body = json!({"clientId": client, "sealedGenerateResponse": sealed}).to_string();
        let answer = f.invoke(&sqs_event(&[(id.into(), body)])).await;
        let expected: &[&str] = if id == "m-foreign" {
            &["m-foreign"]
        } else {
            &[]
        };
        assert_eq!(failed_ids(&answer), expected, "{id}");
    }
    assert_eq!(
        sim.calls("backup").await,
        1,
        "only the message under the function's key"
    );
    let logs = f.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("refused a message under a key") && l.contains(&foreign)),
        "{logs}"
    );
    assert!(logs.contains("\"code\":\"INVALID_SEALED_INPUT\""));
}
