//! Portal's webhooks end to end: the Portal simulator, in self-managed custody, calls them through
//! a local API Gateway in front of the custody function (its own key and table), while the backup
//! function serves the SQS message and waits inside `/v1/backup`. The secret comes from Secrets
//! Manager (moto).

mod common;

use base64::Engine;
use common::{
    Function, Moto, Sim, Webhooks, failed_ids, function_env, message, python_decrypt, sqs_event,
};
use devstack::runtime_api::Answer;
use serde_json::{Value, json};

/// moto, the simulator, the custody function behind a local API Gateway, and the backup function.
struct Stack {
    moto: Moto,
    sim: Sim,
    worker: Function,
    hooks: Webhooks,
    secret: String,
}

impl Stack {
    async fn start() -> Stack {
        let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
        let hooks = Webhooks::start(&moto, &sim).await;
        let worker = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
        Stack {
            secret: hooks.secret.clone(),
            moto,
            sim,
            worker,
            hooks,
        }
    }

    /// Points the simulator's self-managed custody at the gateway with `secret`.
    async fn portal_webhook(&self, secret: &str) {
        self.hooks.point(&self.sim, secret).await;
    }

    /// A webhook call as Portal makes it; `secret` `None` sends no header.
    async fn hook(&self, path: &str, secret: Option<&str>, body: &Value) -> (u16, String) {
        let mut request = self
            .sim
            .http
            .post(format!("{}/webhook{path}", self.hooks.gateway))
            .json(body);
        if let Some(secret) = secret {
            request = request.header("X-Webhook-Secret", secret);
        }
        let response = request.send().await.expect("webhook call");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// The custodian share items of a client: (backupSharePairId, cipherText, backupMethod).
    async fn custodian_items(&self, client: &str) -> Vec<(String, String, String)> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let out = self
            .moto
            .dynamodb()
            .query()
            .table_name(&self.moto.custody_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", S(format!("CLIENT#{client}")))
            .expression_attribute_values(":p", S("CUSTODIAN#".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("query");
        out.items
            .unwrap_or_default()
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_s().expect(k).clone();
                assert_eq!(s("sk"), format!("CUSTODIAN#{}", s("backupSharePairId")));
                (
                    s("backupSharePairId"),
                    common::checks::new_ciphertext(&i["cipherText"]),
                    s("backupMethod"),
                )
            })
            .collect()
    }

    fn logs(&self) -> String {
        format!("{}\n{}", self.worker.logs(), self.hooks.function.logs())
    }
}

/// The custodian shares the simulator delivered for `client`: (backupSharePairId, share).
async fn sent(sim: &Sim, client: &str) -> Vec<(String, String)> {
    let state = sim.state().await;
    let mut out: Vec<(String, String)> = state["custodianShares"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["clientId"] == client)
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_owned();
            (f("backupSharePairId"), f("share"))
        })
        .collect();
    out.sort();
    out
}

/// A share and the raw material inside it: the forms a leak could take.
fn forms_of(share: &str) -> Vec<String> {
    let mut out = vec![share.to_owned()];
    if let Ok(doc) = base64::engine::general_purpose::STANDARD.decode(share) {
        let doc: Value = serde_json::from_slice(&doc).expect("share JSON");
        for k in ["share", "ssid", "partialPubkey"] {
            out.extend(doc[k].as_str().map(str::to_owned));
        }
    }
    out
}

fn assert_absent(text: &str, secrets: &[String]) {
    assert!(!text.is_empty());
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a secret appears in the output");
    }
}

