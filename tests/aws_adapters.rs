//! The `pbe1` envelope (old backups, opened by the function's ESDK envelope) and the DynamoDB
//! store, with the real SDK clients against moto server.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Moto, python_decrypt};
use portal_backup::adapters::dynamodb::{DynamoStore, client_pk};
use portal_backup::adapters::esdk::EsdkEnvelope;
use portal_backup::adapters::kms::KmsEnvelope;
use portal_backup::domain::ciphertext::EncryptionContext;
use portal_backup::domain::model::Curve;
use portal_backup::ports::custody::{CustodianCaps, CustodianShare, CustodianStore, Put};
use portal_backup::ports::envelope::{Envelope, EnvelopeError};
use portal_backup::ports::store::{BackupStore, StoreError, StoredShare};
use serde_json::json;

const PLAINTEXT: &[u8] = br#"{"share":"eyJzZWNyZXQiOiJzaGFyZSJ9","id":"cmbackup1"}"#;

fn ctx(client: &str, pair: &str, curve: Curve) -> EncryptionContext {
    EncryptionContext::backup_share(client, pair, curve)
}

fn ctx_json(client: &str, pair: &str, curve: Curve) -> serde_json::Value {
    json!({"clientId": client, "backupSharePairId": pair, "curve": curve.as_str()})
}

#[tokio::test]
async fn sealed_share_opens_here_and_in_an_independent_python_implementation() {
    let moto = Moto::start().await;
    let writer = KmsEnvelope::new(moto.kms(), &moto.key_id);
    // pbe1 strings are written by the old envelope and opened by the function's.
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Secp256k1);
    let sealed = writer.seal(&c, PLAINTEXT).await.unwrap();
    assert!(sealed.starts_with("pbe1."));
    let key_field = sealed.split('.').nth(1).unwrap();
    assert_eq!(
        B64.decode(key_field).unwrap(),
        moto.key_id.as_bytes(),
        "the key id is the key's ARN"
    );
    let again = writer.seal(&c, PLAINTEXT).await.unwrap();
    assert_ne!(sealed, again, "a fresh data key and nonce every time");

    assert_eq!(
        envelope.open(&c, &sealed).await.unwrap().expose(),
        PLAINTEXT
    );
    let by_python = python_decrypt(
        &moto.endpoint,
        &sealed,
        &ctx_json("client-1", "cmbackup1", Curve::Secp256k1),
    );
    assert_eq!(by_python.unwrap(), PLAINTEXT);
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_client_pair_or_curve_does_not_open() {
    let moto = Moto::start().await;
    let writer = KmsEnvelope::new(moto.kms(), &moto.key_id);
    // pbe1 strings are written by the old envelope and opened by the function's.
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let sealed = writer
        .seal(&ctx("client-1", "cmbackup1", Curve::Secp256k1), PLAINTEXT)
        .await
        .unwrap();
    for (client, pair, curve) in [
        ("client-2", "cmbackup1", Curve::Secp256k1),
        ("client-1", "cmbackup2", Curve::Secp256k1),
        ("client-1", "cmbackup1", Curve::Ed25519),
    ] {
        let err = envelope
            .open(&ctx(client, pair, curve), &sealed)
            .await
            .unwrap_err();
        match &err {
            EnvelopeError::KeyService {
                operation,
                transient,
                code,
                ..
            } => {
                assert_eq!(*operation, "Decrypt");
                assert!(!transient);
                assert_eq!(code.as_deref(), Some("InvalidCiphertextException"), "{err}");
            }
            other => panic!("expected KMS to refuse the context, got {other}"),
        }
        assert!(python_decrypt(&moto.endpoint, &sealed, &ctx_json(client, pair, curve)).is_err());
    }
}

