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
    let forged_share = json!({"clientId": client, "share": "forged-share"}).to_string();
    let forged = json!({"clientId": client, "backupMethod": "CUSTOM", "share": forged_share,
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

/// A webhook call as API Gateway (REST API, stage `prod`) hands it to the custody function.
fn rest_event(source: &str, path: &str, secret: &str, body: &Value) -> Value {
    json!({
        "resource": path,
        "path": format!("/prod/webhook{path}"),
        "httpMethod": "POST",
        "headers": {"content-type": "application/json", "X-Webhook-Secret": secret},
        "multiValueHeaders": {},
        "queryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "stage": "prod",
            "resourcePath": path, "httpMethod": "POST", "path": format!("/prod/webhook{path}"),
            "requestId": format!("req-{source}-{path}"),
            "identity": {"sourceIp": source, "userAgent": "Portal-Webhook"},
        },
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

/// A custodian share as Portal's webhook sends it: flat JSON naming its client.
fn custodian_share(client: &str, n: usize) -> String {
    json!({"clientId": client, "custodianId": "cust-1", "share": format!("{n}123456789"),
           "x": "1", "y": "2"})
    .to_string()
}

#[tokio::test]
async fn only_portals_addresses_reach_custody_and_each_client_stops_at_its_cap() {
    let moto = Moto::start().await;
    let mut env = moto.custody_env();
    env.retain(|(k, _)| k != "WEBHOOK_SOURCE_CIDRS");
    env.extend(
        [
            (
                "WEBHOOK_SOURCE_CIDRS",
                "35.203.150.117/32,104.155.171.139/32,35.185.20.23/32",
            ),
            ("WEBHOOK_SECRET", "whsec-cap-test-0123456789"),
            ("ALLOW_PLAINTEXT_WEBHOOK_SECRET", "local-only"),
            ("MAX_CUSTODIAN_SHARES_PER_CLIENT", "3"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let f = Function::start(&env).await;
    let secret = "whsec-cap-test-0123456789";
    let store = |n: usize| {
        json!({"clientId": "c-cap", "backupMethod": "CUSTOM", "share": custodian_share("c-cap", n),
               "backupSharePairId": format!("bp{n}")})
    };

    // From an address that is not Portal's: 403, no detail, nothing read or stored.
    for source in ["203.0.113.10", "127.0.0.1", "35.203.150.118"] {
        for (path, body) in [
            ("/backup", store(0)),
            ("/backup/fetch", json!({"clientId": "c-cap"})),
        ] {
            let a = f
                .respond(&rest_event(source, path, secret, &body), "a webhook answer")
                .await;
            assert_eq!(a["statusCode"], 403, "{source} {path}: {a}");
            assert_eq!(a["body"], r#"{"message":"Forbidden"}"#);
        }
    }
    assert!(
        moto.items(&moto.custody_table).await.is_empty(),
        "nothing stored from an unlisted address"
    );

    // From Portal's addresses: stored, until the client's cap; then 507 and nothing written.
    for (n, source) in [
        "35.203.150.117",
        "104.155.171.139",
        "35.185.20.23",
        "35.203.150.117",
    ]
    .into_iter()
    .enumerate()
    {
        let a = f
            .respond(
                &rest_event(source, "/backup", secret, &store(n)),
                "a webhook answer",
            )
            .await;
        let expected = if n < 3 { 200 } else { 507 };
        assert_eq!(a["statusCode"], expected, "share {n}: {a}");
        if expected == 507 {
            assert!(
                a["body"]
                    .as_str()
                    .unwrap()
                    .contains("CUSTODIAN_CAP_REACHED")
            );
        }
    }
    // A share naming another client: 422, nothing stored.
    let foreign = json!({"clientId": "c-cap", "backupMethod": "CUSTOM",
                         "share": custodian_share("victim", 9), "backupSharePairId": "bp9"});
    let a = f
        .respond(
            &rest_event("35.203.150.117", "/backup", secret, &foreign),
            "a webhook answer",
        )
        .await;
    assert_eq!(a["statusCode"], 422, "{a}");
    assert!(a["body"].as_str().unwrap().contains("CLIENT_MISMATCH"));

    // Fetch answers the three stored, whole, and says where it came from in its log line.
    let a = f
        .respond(
            &rest_event(
                "104.155.171.139",
                "/backup/fetch",
                secret,
                &json!({"clientId": "c-cap"}),
            ),
            "a fetch answer",
        )
        .await;
    assert_eq!(a["statusCode"], 200, "{a}");
    let body: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
    let mut fetched: Vec<String> = serde_json::from_value(body["backupShares"].clone()).unwrap();
    fetched.sort();
    assert_eq!(
        fetched,
        (0..3)
            .map(|n| custodian_share("c-cap", n))
            .collect::<Vec<_>>()
    );
    let logs = f.logs();
    assert!(
        logs.lines().any(|l| l.contains("custodian shares fetched")
            && l.contains("104.155.171.139")
            && l.contains("\"count\":3")),
        "every fetch is logged with its source and count"
    );
    // Each call is counted: refusals (source, cap, client) and the shares handed out.
    let emf: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("WebhookCalls").is_some())
        .collect();
    let refused: u64 = emf
        .iter()
        .map(|v| v["WebhookRefused"].as_u64().unwrap())
        .sum();
    let fetched_metric: u64 = emf
        .iter()
        .map(|v| v["CustodianSharesFetched"].as_u64().unwrap())
        .sum();
    assert_eq!((refused, fetched_metric), (6 + 1 + 1, 3), "{emf:?}");
    for n in 0..3 {
        assert!(
            !logs.contains(&format!("{n}123456789")),
            "no share in the logs"
        );
    }
}

#[tokio::test]
async fn the_previous_secret_works_while_portal_switches_to_the_new_one() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let hooks = Webhooks::start(&moto, &sim).await;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk);
    let call = |secret: String| {
        let (gateway, http) = (hooks.gateway.clone(), sim.http.clone());
        async move {
            http.post(format!("{gateway}/webhook/backup/fetch"))
                .header("X-Webhook-Secret", secret)
                .json(&json!({"clientId": "c-rot"}))
                .send()
                .await
                .expect("webhook call")
                .status()
                .as_u16()
        }
    };
    let first = hooks.secret.clone();
    assert_eq!(call(first.clone()).await, 200);
    // Rotation: a new value becomes AWSCURRENT, the old one AWSPREVIOUS.
    let second = format!("{first}-rotated");
    sm.put_secret_value()
        .secret_id(&hooks.secret_arn)
        .secret_string(&second)
        .send()
        .await
        .expect("rotate");
    // The function reads the secret again at most every second here (300 s deployed).
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(call(second.clone()).await, 200, "the new value works");
    assert_eq!(
        call(first.clone()).await,
        200,
        "the previous value still works"
    );
    // A second rotation retires the first value.
    let third = format!("{first}-third");
    sm.put_secret_value()
        .secret_id(&hooks.secret_arn)
        .secret_string(&third)
        .send()
        .await
        .expect("rotate again");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(call(third).await, 200);
    assert_eq!(call(second).await, 200);
    assert_eq!(call(first).await, 401, "two rotations ago: refused");
    assert!(!hooks.function.logs().contains(&hooks.secret));
}
