//! Restore, verify and recover against the in-memory fakes of `adapters::memory`.

use super::*;
use crate::adapters::memory::{FakeEnvelope, FakePortal, FakeStore, Log};
use crate::domain::checkpoint::Progress;
use crate::domain::model::Curve;
use crate::domain::request::SealedPayload;
use crate::workflow::backup::BackupService;
use crate::workflow::backup::tests::request;

fn listed(key: &str, status: Status, completed_at: Option<u64>) -> Listed {
    let record = |curve: Curve, id: &str| SealedRecord {
        curve,
        id: id.into(),
        cipher_text: "pbe1.x".into(),
        public: None,
    };
    Listed {
        key: key.into(),
        progress: Progress {
            status,
            backup_mode: BackupMode::SelfManaged,
            signing_share_pair_ids: ["s1".into(), "s2".into()],
            shares: (status != Status::InProgress).then(|| {
                [
                    record(Curve::Secp256k1, &format!("{key}-a")),
                    record(Curve::Ed25519, &format!("{key}-b")),
                ]
            }),
        },
        created_at: 1,
        updated_at: completed_at.unwrap_or(5),
        completed_at,
    }
}

#[test]
fn the_latest_completed_backup_is_restored_never_an_unfinished_one() {
    let all = [
        listed("old", Status::Completed, Some(10)),
        listed("new", Status::Completed, Some(20)),
        listed("newest-unfinished", Status::Stored, None),
        listed("fresh", Status::InProgress, None),
    ];
    let keys: Vec<_> = completed_newest_first(&all)
        .iter()
        .map(|(l, _)| l.key.as_str())
        .collect();
    assert_eq!(keys, ["new", "old"]);
    assert!(completed_newest_first(&all[2..]).is_empty());
}