#[tokio::test]
async fn tampered_truncated_or_unknown_ciphertexts_are_clear_errors() {
    let moto = Moto::start().await;
    let writer = KmsEnvelope::new(moto.kms(), &moto.key_id);
    // pbe1 strings are written by the old envelope and opened by the function's.
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Ed25519);
    let sealed = writer.seal(&c, PLAINTEXT).await.unwrap();
    let parts: Vec<&str> = sealed.split('.').collect();

    // One flipped bit in the AES-GCM ciphertext: KMS still unwraps the key, GCM refuses.
    let mut body = B64.decode(parts[4]).unwrap();
    body[3] ^= 0x01;
    let flipped = [parts[0], parts[1], parts[2], parts[3], &B64.encode(&body)].join(".");
    assert!(matches!(
        envelope.open(&c, &flipped).await,
        Err(EnvelopeError::Authentication)
    ));
    assert!(
        python_decrypt(
            &moto.endpoint,
            &flipped,
            &ctx_json("client-1", "cmbackup1", Curve::Ed25519)
        )
        .is_err()
    );

    // A flipped bit in the wrapped data key: KMS refuses it.
    let mut edk = B64.decode(parts[2]).unwrap();
    let last = edk.len() - 1;
    edk[last] ^= 0x01;
    let bad_key = [parts[0], parts[1], &B64.encode(&edk), parts[3], parts[4]].join(".");
    assert!(matches!(
        envelope.open(&c, &bad_key).await,
        Err(EnvelopeError::KeyService {
            transient: false,
            ..
        })
    ));

    // Truncated, extended, other versions.
    let truncated = &sealed[..sealed.len() - 30];
    assert!(matches!(
        envelope.open(&c, truncated).await,
        Err(EnvelopeError::Authentication | EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        envelope.open(&c, &format!("{sealed}.AA")).await,
        Err(EnvelopeError::Malformed(_))
    ));
    // Not `pbe1.` and not base64 (an ESDK message): refused by name.
    assert!(matches!(
        envelope.open(&c, &sealed.replacen("pbe1", "pbe9", 1)).await,
        Err(EnvelopeError::Malformed(_))
    ));
}

