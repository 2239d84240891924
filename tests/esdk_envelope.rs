//! The AWS Encryption SDK envelope (the function's `Envelope`) with the real SDK clients against
//! moto server, its messages read back by the Python AWS Encryption SDK; `pbe1` strings, the old
//! format, still open through it.

mod common;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::checks::{key_of, wrapped_data_key};
use common::{Moto, python_decrypt};
use portal_backup::adapters::esdk::EsdkEnvelope;
use portal_backup::adapters::kms::KmsEnvelope;
use portal_backup::domain::ciphertext::{EncryptionContext, Format};
use portal_backup::domain::esdk_message::{SUITE_COMMIT_KEY, decode_text, read_header};
use portal_backup::domain::model::Curve;
use portal_backup::ports::envelope::{Envelope, EnvelopeError};
use serde_json::{Value, json};

const PLAINTEXT: &[u8] = br#"{"share":"eyJzZWNyZXQiOiJzaGFyZSJ9","id":"cmbackup1"}"#;

fn ctx(client: &str, pair: &str, curve: Curve) -> EncryptionContext {
    EncryptionContext::backup_share(client, pair, curve)
}

fn ctx_json(c: &EncryptionContext) -> Value {
    json!(c.to_kms())
}

/// Both writers: the function's (ESDK) and the old one (pbe1), one ciphertext each.
async fn both_formats(moto: &Moto, c: &EncryptionContext) -> [String; 2] {
    let esdk = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let pbe1 = KmsEnvelope::new(moto.kms(), &moto.key_id);
    [
        esdk.seal(c, PLAINTEXT).await.unwrap(),
        pbe1.seal(c, PLAINTEXT).await.unwrap(),
    ]
}

#[tokio::test]
async fn a_message_is_standard_esdk_and_opens_here_and_in_the_python_esdk() {
    let moto = Moto::start().await;
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Secp256k1);
    let sealed = envelope.seal(&c, PLAINTEXT).await.unwrap();
    // Standard base64 of the message itself, no prefix or wrapper.
    let message = STANDARD.decode(&sealed).expect("standard base64");
    assert_eq!(Format::of(&sealed), Format::Esdk);
    let header = read_header(&message).unwrap();
    assert_eq!(message[0], 0x02, "message format version 2");
    assert_eq!(header.suite, SUITE_COMMIT_KEY, "committing, unsigned suite");
    assert_eq!(header.kms_key_arn().unwrap(), moto.key_id, "the key's ARN");
    let stored: HashMap<String, String> = header.stored_context.into_iter().collect();
    assert_eq!(
        stored,
        c.to_kms(),
        "the context, stored for aws-encryption-cli"
    );
    assert!(
        !message.windows(PLAINTEXT.len()).any(|w| w == PLAINTEXT),
        "no plaintext in the message"
    );
    let again = envelope.seal(&c, PLAINTEXT).await.unwrap();
    assert_ne!(sealed, again, "a fresh data key and message id every time");

    assert_eq!(
        envelope.open(&c, &sealed).await.unwrap().expose(),
        PLAINTEXT
    );
    assert_eq!(
        python_decrypt(&moto.endpoint, &sealed, &ctx_json(&c)).unwrap(),
        PLAINTEXT,
        "the Python AWS Encryption SDK opens it"
    );
}

#[tokio::test]
async fn an_alias_seals_under_its_key_and_the_message_names_the_arn() {
    let moto = Moto::start().await;
    let kms = moto.kms();
    kms.create_alias()
        .alias_name("alias/esdk-test")
        .target_key_id(&moto.key_id)
        .send()
        .await
        .unwrap();
    let envelope = EsdkEnvelope::new(kms, "alias/esdk-test").unwrap();
    let c = ctx("client-1", "p", Curve::Ed25519);
    let sealed = envelope.seal(&c, PLAINTEXT).await.unwrap();
    assert_eq!(key_of(&sealed), moto.key_id);
    assert_eq!(
        envelope.open(&c, &sealed).await.unwrap().expose(),
        PLAINTEXT
    );
}