#[test]
fn action_requests_are_strict_and_errors_name_no_values() {
    let ok = ActionRequest::parse(br#"{"action":"verify","clientId":"c1"}"#).unwrap();
    assert_eq!(ok.action, Action::Verify);
    assert!(ok.api_key.is_none());
    for bad in [
        &br#"{"action":"sk_live_9","clientId":"c1"}"#[..],
        br#"{"action":"list","clientId":"sk_live_9\u0000"}"#,
        br#"{"action":"list","clientId":"c1","clientApiKey":{"k":"sk_live_9"}}"#,
        br#"{"action":"list"}"#,
        br#"{"action":"list","clientId":""}"#,
        br#"{"action":"list","clientId":"c1","extra":"sk_live_9"}"#,
        br#"not json"#,
    ] {
        let e = ActionRequest::parse(bad).unwrap_err();
        assert!(!e.to_string().contains("sk_live_9"), "{e}");
    }
}

#[test]
fn a_plaintext_restore_answer_carries_the_backup_response_and_nothing_else_secret() {
    let answer = ActionAnswer::RestorePlain {
        client_id: "c1".into(),
        backup_share_pair_ids: ["a".into(), "b".into()],
        backup_response: SecretString::new(r#"{"SECP256K1":{"share":"s","id":"a"}}"#.into()),
    };
    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        json["backupResponse"],
        r#"{"SECP256K1":{"share":"s","id":"a"}}"#
    );
    let debug = format!("{answer:?}");
    assert!(!debug.contains("SECP256K1"), "{debug}");
    assert!(!debug.contains(r#""share""#), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

/// A restore service over fakes holding one completed self-managed backup of `client-1`.
async fn backed_up() -> (RestoreService<FakePortal, FakeEnvelope, FakeStore>, Log) {
    let log = Log::default();
    let portal = FakePortal {
        log: log.clone(),
        ..Default::default()
    };
    let envelope = FakeEnvelope {
        log: log.clone(),
        ..Default::default()
    };
    let store = FakeStore::default();
    let backup = BackupService::new(portal.clone(), envelope.clone(), store.clone());
    let out = backup
        .back_up(&request(BackupMode::SelfManaged))
        .await
        .unwrap();
    assert_eq!(out.status, "COMPLETED");
    (RestoreService::new(portal, envelope, store), log)
}

fn action(action: Action, key: Option<&str>) -> ActionRequest {
    ActionRequest {
        action,
        client_id: "client-1".into(),
        api_key: key.map(|k| ClientApiKey::new(k.into())),
        idempotency_key: (action == Action::Recover).then(|| "recovery-1".into()),
    }
}

#[tokio::test]
async fn restore_answers_the_backup_sealed_for_the_client_and_plaintext_only_if_allowed() {
    let (svc, _) = backed_up().await;
    let answer = svc.act(&action(Action::Restore, None)).await.unwrap();
    let ActionAnswer::Restore {
        sealed_backup_response,
        backup_share_pair_ids,
        ..
    } = &answer
    else {
        panic!("a sealed restore: {answer:?}")
    };
    let json = serde_json::to_value(&answer).unwrap();
    assert!(json.get("backupResponse").is_none(), "{json}");
    // It opens only under the backup-response context of this client.
    let envelope = FakeEnvelope::default();
    let opened = envelope
        .open(
            &EncryptionContext::backup_response("client-1"),
            sealed_backup_response,
        )
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(opened.expose()).unwrap();
    assert_eq!(doc["SECP256K1"]["id"], backup_share_pair_ids[0].as_str());
    assert_eq!(doc["ED25519"]["id"], backup_share_pair_ids[1].as_str());
    for other in [
        EncryptionContext::backup_response("client-2"),
        EncryptionContext::generate_response("client-1"),
    ] {
        assert!(envelope.open(&other, sealed_backup_response).await.is_err());
    }

    let svc = svc.with_plaintext_restore(true);
    let answer = svc.act(&action(Action::Restore, None)).await.unwrap();
    let ActionAnswer::RestorePlain {
        backup_response, ..
    } = &answer
    else {
        panic!("a plaintext restore where allowed: {answer:?}")
    };
    let plain: serde_json::Value = serde_json::from_str(backup_response.expose()).unwrap();
    assert_eq!(plain, doc);
}

#[tokio::test]
async fn recover_calls_portal_and_answers_new_signing_shares_sealed_with_the_key() {
    let (svc, log) = backed_up().await;
    let e = svc.act(&action(Action::Recover, None)).await.unwrap_err();
    assert_eq!(e.field(), Some("clientApiKey"));
    assert!(!log.calls().contains(&"portal.recover".to_owned()));

    let answer = svc
        .act(&action(Action::Recover, Some("sk_live_9")))
        .await
        .unwrap();
    assert!(log.calls().contains(&"portal.recover".to_owned()));
    let ActionAnswer::Recover {
        sealed_generate_response,
        signing_share_pair_ids,
        ..
    } = &answer
    else {
        panic!("a recover answer: {answer:?}")
    };
    // (The fake envelope does not encrypt: the leak test through the built binary checks the
    // answer against KMS.)
    // The sealed answer is what a backup request takes as `sealedGenerateResponse`.
    let opened = FakeEnvelope::default()
        .open(
            &EncryptionContext::generate_response("client-1"),
            sealed_generate_response,
        )
        .await
        .unwrap();
    let payload = SealedPayload::parse(SecretString::new(
        String::from_utf8(opened.expose().to_vec()).unwrap(),
    ))
    .unwrap();
    assert_eq!(
        payload.api_key.map(|k| k.bearer_header().to_string()),
        Some("Bearer sk_live_9".to_owned())
    );
    assert_eq!(
        &payload.generate.signing_share_pair_ids,
        signing_share_pair_ids
    );
}

#[tokio::test]
async fn a_newer_backup_whose_shares_name_another_client_is_skipped_and_said_so() {
    let (svc, _) = backed_up().await;
    let (portal, envelope, store) = (svc.portal.clone(), svc.envelope.clone(), svc.store.clone());
    // A second, newer backup under the same client id (the fake completes them in key order)...
    let mut newer = request(BackupMode::SelfManaged);
    if let crate::domain::request::GenerateInput::Plain(g) = &mut newer.generate {
        g.json = SecretString::new("{ }".into());
        g.signing_share_pair_ids = ["sig-s2".into(), "sig-e2".into()];
    }
    let out = BackupService::new(portal, envelope.clone(), store.clone())
        .back_up(&newer)
        .await
        .unwrap();
    // ...whose stored shares turn out to be another client's (a row filed before the check).
    for (curve, id) in Curve::ALL.into_iter().zip(&out.backup_share_pair_ids) {
        let plain = format!(
            r#"{{"share":"{}","id":"{id}"}}"#,
            crate::adapters::memory::fake_share("intruder", id)
        );
        let ctx = EncryptionContext::backup_share("client-1", id, curve);
        let ct = envelope.seal(&ctx, plain.as_bytes()).await.unwrap();
        let mut items = store.items.lock().unwrap();
        let item = items.get_mut(&("client-1".to_owned(), id.clone())).unwrap();
        item.cipher_text = ct;
    }
    let answer = svc.act(&action(Action::Verify, None)).await.unwrap();
    let ActionAnswer::Verify {
        ok,
        backup_share_pair_ids,
        skipped_other_client,
        ..
    } = &answer
    else {
        panic!("a verify answer: {answer:?}")
    };
    assert!(ok, "the older backup, this client's, verifies");
    assert_ne!(backup_share_pair_ids, &out.backup_share_pair_ids);
    assert_eq!(skipped_other_client.len(), 1);
    assert_eq!(skipped_other_client[0], out.backup_share_pair_ids);
    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        json["skippedOtherClient"][0][0],
        out.backup_share_pair_ids[0]
    );
    // Restore answers the older backup too, never the other client's.
    let ActionAnswer::Restore {
        backup_share_pair_ids: restored,
        ..
    } = svc.act(&action(Action::Restore, None)).await.unwrap()
    else {
        panic!("a restore")
    };
    assert_eq!(&restored, backup_share_pair_ids);
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_read_is_reported_and_never_guessed_past() {
    let (svc, _) = backed_up().await;
    svc.store
        .unreadable
        .lock()
        .unwrap()
        .push("BACKUP#newest-but-damaged".into());
    let list = serde_json::to_value(svc.act(&action(Action::List, None)).await.unwrap()).unwrap();
    assert_eq!(list["unreadable"]["count"], 1, "{list}");
    assert_eq!(list["unreadable"]["keys"][0], "BACKUP#newest-but-damaged");
    assert_eq!(list["backups"].as_array().map(Vec::len), Some(1));
    let verify =
        serde_json::to_value(svc.act(&action(Action::Verify, None)).await.unwrap()).unwrap();
    assert_eq!(
        verify["unreadable"]["count"], 1,
        "verify says so beside its check"
    );
    for act in [Action::Restore, Action::Recover] {
        let err = svc.act(&action(act, Some("k"))).await.unwrap_err();
        assert!(
            matches!(err.cause, Cause::UnreadableCheckpoints(_)),
            "{act:?}: {err}"
        );
        assert_eq!(crate::entry::failure(&err).code, "UNREADABLE_CHECKPOINTS");
        assert!(err.to_string().contains("BACKUP#newest-but-damaged"));
    }
}

#[tokio::test]
async fn a_recovery_repeated_with_its_key_calls_portal_once_and_its_shares_go_to_the_queue() {
    let (svc, log) = backed_up().await;
    let queue = crate::adapters::memory::FakeQueue::default();
    let svc = svc.with_queue(std::sync::Arc::new(queue.clone()));
    let recover = |key: &str| ActionRequest {
        action: Action::Recover,
        client_id: "client-1".into(),
        api_key: Some(ClientApiKey::new("sk_live_9".into())),
        idempotency_key: Some(key.into()),
    };
    let first = svc.act(&recover("r-1")).await.unwrap();
    let again = svc.act(&recover("r-1")).await.unwrap();
    let portal_calls = |log: &Log| {
        log.calls()
            .iter()
            .filter(|c| *c == "portal.recover")
            .count()
    };
    assert_eq!(portal_calls(&log), 1, "a repeat never calls Portal again");
    let (
        ActionAnswer::Recover {
            sealed_generate_response: a,
            backup_message_id: ma,
            repeated: ra,
            ..
        },
        ActionAnswer::Recover {
            sealed_generate_response: b,
            backup_message_id: mb,
            repeated: rb,
            ..
        },
    ) = (&first, &again)
    else {
        panic!("two recover answers")
    };
    assert_eq!(a, b, "the same sealed shares");
    assert_eq!((ra, rb), (&false, &true));
    assert_eq!(ma.as_deref(), Some("msg-1"));
    assert_eq!(ma, mb, "enqueued once; the repeat answers its message id");
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str(), sent[0].2.as_str()),
        ("client-1", "recovered-r-1", a.as_str()),
        "the new shares, sealed, backed up under a key of their own"
    );
    // Another key is another recovery.
    svc.act(&recover("r-2")).await.unwrap();
    assert_eq!(portal_calls(&log), 2);
    // A recovery that failed before Portal (no backup for the client) leaves its key free.
    let mut nobody = recover("r-3");
    nobody.client_id = "nobody".into();
    assert!(svc.act(&nobody).await.is_err());
    assert!(
        !svc.store
            .recoveries
            .lock()
            .unwrap()
            .contains_key(&("nobody".to_owned(), "r-3".to_owned()))
    );
}

#[test]
fn recover_needs_an_idempotency_key() {
    let e = ActionRequest::parse(br#"{"action":"recover","clientId":"c1","clientApiKey":"k"}"#)
        .unwrap_err();
    assert_eq!(e.field, "idempotencyKey");
    let ok = ActionRequest::parse(
        br#"{"action":"recover","clientId":"c1","clientApiKey":"k","idempotencyKey":"r-1"}"#,
    )
    .unwrap();
    assert_eq!(ok.idempotency_key.as_deref(), Some("r-1"));
    let e = ActionRequest::parse(br#"{"action":"list","clientId":"c1","idempotencyKey":"a/b"}"#)
        .unwrap_err();
    assert_eq!(e.field, "idempotencyKey");
}