#[tokio::test]
async fn self_managed_custody_stores_custodian_shares_through_the_webhooks() {
    let stack = Stack::start().await;
    let (client, key, generate) = stack.sim.new_client(1).await;
    let answer = stack
        .worker
        .invoke(&sqs_event(&[(
            "m-1".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(
        failed_ids(&answer),
        Vec::<String>::new(),
        "{}",
        stack.logs()
    );
    // The client backup itself completed as before.
    assert_eq!(stack.sim.calls("mark-stored").await, 1);
    let state = stack.sim.state().await;
    assert_eq!(state["calls"]["webhook-backup"], 2);
    assert_eq!(state["calls"]["webhook-fetch"], 1);

    // Each custodian share is in DynamoDB, sealed under its own context, and opens to exactly
    // what Portal sent.
    let sent = sent(&stack.sim, &client).await;
    assert_eq!(sent.len(), 2, "one custodian share per curve");
    let mut items = stack.custodian_items(&client).await;
    items.sort();
    assert_eq!(items.len(), 2);
    let secret = stack.secret.as_str();
    let mut secrets = vec![secret.to_owned()];
    for ((pair, share), (item_pair, ct, method)) in sent.iter().zip(&items) {
        assert_eq!(pair, item_pair);
        assert_eq!(method, "CUSTOM");
        assert_eq!(
            common::checks::key_of(ct),
            stack.moto.custody_key_id,
            "an ESDK message under the custody key"
        );
        for form in forms_of(share) {
            assert!(!ct.contains(&form), "no plaintext in the table");
            secrets.push(form);
        }
        let context = json!({"clientId": client, "purpose": "custodian-backup-share",
                             "backupSharePairId": pair});
        let plain = python_decrypt(&stack.moto.endpoint, ct, &context).expect("decrypts");
        assert_eq!(plain, share.as_bytes(), "opens to exactly what Portal sent");
        let other = json!({"clientId": "someone-else", "purpose": "custodian-backup-share",
                           "backupSharePairId": pair});
        assert!(
            python_decrypt(&stack.moto.endpoint, ct, &other).is_err(),
            "bound to its client"
        );
    }

    // Fetch returns them; a resend of the same share is accepted, another share for the pair is
    // refused with 409, and the stored one stays.
    let (status, body) = stack
        .hook("/backup/fetch", Some(secret), &json!({"clientId": client}))
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut fetched: Vec<String> = serde_json::from_value(body["backupShares"].clone()).unwrap();
    fetched.sort();
    let mut expected: Vec<String> = sent.iter().map(|(_, s)| s.clone()).collect();
    expected.sort();
    assert_eq!(fetched, expected);
    let (pair, share) = &sent[0];
    let before = stack.custodian_items(&client).await;
    let again = json!({"clientId": client, "backupMethod": "GDRIVE", "share": share,
                       "backupSharePairId": pair});
    assert_eq!(stack.hook("/backup", Some(secret), &again).await.0, 200);
    let forged = json!({"clientId": client, "backupMethod": "CUSTOM", "share": "forged-share",
                        "backupSharePairId": pair});
    let (status, text) = stack.hook("/backup", Some(secret), &forged).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("CUSTODIAN_SHARE_CONFLICT") && !text.contains("forged-share"));
    assert_eq!(
        stack.custodian_items(&client).await,
        before,
        "written once: neither the resend nor the forgery changed the stored items"
    );

    // A wrong or missing secret: 401, no detail, nothing stored.
    let stranger = json!({"clientId": client, "backupMethod": "CUSTOM", "share": "planted",
                          "backupSharePairId": "p-x"});
    for secret in [None, Some("wrong"), Some(&secret[..secret.len() - 1])] {
        for (path, body) in [
            ("/backup", &stranger),
            ("/backup/fetch", &json!({"clientId": client})),
        ] {
            let (status, text) = stack.hook(path, secret, body).await;
            assert_eq!(status, 401, "{path} {secret:?}");
            assert_eq!(text, r#"{"message":"Unauthorized"}"#, "no detail");
        }
    }
    assert_eq!(stack.custodian_items(&client).await.len(), 2);

    // No share and no webhook secret in either function's output (RUST_LOG=trace).
    secrets.push(key.clone());
    let hook_logs = stack.hooks.function.logs();
    assert!(
        hook_logs.contains("custodian share stored") && hook_logs.contains(pair.as_str()),
        "the webhook logs name the pair"
    );
    assert_absent(&stack.logs(), &secrets);
    let Answer::Response(answer) = answer else {
        unreachable!()
    };
    assert_absent(&answer.to_string(), &secrets);
}

#[tokio::test]
async fn a_failing_webhook_fails_the_backup_and_the_message_comes_back() {
    let stack = Stack::start().await;
    // Portal configured with a secret the function does not accept.
    stack.portal_webhook("not-the-secret").await;
    let (client, key, generate) = stack.sim.new_client(2).await;
    let answer = stack
        .worker
        .invoke(&sqs_event(&[(
            "m-2".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), ["m-2"], "{}", stack.logs());
    let state = stack.sim.state().await;
    assert!(state["calls"]["webhook-failed"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(
        state["calls"]["webhook-fetch"].as_u64().unwrap_or(0),
        0,
        "refused at /backup"
    );
    assert_eq!(
        stack.sim.calls("mark-stored").await,
        0,
        "nothing marked stored"
    );
    assert!(sent(&stack.sim, &client).await.is_empty());
    assert!(stack.custodian_items(&client).await.is_empty());
    let logs = stack.worker.logs();
    assert!(
        logs.contains("WEBHOOK_FAILED") || logs.contains("502"),
        "{logs}"
    );
    assert_absent(&stack.logs(), &[stack.secret.clone(), key]);
    assert!(!stack.logs().contains("not-the-secret"));
}
