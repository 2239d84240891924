//! The producer clients end to end: a request sealed and sent by the Node.js client and by the
//! Python client (each through its CLI, as a producer's script would run it) lands on the local
//! queue, and the built function, which requires sealed input, consumes it and completes the
//! backup. A wrong key is refused by the client before anything is sent.
//!
//! The clients are built and installed by `clients/node/check` and `clients/python/check`,
//! which `scripts/test` runs before the Rust tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::checks::{assert_no_secret_in, backup_pairs, secrets_of};
use common::{Function, Moto, Sim, failed_ids, function_env, sqs_event, venv_python};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The command that runs a client's CLI.
fn cli(lang: &str) -> Command {
    match lang {
        "node" => {
            let script = Path::new(ROOT).join("clients/node/dist/cli.js");
            assert!(
                script.exists(),
                "{} is built by clients/node/check (scripts/test runs it)",
                script.display()
            );
            let mut c = Command::new("node");
            c.arg(script);
            c
        }
        _ => {
            let mut c = Command::new(venv_python());
            c.args(["-m", "portal_backup_client"]);
            c
        }
    }
}

fn run(lang: &str, moto: &Moto, api_key: &str, args: &[&str]) -> Output {
    cli(lang)
        .args(args)
        .args(["--region", "us-east-1", "--endpoint-url", &moto.endpoint])
        .env("PORTAL_CLIENT_API_KEY", api_key)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run the client")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("producer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sealed_and_sent_by(lang: &str, n: usize) {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let mut env = function_env(&moto, &sim, "SELF_MANAGED");
    env.retain(|(k, _)| k != "REQUIRE_SEALED_INPUT");
    env.push(("REQUIRE_SEALED_INPUT".into(), "true".into()));
    let f = Function::start(&env).await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(format!("backups-{lang}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let (client, key, generate) = sim.new_client(n).await;
    let dir = scratch(lang);
    let file = dir.join("generate.json");
    std::fs::write(&file, generate.to_string()).unwrap();
    let file = file.to_str().unwrap();

    // A wrong key (an alias: the client needs the key's ARN) is refused before anything is sent.
    let refused = run(
        lang,
        &moto,
        &key,
        &[
            "send",
            "--key-arn",
            "alias/portal-backup",
            "--client-id",
            &client,
            "--generate-response-file",
            file,
            "--queue-url",
            &queue,
        ],
    );
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{lang}: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{lang}: {stderr}");
    assert_no_secret_in(&stderr, &secrets_of(&key, &generate));

    let sent = run(
        lang,
        &moto,
        &key,
        &[
            "send",
            "--key-arn",
            &moto.key_id,
            "--client-id",
            &client,
            "--generate-response-file",
            file,
            "--queue-url",
            &queue,
            "--idempotency-key",
            &format!("{lang}-1"),
        ],
    );
    let stdout = String::from_utf8_lossy(&sent.stdout).into_owned();
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{lang}: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let said: Value = serde_json::from_str(stdout.trim()).expect("send prints JSON");
    assert_eq!(said["idempotencyKey"], format!("{lang}-1"));
    assert_no_secret_in(&stdout, &secrets_of(&key, &generate));

    // The one message on the queue: sealed (no key or share in the clear), and it backs up.
    let out = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let messages = out.messages();
    assert_eq!(messages.len(), 1, "{lang}");
    let body = messages[0].body().unwrap().to_owned();
    assert_eq!(messages[0].message_id(), said["messageId"].as_str());
    assert_no_secret_in(&body, &secrets_of(&key, &generate));
    let answer = f.invoke(&sqs_event(&[("m-1".into(), body)])).await;
    assert_eq!(
        failed_ids(&answer),
        Vec::<String>::new(),
        "{lang}: {}",
        f.logs()
    );
    let pairs = backup_pairs(&sim, &client).await;
    assert_eq!(pairs.len(), 2, "{lang}");
    assert!(
        pairs.iter().all(|p| p["status"] == "completed"),
        "{lang}: {pairs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_node_client_seals_and_sends_what_the_function_backs_up() {
    sealed_and_sent_by("node", 1).await;
}

#[tokio::test]
async fn the_python_client_seals_and_sends_what_the_function_backs_up() {
    sealed_and_sent_by("python", 2).await;
}