#[tokio::test]
async fn either_format_moved_to_another_client_pair_curve_or_purpose_does_not_open() {
    let moto = Moto::start().await;
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Secp256k1);
    for sealed in both_formats(&moto, &c).await {
        let format = Format::of(&sealed);
        assert_eq!(
            envelope.open(&c, &sealed).await.unwrap().expose(),
            PLAINTEXT,
            "{format:?}"
        );
        assert_eq!(
            python_decrypt(&moto.endpoint, &sealed, &ctx_json(&c)).unwrap(),
            PLAINTEXT
        );
        for other in [
            ctx("client-2", "cmbackup1", Curve::Secp256k1),
            ctx("client-1", "cmbackup2", Curve::Secp256k1),
            ctx("client-1", "cmbackup1", Curve::Ed25519),
            EncryptionContext::custodian_share("client-1", "cmbackup1"),
            EncryptionContext::generate_response("client-1"),
        ] {
            let err = envelope.open(&other, &sealed).await.unwrap_err();
            assert!(!err.is_transient(), "{format:?}: {err}");
            match (format, &err) {
                // The ESDK compares the keys the message stores before it asks KMS.
                (Format::Esdk, EnvelopeError::Authentication) => {}
                // A key it does not store goes into the KMS context, and KMS refuses (as for
                // every moved pbe1 string).
                (_, EnvelopeError::KeyService { code, .. }) => {
                    assert_eq!(code.as_deref(), Some("InvalidCiphertextException"));
                }
                _ => panic!("{format:?}: unexpected {err}"),
            }
            assert!(
                python_decrypt(&moto.endpoint, &sealed, &ctx_json(&other)).is_err(),
                "{format:?}: Python refuses it too"
            );
        }
    }
}

#[tokio::test]
async fn tampered_truncated_or_foreign_messages_are_clear_errors() {
    let moto = Moto::start().await;
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Ed25519);
    let sealed = envelope.seal(&c, PLAINTEXT).await.unwrap();
    let message = decode_text(&sealed).unwrap();
    let text = |m: &[u8]| STANDARD.encode(m);

    // One flipped bit in the last frame's ciphertext: KMS unwraps the key, AES-GCM refuses.
    let mut body = message.clone();
    let at = body.len() - 20;
    body[at] ^= 0x01;
    assert!(matches!(
        envelope.open(&c, &text(&body)).await,
        Err(EnvelopeError::Authentication)
    ));
    assert!(python_decrypt(&moto.endpoint, &text(&body), &ctx_json(&c)).is_err());

    // One flipped bit in the wrapped data key: KMS refuses it.
    let edk = wrapped_data_key(&sealed);
    let pos = message
        .windows(edk.len())
        .position(|w| w == edk.as_slice())
        .unwrap();
    let mut bad_key = message.clone();
    bad_key[pos + edk.len() - 1] ^= 0x01;
    let err = envelope.open(&c, &text(&bad_key)).await.unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::KeyService {
                transient: false,
                ..
            }
        ),
        "{err}"
    );

    // Cut short, not base64, an old unsigned-version byte, an empty string.
    for (what, bad) in [
        ("truncated", text(&message[..message.len() - 30])),
        ("header only", text(&message[..60])),
        ("not base64", "AgR4 not base64!".to_owned()),
        ("version 1", {
            let mut v1 = message.clone();
            v1[0] = 0x01;
            text(&v1)
        }),
        ("empty", String::new()),
    ] {
        let err = envelope.open(&c, &bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::Malformed(_) | EnvelopeError::Authentication
            ),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn an_unknown_key_is_permanent_and_kms_out_of_reach_is_transient() {
    let moto = Moto::start().await;
    let c = ctx("c", "p", Curve::Secp256k1);
    let unknown = EsdkEnvelope::new(
        moto.kms(),
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    )
    .unwrap();
    let err = unknown.seal(&c, PLAINTEXT).await.unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::KeyService {
                transient: false,
                ..
            }
        ),
        "{err}"
    );

    let sealed = EsdkEnvelope::new(moto.kms(), &moto.key_id)
        .unwrap()
        .seal(&c, PLAINTEXT)
        .await
        .unwrap();
    // A KMS endpoint nobody listens on: the SDK retries, then the error says retry later.
    let sdk = common::sdk_config("http://127.0.0.1:9").await;
    let down = EsdkEnvelope::new(aws_sdk_kms::Client::new(&sdk), &moto.key_id).unwrap();
    for err in [
        down.seal(&c, PLAINTEXT).await.unwrap_err(),
        down.open(&c, &sealed).await.unwrap_err(),
    ] {
        assert!(err.is_transient(), "{err}");
        assert!(!err.to_string().contains("127.0.0.1:9"), "{err}");
    }
}

