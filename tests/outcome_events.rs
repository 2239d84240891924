//! Outcome events through the built function against moto: one `Backup Completed` event per
//! backup and one `Backup Failed` per message that failed for good, on the bus, carrying ids and
//! codes (never a key or a share) and the stack's name; every metric carries the stack too.

mod common;

use common::checks::secrets_of;
use common::{Function, Moto, Sim, failed_ids, function_env, message, sqs_event};
use serde_json::{Value, json};

#[tokio::test]
async fn each_backup_outcome_is_one_event_on_the_bus_and_metrics_name_the_stack() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    // A rule on the default bus sends portal-backup's events to a queue the test reads.
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk);
    let queue = sqs
        .create_queue()
        .queue_name("outcomes")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let events = aws_sdk_eventbridge::Client::new(&moto.sdk);
    events
        .put_rule()
        .name("portal-backup-outcomes")
        .event_pattern(json!({"source": ["portal-backup"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("portal-backup-outcomes")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.push(("OUTCOME_EVENT_BUS".into(), "default".into()));
    env.push(("STACK_NAME".into(), "staging-backup".into()));
    let f = Function::start(&env).await;
    let (client, key, generate) = sim.new_client(1).await;
    let mut good = serde_json::from_str::<Value>(&message(&client, &key, &generate, None)).unwrap();
    good["idempotencyKey"] = json!("outcome-1");
    let answer = f
        .invoke(&sqs_event(&[
            ("m-1".into(), good.to_string()),
            (
                "m-2".into(),
                json!({"clientId": "c2", "idempotencyKey": "outcome-2"}).to_string(),
            ),
        ]))
        .await;
    assert_eq!(failed_ids(&answer), ["m-2"], "{}", f.logs());

    let mut got: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            got.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
        if got.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    got.sort_by_key(|e| e["detail-type"].as_str().unwrap().to_owned());
    assert_eq!(got.len(), 2, "{got:?}");
    let (done, failed) = (&got[0], &got[1]);
    assert_eq!(done["source"], "portal-backup");
    assert_eq!(done["detail-type"], "Backup Completed");
    assert_eq!(done["detail"]["clientId"], client.as_str());
    assert_eq!(done["detail"]["idempotencyKey"], "outcome-1");
    assert_eq!(done["detail"]["mode"], "SELF_MANAGED");
    assert_eq!(done["detail"]["stack"], "staging-backup");
    assert_eq!(
        done["detail"]["backupSharePairIds"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(failed["detail-type"], "Backup Failed");
    assert_eq!(failed["detail"]["errorCode"], "INVALID_INPUT");
    assert_eq!(failed["detail"]["idempotencyKey"], "outcome-2");
    let text = serde_json::to_string(&got).unwrap();
    common::checks::assert_no_secret_in(&text, &secrets_of(&key, &generate));

    // Every metric line names the stack, in every dimension set.
    let emf: Vec<Value> = f
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert!(emf.len() >= 4, "{}", f.logs());
    for doc in &emf {
        assert_eq!(doc["Stack"], "staging-backup", "{doc}");
        for set in doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            .as_array()
            .unwrap()
        {
            assert_eq!(set[0], "Stack", "{doc}");
        }
    }
    assert!(emf.iter().any(|d| d["OutcomeEventsPublished"] == 1));
}