#[tokio::test]
async fn an_unknown_key_is_a_permanent_kms_error() {
    let moto = Moto::start().await;
    let writer = KmsEnvelope::new(
        moto.kms(),
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    );
    let err = writer
        .seal(&ctx("c", "p", Curve::Secp256k1), PLAINTEXT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::KeyService {
                operation: "GenerateDataKey",
                transient: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("GenerateDataKey"), "{err}");
}

fn share(client: &str, pair: &str, curve: Curve, ct: &str) -> StoredShare {
    StoredShare {
        client_id: client.into(),
        backup_share_pair_id: pair.into(),
        curve,
        signing_share_pair_id: format!("sig-{pair}"),
        cipher_text: ct.into(),
        created_at: 1_764_000_000,
        public: None,
    }
}

/// One Query page of a client's items, as DynamoDB answers it (no paging).
async fn query_client(
    moto: &Moto,
    client: &str,
) -> aws_sdk_dynamodb::operation::query::QueryOutput {
    moto.dynamodb()
        .query()
        .table_name(&moto.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(client_pk(client)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn store_writes_once_never_overwrites_and_reads_back_consistently() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), &moto.table);
    let a = share("client-1", "cmb1", Curve::Secp256k1, "pbe1.ct-a");
    store.put(&a).await.unwrap();
    store
        .put(&a)
        .await
        .expect("writing the same ciphertext again is a harmless retry");
    let other = share("client-1", "cmb1", Curve::Secp256k1, "pbe1.ct-other");
    assert!(matches!(store.put(&other).await, Err(StoreError::Conflict(id)) if id == "cmb1"));
    assert_eq!(
        store
            .cipher_text("client-1", "cmb1")
            .await
            .unwrap()
            .as_deref(),
        Some("pbe1.ct-a")
    );
    // An ESDK message (standard base64 as text) is stored as its bytes, a binary attribute, and
    // read back as the same text; the same bytes again pass the write condition as a retry.
    let esdk = share("client-3", "cmb9", Curve::Ed25519, "AgR4+/8AAQID");
    store.put(&esdk).await.unwrap();
    store
        .put(&esdk)
        .await
        .expect("the same bytes: a harmless retry");
    assert!(matches!(
        store
            .put(&share("client-3", "cmb9", Curve::Ed25519, "AgR4+/8AAQIE"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let item = moto.share_item("client-3", "cmb9").await.unwrap();
    assert_eq!(
        item["cipherText"].as_b().expect("binary").as_ref(),
        [0x02, 0x04, 0x78, 0xfb, 0xff, 0x00, 0x01, 0x02, 0x03]
    );
    assert_eq!(
        store
            .cipher_text("client-3", "cmb9")
            .await
            .unwrap()
            .as_deref(),
        Some("AgR4+/8AAQID")
    );
    assert_eq!(
        store.cipher_text("client-1", "missing").await.unwrap(),
        None
    );
    assert_eq!(
        store.cipher_text("client-2", "cmb1").await.unwrap(),
        None,
        "keys are per client"
    );

    // Every backup of a client is one Query away.
    store
        .put(&share("client-1", "cmb2", Curve::Ed25519, "pbe1.ct-b"))
        .await
        .unwrap();
    store
        .put(&share("client-2", "cmb3", Curve::Ed25519, "pbe1.ct-c"))
        .await
        .unwrap();
    let listed = query_client(&moto, "client-1").await;
    let mut ids: Vec<_> = listed
        .items()
        .iter()
        .map(|i| i["backupSharePairId"].as_s().unwrap().clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["cmb1", "cmb2"]);
    let item = &listed.items()[0];
    for attr in [
        "clientId",
        "curve",
        "signingSharePairId",
        "cipherText",
        "createdAt",
    ] {
        assert!(item.contains_key(attr), "{attr} stored");
    }
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_read_is_listed_as_such_never_dropped() {
    use portal_backup::ports::catalogue::Catalogue;
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), &moto.table);
    moto.dynamodb()
        .put_item()
        .table_name(&moto.table)
        .item("pk", AttributeValue::S(client_pk("client-9")))
        .item("sk", AttributeValue::S("BACKUP#damaged".into()))
        .item("status", AttributeValue::S("COMPLETED".into()))
        .send()
        .await
        .unwrap();
    let listed = Catalogue::list(&store, "client-9").await.unwrap();
    assert!(listed.backups.is_empty());
    assert_eq!(listed.unreadable, ["BACKUP#damaged"]);
}

#[tokio::test]
async fn custodian_shares_are_written_once_and_fetched_across_query_pages() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), &moto.table);
    // 30 shares of 40 KB each: more than the 1 MB a DynamoDB Query page holds.
    let big = "A".repeat(40_000);
    let custodian = |client: &str, n: usize| CustodianShare {
        client_id: client.into(),
        backup_share_pair_id: format!("cmb{n:03}"),
        backup_method: "CUSTOM".into(),
        cipher_text: format!("pbe1.{n:03}.{big}"),
        updated_at: 1_764_000_000 + n as u64,
        answer_bytes: 1_000 + n as u64,
        wallet: None,
    };
    let caps = CustodianCaps {
        shares: 30,
        bytes: 4 << 20,
    };
    for n in 0..30 {
        assert_eq!(
            store
                .put_custodian_once(&custodian("client-1", n), caps)
                .await
                .unwrap(),
            Put::Written
        );
    }
    store
        .put_custodian_once(&custodian("client-2", 99), caps)
        .await
        .unwrap();
    let mut replaced = custodian("client-1", 7);
    replaced.cipher_text = "pbe1.forged".into();
    let Put::Exists(kept) = store.put_custodian_once(&replaced, caps).await.unwrap() else {
        panic!("a second write of a pair must find the first, even at the cap")
    };
    assert_eq!(kept, custodian("client-1", 7), "the first share stays");
    // The client is at its cap of 30 shares: one more is refused, atomically with the count.
    assert_eq!(
        store
            .put_custodian_once(&custodian("client-1", 31), caps)
            .await
            .unwrap(),
        Put::OverCap
    );
    // The byte cap: client-2 holds 1,099 bytes; 4,000 more would pass 5,000.
    let bytes_cap = CustodianCaps {
        shares: 30,
        bytes: 5_000,
    };
    let mut heavy = custodian("client-2", 100);
    heavy.answer_bytes = 4_000;
    assert_eq!(
        store.put_custodian_once(&heavy, bytes_cap).await.unwrap(),
        Put::OverCap
    );
    heavy.answer_bytes = 3_000;
    assert_eq!(
        store.put_custodian_once(&heavy, bytes_cap).await.unwrap(),
        Put::Written
    );

    // The table answers in pages (so the fetch below must follow LastEvaluatedKey).
    let first_page = query_client(&moto, "client-1").await;
    assert!(
        first_page.last_evaluated_key.is_some() && first_page.items().len() < 30,
        "moto pages a Query at 1 MB ({} items on the first page)",
        first_page.items().len()
    );
    let mut all = store.custodian_shares("client-1").await.unwrap();
    all.sort_by(|a, b| a.backup_share_pair_id.cmp(&b.backup_share_pair_id));
    assert_eq!(
        all,
        (0..30)
            .map(|n| custodian("client-1", n))
            .collect::<Vec<_>>(),
        "every share of the client, none of another's"
    );
}

#[tokio::test]
async fn both_shares_read_back_in_one_round_trip() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), &moto.table);
    store
        .put(&share("client-1", "cmb1", Curve::Secp256k1, "pbe1.ct-a"))
        .await
        .unwrap();
    store
        .put(&share("client-1", "cmb2", Curve::Ed25519, "pbe1.ct-b"))
        .await
        .unwrap();
    assert_eq!(
        store
            .cipher_texts("client-1", ["cmb1", "cmb2"])
            .await
            .unwrap(),
        [Some("pbe1.ct-a".to_owned()), Some("pbe1.ct-b".to_owned())]
    );
    assert_eq!(
        store
            .cipher_texts("client-1", ["cmb2", "cmb1"])
            .await
            .unwrap(),
        [Some("pbe1.ct-b".to_owned()), Some("pbe1.ct-a".to_owned())],
        "answers in the order asked, whatever order DynamoDB returns"
    );
    assert_eq!(
        store
            .cipher_texts("client-1", ["cmb1", "missing"])
            .await
            .unwrap(),
        [Some("pbe1.ct-a".to_owned()), None]
    );
    assert_eq!(
        store
            .cipher_texts("client-2", ["cmb1", "cmb2"])
            .await
            .unwrap(),
        [None, None],
        "keys are per client"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_naming_dynamodb() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "no-such-table");
    let err = store
        .put(&share("c", "p", Curve::Secp256k1, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Backend {
                operation: "PutItem",
                transient: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ciphertext_pointed_at_another_key_does_not_open() {
    let moto = Moto::start().await;
    let writer = KmsEnvelope::new(moto.kms(), &moto.key_id);
    // pbe1 strings are written by the old envelope and opened by the function's.
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id).unwrap();
    let c = ctx("client-1", "cmbackup1", Curve::Secp256k1);
    let sealed = writer.seal(&c, PLAINTEXT).await.unwrap();
    let other_key = moto.new_key().await;
    let mut parts: Vec<String> = sealed.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(other_key.as_bytes());
    let moved = parts.join(".");
    // A key the function was not told of: refused from the string alone, before KMS.
    let err = envelope.open(&c, &moved).await.unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::ForeignKey(k) if *k == other_key),
        "{err}"
    );
    assert!(!err.is_transient());
    // Listed as retired, it reaches KMS, which refuses a data key another key wrapped.
    let envelope = EsdkEnvelope::new(moto.kms(), &moto.key_id)
        .unwrap()
        .with_retired_keys(vec![other_key.clone()]);
    let err = envelope.open(&c, &moved).await.unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::KeyService {
                operation: "Decrypt",
                transient: false,
                ..
            }
        ),
        "{err}"
    );

    // And a data key wrapped under another key, with that key named: KMS unwraps it, but it is
    // not the data key this ciphertext was sealed with, so GCM refuses.
    let other = KmsEnvelope::new(moto.kms(), &other_key);
    let foreign = other.seal(&c, b"other plaintext").await.unwrap();
    let foreign: Vec<&str> = foreign.split('.').collect();
    let spliced = [
        parts[0].as_str(),
        foreign[1],
        foreign[2],
        &parts[3],
        &parts[4],
    ]
    .join(".");
    assert!(matches!(
        envelope.open(&c, &spliced).await,
        Err(EnvelopeError::Authentication)
    ));
}