/// The function's runtime has one thread; the SDK's synchronous core runs on a pool of threads
/// of its own, so many seals and opens at once neither block it nor deadlock, also when they are
/// more than the pool's threads (at most 32) and queue for one.
#[tokio::test]
async fn many_seals_and_opens_at_once_on_a_one_thread_runtime() {
    let moto = Moto::start().await;
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let started = std::time::Instant::now();
    let work = (0..40).map(|i| {
        let envelope = envelope.clone();
        async move {
            let c = ctx("client-1", &format!("p{i}"), Curve::Ed25519);
            let sealed = envelope.seal(&c, PLAINTEXT).await.unwrap();
            envelope.open(&c, &sealed).await.unwrap()
        }
    });
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join_all(work),
    )
    .await
    .expect("no deadlock");
    ticker.abort();
    assert!(opened.iter().all(|p| p.expose() == PLAINTEXT));
    // The runtime stayed free while the SDK worked: its timer ran throughout.
    let elapsed = started.elapsed().as_millis() as u32;
    // (A blocked runtime ticks about never; a tenth of the ticks due is plenty on a busy host.)
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) * 2 * 10 >= elapsed,
        "the caller's runtime was blocked: {} ticks in {elapsed} ms",
        ticks.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// The README's emergency command: `aws-encryption-cli` (another implementation: the AWS
/// Encryption SDK for Python 3.x, in `.venv-cli`) opens a share as the function stored it, with
/// nothing of this project, given the key and the context; a wrong context writes nothing.
#[tokio::test]
async fn aws_encryption_cli_opens_a_stored_backup_by_hand_as_the_readme_says() {
    use portal_backup::adapters::dynamodb::DynamoStore;
    use portal_backup::ports::store::{BackupStore, StoredShare};
    let moto = Moto::start().await;
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Ed25519);
    DynamoStore::new(moto.dynamodb(), &moto.table)
        .put(&StoredShare {
            client_id: "client-1".into(),
            backup_share_pair_id: "cmbackup1".into(),
            curve: Curve::Ed25519,
            signing_share_pair_id: "sig-1".into(),
            cipher_text: envelope.seal(&c, PLAINTEXT).await.unwrap(),
            created_at: 1_764_000_000,
            public: None,
        })
        .await
        .unwrap();
    // Step 1 (`aws dynamodb get-item … --query Item.cipherText.B | base64 -d`): the item's bytes.
    let item = moto.share_item("client-1", "cmbackup1").await.unwrap();
    let message = item["cipherText"].as_b().expect("binary").as_ref().to_vec();
    let dir = std::env::temp_dir().join(format!("pb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output, meta) = (
        dir.join("share.msg"),
        dir.join("share.json"),
        dir.join("metadata.json"),
    );
    std::fs::write(&input, &message).unwrap();
    // Step 2, the README's command.
    let cli = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.venv-cli/bin/aws-encryption-cli"
    );
    let open = |context: [&str; 3]| {
        std::process::Command::new(cli)
            .args(["--decrypt", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--wrapping-keys")
            .arg(format!("key={}", moto.key_id))
            .args(["--commitment-policy", "require-encrypt-require-decrypt"])
            .arg("--encryption-context")
            .args(context)
            .arg("--metadata-output")
            .arg(&meta)
            .env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("aws-encryption-cli runs (scripts/lib.sh installs it into .venv-cli)")
    };
    let ok = open([
        "clientId=client-1",
        "backupSharePairId=cmbackup1",
        "curve=ED25519",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(&output).unwrap(), PLAINTEXT);
    std::fs::remove_file(&output).unwrap();
    // Another client's context: no output (the CLI exits 0 all the same, as the README warns).
    let _ = open([
        "clientId=client-2",
        "backupSharePairId=cmbackup1",
        "curve=ED25519",
    ]);
    assert!(!output.exists(), "a wrong context opens nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message sealed (here by the Python ESDK, as a producer would) under its context plus a key of
/// its own is refused: a message of this function carries exactly its context.
#[tokio::test]
async fn a_message_carrying_more_than_its_context_is_refused() {
    let moto = Moto::start().await;
    let seal = |context: &str| {
        let script = format!(
            "import sys; sys.path.insert(0, {root:?}); import pbtool; \
             kms, _, _ = pbtool.clients({ep:?}, 'us-east-1'); \
             print(pbtool.esdk_encrypt(kms, {key:?}, b'payload', {context}))",
            root = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
            ep = moto.endpoint,
            key = moto.key_id,
        );
        let out = std::process::Command::new(common::venv_python())
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = EncryptionContext::generate_response("c1");
    let exact = seal("{'clientId': 'c1', 'purpose': 'generate-response'}");
    assert_eq!(
        envelope.open(&c, &exact).await.unwrap().expose(),
        b"payload"
    );
    let more = seal("{'clientId': 'c1', 'purpose': 'generate-response', 'extra': 'y'}");
    assert!(matches!(
        envelope.open(&c, &more).await,
        Err(EnvelopeError::Authentication)
    ));
}
