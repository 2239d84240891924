//! The way out without Portal, end to end: a self-managed backup through both built functions
//! (the backup function and, behind a local API Gateway, the custody function Portal's
//! simulator calls), then the `portal-backup-eject` binary reads each half from its own table,
//! opens it with its own AWS profile under its exact context, combines them and proves the key:
//! the wallet it names is the simulator's wallet, and the key file holds the key alone, mode 0600.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::checks::{assert_no_secret_in, backup_pairs, secrets_of};
use common::{Function, Moto, Sim, Webhooks, failed_ids, function_env, message, sqs_event};

/// The eject tool, built beside the function by the workspace's build.
fn eject_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_portal-backup")).with_file_name("portal-backup-eject");
    assert!(
        bin.exists(),
        "{} is built with the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Two people's AWS profiles (moto takes any credentials): one opens the client half, the
/// other the custodian half.
fn profiles(dir: &Path) -> (PathBuf, PathBuf) {
    let config = dir.join("config");
    let credentials = dir.join("credentials");
    std::fs::write(
        &config,
        "[profile client-holder]\nregion = us-east-1\n[profile custodian-holder]\nregion = us-east-1\n",
    )
    .unwrap();
    std::fs::write(
        &credentials,
        "[client-holder]\naws_access_key_id = alice\naws_secret_access_key = alice-secret\n\
         [custodian-holder]\naws_access_key_id = bob\naws_secret_access_key = bob-secret\n",
    )
    .unwrap();
    (config, credentials)
}

#[tokio::test]
async fn a_self_managed_backup_ejects_from_its_two_tables_to_the_simulators_wallet() {
    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let _hooks = Webhooks::start(&moto, &sim).await;
    let f = Function::start(&function_env(&moto, &sim, "SELF_MANAGED")).await;
    let (client, key, generate) = sim.new_client(1).await;
    let answer = f
        .invoke(&sqs_event(&[(
            "m-1".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());

    let dir = std::env::temp_dir().join(format!("eject-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, credentials) = profiles(&dir);
    let pairs = backup_pairs(&sim, &client).await;
    assert_eq!(pairs.len(), 2);
    let mut secrets = secrets_of(&key, &generate);
    for pair in &pairs {
        let (curve, id) = (
            pair["curve"].as_str().unwrap(),
            pair["id"].as_str().unwrap(),
        );
        let out = dir.join(format!("{curve}.key"));
        let _ = std::fs::remove_file(&out);
        let output = Command::new(eject_bin())
            .args(["--curve", curve, "--backup-table", &moto.table])
            .args(["--custody-table", &moto.custody_table])
            .args(["--client-id", &client, "--backup-share-pair-id", id])
            .args(["--client-profile", "client-holder"])
            .args(["--custodian-profile", "custodian-holder"])
            .arg("--out")
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{curve}: {stderr}");
        // The wallet the key proves is the simulator's wallet (public key and address).
        let address = pair["address"].as_str().unwrap();
        assert!(stdout.contains(address), "{curve}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "public key: {}",
                pair["publicKey"].as_str().unwrap()
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains("partial checks: client backup share, custodian backup share"),
            "{stdout}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{curve}");
        }
        let key_text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(key_text.lines().count(), 1);
        match curve {
            "SECP256K1" => assert_eq!(key_text.trim().len(), 64),
            _ => assert!(bs58_len(key_text.trim()) == 32, "{curve}"),
        }
        // Nothing the tool prints is a share, and the key only went to its file.
        assert!(!stdout.contains(key_text.trim()) && !stderr.contains(key_text.trim()));
        secrets.push(key_text.trim().to_owned());
        assert_no_secret_in(&format!("{stdout}{stderr}"), &secrets_of(&key, &generate));
    }

    // A wrong context (another pair's id) is refused by KMS and nothing is written.
    let out = dir.join("wrong.key");
    let other = pairs[1]["id"].as_str().unwrap();
    let output = Command::new(eject_bin())
        .args(["--curve", "SECP256K1", "--backup-table", &moto.table])
        .args(["--custody-table", &moto.custody_table])
        .args(["--client-id", &client, "--backup-share-pair-id", other])
        .arg("--out")
        .arg(&out)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The length of a base58 string's bytes.
fn bs58_len(text: &str) -> usize {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut bytes: Vec<u8> = Vec::new();
    for c in text.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c).expect("base58") as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    bytes.len() + text.bytes().take_while(|&c| c == b'1').count()
}

/// Portal-managed eject through the operator action: with the custodian API key from Secrets
/// Manager the operator function enables eject at Portal and answers both halves sealed; the
/// tool opens them (the recovery role's profile, here moto's credentials), proves the key to the
/// simulator's wallet, and the operator action completes the eject.
#[tokio::test]
async fn a_portal_managed_eject_through_the_operator_action_gives_the_wallets_key() {
    use common::operator_env;
    use devstack::runtime_api::Answer;
    use serde_json::{Value, json};

    let (moto, sim) = tokio::join!(Moto::start(), Sim::start());
    let custodian_key = format!("custodian-key-{}", std::process::id());
    sim.admin("custodians", json!({"apiKey": custodian_key}))
        .await;
    let secret_arn = aws_sdk_secretsmanager::Client::new(&moto.sdk)
        .create_secret()
        .name(format!("portal-custodian-{}", std::process::id()))
        .secret_string(&custodian_key)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let env = function_env(&moto, &sim, "PORTAL_MANAGED");
    let f = Function::start(&env).await;
    let mut op_env = operator_env(&env);
    op_env.push(("CUSTODIAN_API_KEY_SECRET_ARN".into(), secret_arn));
    let op = Function::start(&op_env).await;
    let (client, key, generate) = sim.new_client(1).await;
    let answer = f
        .invoke(&sqs_event(&[(
            "m-1".into(),
            message(&client, &key, &generate, None),
        )]))
        .await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{}", f.logs());
    let pairs = backup_pairs(&sim, &client).await;
    let secp = pairs.iter().find(|p| p["curve"] == "SECP256K1").unwrap();
    let wallet = secp["walletId"].as_str().unwrap();

    let eject = |action: &str| json!({"action": action, "clientId": client, "walletId": wallet, "clientApiKey": key});
    let Answer::Response(answer) = op.invoke(&eject("eject")).await else {
        panic!("eject failed: {}", op.logs())
    };
    assert_eq!(answer["curve"], "SECP256K1", "{answer}");
    assert_eq!(answer["backupSharePairId"], secp["id"], "{answer}");
    assert_eq!(answer["address"], secp["address"], "{answer}");
    assert_eq!(answer["custodianKeyCheck"], "proven", "{answer}");
    let sealed = answer["sealedCustodianBackupShare"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(sealed).is_err(),
        "sealed, not JSON"
    );
    assert!(
        !answer.to_string().contains("clientBk"),
        "no custodian share in the clear"
    );
    assert!(
        !op.logs().contains(&custodian_key),
        "the custodian key is never logged"
    );
    assert_eq!(sim.calls("enable-eject").await, 1);

    let dir = std::env::temp_dir().join(format!("eject-pm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let answer_path = dir.join("answer.json");
    std::fs::write(&answer_path, answer.to_string()).unwrap();
    let out = dir.join("key");
    let _ = std::fs::remove_file(&out);
    let output = Command::new(eject_bin())
        .args(["--curve", "SECP256K1", "--eject-answer"])
        .arg(&answer_path)
        .arg("--out")
        .arg(&out)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(secp["address"].as_str().unwrap()),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim().len(), 64);

    let Answer::Response(done) = op.invoke(&eject("complete-eject")).await else {
        panic!("complete-eject failed: {}", op.logs())
    };
    assert_eq!(done["completed"], true, "{done}");
    assert_eq!(sim.calls("complete-eject").await, 1);
    // Portal now refuses the halves: the eject is over.
    let Answer::Error(e) = op.invoke(&eject("eject")).await else {
        panic!("a completed eject answers no halves")
    };
    assert!(e.to_string().contains("409"), "{e:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