mod checkpoints {
    use super::*;
    use portal_backup::domain::checkpoint::{BackupKey, Progress, SealedRecord, Status};
    use portal_backup::domain::model::BackupMode;
    use portal_backup::ports::checkpoints::{Acquired, Checkpoints};

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    fn fresh() -> Progress {
        Progress {
            status: Status::InProgress,
            backup_mode: BackupMode::SelfManaged,
            signing_share_pair_ids: ["sig-a".into(), "sig-b".into()],
            shares: None,
        }
    }

    /// The checkpoint record's status and lease owner, read straight from the table.
    async fn record(moto: &Moto, key: &BackupKey) -> (String, String) {
        let item = moto
            .item(&client_pk(&key.client_id), &format!("BACKUP#{}", key.key))
            .await
            .unwrap();
        (
            item["status"].as_s().unwrap().clone(),
            item["leaseOwner"].as_s().unwrap().clone(),
        )
    }

    #[tokio::test]
    async fn the_backed_up_checkpoint_and_both_shares_are_written_all_or_nothing() {
        let moto = Moto::start().await;
        let store = DynamoStore::new(moto.dynamodb(), &moto.table);
        let backed_up = |a: &str, b: &str| Progress {
            status: Status::BackedUp,
            shares: Some([
                SealedRecord {
                    curve: Curve::Secp256k1,
                    id: a.into(),
                    cipher_text: format!("pbe1.{a}"),
                    public: None,
                },
                SealedRecord {
                    curve: Curve::Ed25519,
                    id: b.into(),
                    cipher_text: format!("pbe1.{b}"),
                    public: None,
                },
            ]),
            ..fresh()
        };
        let items = |a: &str, b: &str| {
            [
                share("client-t", a, Curve::Secp256k1, &format!("pbe1.{a}")),
                share("client-t", b, Curve::Ed25519, &format!("pbe1.{b}")),
            ]
        };
        let key = BackupKey::new("client-t", Some("tx-1"), &fresh().signing_share_pair_ids);
        assert!(matches!(
            store
                .acquire(&key, "holder", now_ms() + 60_000, &fresh())
                .await
                .unwrap(),
            Acquired::Run(_)
        ));

        // Not the lease holder: nothing is written, neither checkpoint nor shares.
        let err = store
            .advance_storing(
                &key,
                "intruder",
                Status::InProgress,
                &backed_up("tx-a", "tx-b"),
                &items("tx-a", "tx-b"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
        assert_eq!(
            store
                .cipher_texts("client-t", ["tx-a", "tx-b"])
                .await
                .unwrap(),
            [None, None]
        );

        // A share item holding another ciphertext: a conflict naming it, and nothing written.
        store
            .put(&share(
                "client-t",
                "tx-b",
                Curve::Ed25519,
                "pbe1.someone-else",
            ))
            .await
            .unwrap();
        let err = store
            .advance_storing(
                &key,
                "holder",
                Status::InProgress,
                &backed_up("tx-a", "tx-b"),
                &items("tx-a", "tx-b"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(id) if id == "tx-b"),
            "{err}"
        );
        assert_eq!(
            record(&moto, &key).await,
            ("IN_PROGRESS".into(), "holder".into())
        );
        assert_eq!(
            store
                .cipher_texts("client-t", ["tx-a", "tx-b"])
                .await
                .unwrap(),
            [None, Some("pbe1.someone-else".to_owned())],
            "the other share was not written either"
        );

        // The holder, fresh items: checkpoint and both shares land together.
        store
            .advance_storing(
                &key,
                "holder",
                Status::InProgress,
                &backed_up("tx-c", "tx-d"),
                &items("tx-c", "tx-d"),
            )
            .await
            .unwrap();
        assert_eq!(
            record(&moto, &key).await,
            ("BACKED_UP".into(), "holder".into())
        );
        assert_eq!(
            store
                .cipher_texts("client-t", ["tx-c", "tx-d"])
                .await
                .unwrap(),
            [Some("pbe1.tx-c".to_owned()), Some("pbe1.tx-d".to_owned())]
        );
        store.release(&key, "holder").await.unwrap();
        match store
            .acquire(&key, "next", now_ms() + 60_000, &fresh())
            .await
            .unwrap()
        {
            Acquired::Run(p) => assert_eq!(p, backed_up("tx-c", "tx-d"), "the shares resume"),
            other => panic!("expected to resume, got {other:?}"),
        }
        // From the wrong status, even for the holder: refused.
        assert!(matches!(
            store
                .advance_storing(
                    &key,
                    "next",
                    Status::InProgress,
                    &backed_up("tx-e", "tx-f"),
                    &items("tx-e", "tx-f"),
                )
                .await,
            Err(StoreError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn one_lease_among_concurrent_deliveries_and_checkpoints_survive_its_expiry() {
        let moto = Moto::start().await;
        let store = DynamoStore::new(moto.dynamodb(), &moto.table);
        let key = BackupKey::new("client-1", None, &["sig-a".into(), "sig-b".into()]);
        let until = now_ms() + 60_000;
        let owners: Vec<String> = (0..5).map(|n| format!("owner-{n}")).collect();
        let first = fresh();
        let results =
            futures::future::join_all(owners.iter().map(|o| store.acquire(&key, o, until, &first)))
                .await;
        let runs = results
            .iter()
            .filter(|r| matches!(r, Ok(Acquired::Run(_))))
            .count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Ok(Acquired::Busy)))
            .count();
        assert_eq!((runs, busy), (1, 4), "{results:?}");
        let winner = &owners[results
            .iter()
            .position(|r| matches!(r, Ok(Acquired::Run(_))))
            .unwrap()];
        let loser = owners.iter().find(|o| *o != winner).unwrap();

        // Only the holder advances, and only from the expected status.
        let shares = [
            SealedRecord {
                curve: Curve::Secp256k1,
                id: "bk-1".into(),
                cipher_text: "pbe1.ct1".into(),
                public: None,
            },
            SealedRecord {
                curve: Curve::Ed25519,
                id: "bk-2".into(),
                cipher_text: "pbe1.ct2".into(),
                public: None,
            },
        ];
        let backed_up = Progress {
            status: Status::BackedUp,
            shares: Some(shares),
            ..fresh()
        };
        assert!(matches!(
            store
                .advance(&key, loser, Status::InProgress, &backed_up)
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        assert!(
            store
                .advance(&key, winner, Status::Stored, &backed_up)
                .await
                .is_err(),
            "wrong previous status"
        );
        store
            .advance(&key, winner, Status::InProgress, &backed_up)
            .await
            .unwrap();

        // The holder dies; once its lease lapses, the next delivery resumes from the checkpoint.
        store.release(&key, winner).await.unwrap();
        match store
            .acquire(&key, "owner-next", now_ms() + 60_000, &fresh())
            .await
            .unwrap()
        {
            Acquired::Run(p) => assert_eq!(p, backed_up),
            other => panic!("expected to resume, got {other:?}"),
        }
        let completed = Progress {
            status: Status::Completed,
            ..backed_up.clone()
        };
        store
            .advance(
                &key,
                "owner-next",
                Status::InProgress,
                &Progress {
                    status: Status::Stored,
                    ..backed_up.clone()
                },
            )
            .await
            .unwrap_err();
        store
            .advance(
                &key,
                "owner-next",
                Status::BackedUp,
                &Progress {
                    status: Status::Stored,
                    ..backed_up.clone()
                },
            )
            .await
            .unwrap();
        store
            .advance(&key, "owner-next", Status::Stored, &completed)
            .await
            .unwrap();
        assert_eq!(
            store
                .acquire(&key, "late", now_ms() + 60_000, &fresh())
                .await
                .unwrap(),
            Acquired::Completed(completed)
        );
    }
}
