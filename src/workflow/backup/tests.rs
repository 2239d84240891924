//! The workflow against the in-memory fakes of `adapters::memory`.

use std::time::Duration;

use super::*;
use crate::adapters::memory::{
    FakeEnvelope, FakePortal, FakeStore, Log, fake_generate, fake_share, now_ms,
};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::model::{BackupMode, Curve};
use crate::domain::secret::{ClientApiKey, SecretString};

pub(crate) fn request(mode: BackupMode) -> BackupRequest {
    BackupRequest {
        client_id: "client-1".into(),
        api_key: Some(ClientApiKey::new("key".into())),
        generate: GenerateInput::Plain(GenerateResponse {
            json: SecretString::new("{}".into()),
            signing_share_pair_ids: ["sig-s".into(), "sig-e".into()],
            share_client_ids: [Some("client-1".into()), Some("client-1".into())],
        }),
        idempotency_key: None,
        mode,
    }
}

fn service(log: &Log) -> (FakePortal, FakeEnvelope, FakeStore) {
    (
        FakePortal {
            log: log.clone(),
            ..Default::default()
        },
        FakeEnvelope {
            log: log.clone(),
            ..Default::default()
        },
        FakeStore {
            log: log.clone(),
            ..Default::default()
        },
    )
}

/// Asserts every call starting with `a` happened before every call starting with `b`.
pub(crate) fn assert_before(calls: &[String], a: &str, b: &str) {
    let last_a = calls.iter().rposition(|c| c.starts_with(a));
    let first_b = calls.iter().position(|c| c.starts_with(b));
    match (last_a, first_b) {
        (Some(x), Some(y)) => assert!(x < y, "{a} must precede {b}: {calls:?}"),
        _ => panic!("{a} or {b} missing: {calls:?}"),
    }
}

fn count(calls: &[String], prefix: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(prefix)).count()
}

#[tokio::test]
async fn self_managed_runs_steps_in_order_and_stores_bound_ciphertexts() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p, e, s.clone());
    let out = svc
        .back_up(&request(BackupMode::SelfManaged))
        .await
        .unwrap();
    assert_eq!(
        out.backup_share_pair_ids,
        ["bk-SECP256K1-2".to_owned(), "bk-ED25519-2".to_owned()]
    );
    assert_eq!(out.status, "COMPLETED");
    let calls = log.calls();
    assert_eq!(calls[..2], ["checkpoint.acquire", "portal.backup"]);
    assert_eq!(
        calls[calls.len() - 2..],
        [
            "portal.mark bk-SECP256K1-2,bk-ED25519-2",
            "checkpoint.COMPLETED"
        ]
    );
    assert_before(&calls, "envelope.seal", "checkpoint.BACKED_UP");
    assert_before(&calls, "checkpoint.BACKED_UP", "store.put");
    // Portal is told only once verified; a mark that succeeds at once needs no STORED write.
    assert_before(&calls, "envelope.open", "portal.mark");
    assert_eq!(count(&calls, "checkpoint.STORED"), 0, "{calls:?}");
    assert_eq!(
        [
            count(&calls, "envelope.seal"),
            count(&calls, "store.put"),
            count(&calls, "store.get"),
            count(&calls, "envelope.open"),
            count(&calls, "portal.mark")
        ],
        [2, 2, 1, 2, 1],
        "both items read back in one round trip"
    );
    assert_before(&calls, "envelope.seal", "store.put");
    assert_before(&calls, "store.put", "store.get");
    assert_before(&calls, "envelope.open", "portal.mark");
    assert_eq!(
        count(&calls, "portal.store"),
        0,
        "self-managed never sends ciphertexts to Portal"
    );
    let items = s.items.lock().unwrap();
    let item = &items[&("client-1".to_owned(), "bk-ED25519-2".to_owned())];
    assert_eq!(item.curve, Curve::Ed25519);
    assert_eq!(item.signing_share_pair_id, "sig-e");
    assert!(item.cipher_text.starts_with(
        r#"{"backupSharePairId":"bk-ED25519-2","clientId":"client-1","curve":"ED25519"}|"#
    ));
    assert!(item.cipher_text.ends_with(&format!(
        r#"{{"share":"{}","id":"bk-ED25519-2"}}"#,
        fake_share("client-1", "bk-ED25519-2")
    )));
}

#[tokio::test]
async fn portal_managed_stores_and_reads_back_through_portal() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p.clone(), e, s);
    svc.back_up(&request(BackupMode::PortalManaged))
        .await
        .unwrap();
    let calls = log.calls();
    assert_eq!(
        count(&calls, "store."),
        0,
        "portal-managed never writes the table"
    );
    assert_eq!(count(&calls, "portal.store"), 2);
    assert_before(&calls, "portal.store", "portal.read");
    assert_before(&calls, "envelope.open", "portal.mark");
    assert_eq!(p.stored.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn no_mark_when_storing_fails() {
    for mode in [BackupMode::SelfManaged, BackupMode::PortalManaged] {
        let log = Log::default();
        let (mut p, e, mut s) = service(&log);
        p.fail_store = true;
        s.fail_put = true;
        let err = BackupService::new(p, e, s)
            .back_up(&request(mode))
            .await
            .unwrap_err();
        assert_eq!(err.step, Step::Store, "{mode}");
        assert!(err.is_transient());
        assert_eq!(
            count(&log.calls(), "portal.mark"),
            0,
            "{mode}: {:?}",
            log.calls()
        );
    }
}

#[tokio::test]
async fn no_mark_when_verification_fails() {
    // A write that does not persist, a read-back that differs, a decryption to other bytes.
    type Setup = fn(&mut FakePortal, &mut FakeEnvelope, &mut FakeStore);
    let cases: [(&str, Setup, BackupMode); 3] = [
        (
            "lost write",
            |_, _, s| s.lose_writes = true,
            BackupMode::SelfManaged,
        ),
        (
            "altered read",
            |p, _, _| p.corrupt_read = true,
            BackupMode::PortalManaged,
        ),
        (
            "wrong plaintext",
            |_, e, _| e.wrong_plaintext = true,
            BackupMode::SelfManaged,
        ),
    ];
    for (name, setup, mode) in cases {
        let log = Log::default();
        let (mut p, mut e, mut s) = service(&log);
        setup(&mut p, &mut e, &mut s);
        let err = BackupService::new(p, e, s)
            .back_up(&request(mode))
            .await
            .unwrap_err();
        assert_eq!(err.step, Step::Verify, "{name}");
        assert!(!err.is_transient(), "{name}");
        assert_eq!(count(&log.calls(), "portal.mark"), 0, "{name}");
    }
}

#[tokio::test]
async fn portal_refusal_stops_before_any_encryption() {
    let log = Log::default();
    let (mut p, e, s) = service(&log);
    p.fail_backup = Some(401);
    let err = BackupService::new(p, e, s)
        .back_up(&request(BackupMode::SelfManaged))
        .await
        .unwrap_err();
    assert_eq!(err.step, Step::Backup);
    assert!(!err.is_transient());
    assert_eq!(
        log.calls(),
        ["checkpoint.acquire", "portal.backup", "checkpoint.release"],
        "permanent: no retry, no encryption, the lease let go"
    );
}

#[tokio::test]
async fn a_sealed_generate_response_is_opened_under_the_clients_context() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p, e.clone(), s);
    let generate = fake_generate("client-1", "sig-1", "sig-2").to_string();
    let ctx = EncryptionContext::generate_response("client-1");
    let sealed = e.seal(&ctx, generate.as_bytes()).await.unwrap();
    let mut req = request(BackupMode::SelfManaged);
    req.generate = GenerateInput::Sealed(sealed.clone());
    let out = svc.back_up(&req).await.unwrap();
    assert_eq!(out.status, "COMPLETED");
    assert_eq!(
        log.calls()[..4],
        [
            "envelope.seal",
            "envelope.open",
            "checkpoint.acquire",
            "portal.backup"
        ]
    );

    // Sealed for another client: refused before Portal is called.
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p, e, s);
    let mut req = request(BackupMode::SelfManaged);
    req.client_id = "client-2".into();
    req.generate = GenerateInput::Sealed(sealed);
    let err = svc.back_up(&req).await.unwrap_err();
    assert_eq!(err.step, Step::Unseal);
    assert!(!err.is_transient());
    assert_eq!(count(&log.calls(), "portal."), 0);
}

#[tokio::test]
async fn an_api_key_sealed_with_the_shares_is_the_one_portal_sees_and_is_never_sent_twice() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let keys = p.keys.clone();
    let svc = BackupService::new(p, e.clone(), s);
    let ctx = EncryptionContext::generate_response("client-1");
    let payload = serde_json::json!({"clientApiKey": "sealed-key",
        "generateResponse": fake_generate("client-1", "sig-1", "sig-2")})
    .to_string();
    let sealed = e.seal(&ctx, payload.as_bytes()).await.unwrap();
    let mut req = request(BackupMode::SelfManaged);
    req.api_key = None;
    req.generate = GenerateInput::Sealed(sealed.clone());
    assert_eq!(svc.back_up(&req).await.unwrap().status, "COMPLETED");
    assert_eq!(*keys.lock().unwrap(), ["Bearer sealed-key"]);

    // Sealed and in the clear at once, or in neither: refused before Portal is called.
    let mut both = request(BackupMode::SelfManaged);
    both.generate = GenerateInput::Sealed(sealed);
    let alone = r#"{"SECP256K1":{"share":"a","id":"sig-3"},"ED25519":{"share":"b","id":"sig-4"}}"#;
    let mut neither = request(BackupMode::SelfManaged);
    neither.api_key = None;
    neither.generate = GenerateInput::Sealed(e.seal(&ctx, alone.as_bytes()).await.unwrap());
    for req in [both, neither] {
        let err = svc.back_up(&req).await.unwrap_err();
        assert_eq!(err.field(), Some("clientApiKey"), "{err}");
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("sealed-key"), "{err}");
    }
    assert_eq!(keys.lock().unwrap().len(), 1, "no further Portal call");
}

/// Runs `req` twice on the same store: a first attempt under `first`, then a clean retry.
async fn twice(
    first: FakePortal,
    fail_put_first: bool,
    mode: BackupMode,
) -> (Vec<String>, Vec<String>) {
    let store = FakeStore::default();
    let log1 = Log::default();
    let s1 = FakeStore {
        log: log1.clone(),
        fail_put: fail_put_first,
        ..store.clone()
    };
    let p1 = FakePortal {
        log: log1.clone(),
        ..first.clone()
    };
    let svc = BackupService::new(p1, FakeEnvelope::default(), s1).with_retry(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    assert!(
        svc.back_up(&request(mode)).await.is_err(),
        "the first attempt fails"
    );
    let log2 = Log::default();
    let s2 = FakeStore {
        log: log2.clone(),
        fail_put: false,
        ..store
    };
    let p2 = FakePortal {
        log: log2.clone(),
        fail_mark: 0,
        fail_store: false,
        stored: first.stored.clone(),
        ..Default::default()
    };
    let out = BackupService::new(p2, FakeEnvelope::default(), s2)
        .back_up(&request(mode))
        .await
        .unwrap();
    assert_eq!(out.status, "COMPLETED");
    (log1.calls(), log2.calls())
}

#[tokio::test]
async fn a_retry_after_storing_failed_resumes_without_calling_backup_again() {
    let (first, second) = twice(FakePortal::default(), true, BackupMode::SelfManaged).await;
    assert_eq!(count(&first, "portal.backup"), 1);
    assert!(first.contains(&"checkpoint.BACKED_UP".to_owned()));
    assert_eq!(
        count(&second, "portal.backup"),
        0,
        "shares exist: never created twice"
    );
    assert_eq!(count(&second, "store.put"), 2);
    assert_eq!(count(&second, "portal.mark"), 1);
}

#[tokio::test]
async fn a_retry_after_marking_failed_only_marks() {
    let portal = FakePortal {
        fail_mark: 1,
        ..Default::default()
    };
    let (first, second) = twice(portal, false, BackupMode::PortalManaged).await;
    assert!(first.contains(&"checkpoint.STORED".to_owned()), "{first:?}");
    assert_eq!(
        second,
        [
            "checkpoint.acquire",
            "portal.mark bk-SECP256K1-2,bk-ED25519-2",
            "checkpoint.COMPLETED"
        ]
    );
}

#[tokio::test]
async fn a_retry_after_a_mark_left_unrecorded_stores_and_proves_again() {
    // The mark fails and so does the STORED checkpoint: the table says BACKED_UP, as after
    // an invocation that died mid-mark.
    let store = FakeStore::default();
    let log1 = Log::default();
    let first = BackupService::new(
        FakePortal {
            log: log1.clone(),
            fail_mark: 1,
            ..Default::default()
        },
        FakeEnvelope::default(),
        FakeStore {
            log: log1.clone(),
            fail_checkpoint: Some(Status::Stored),
            ..store.clone()
        },
    )
    .with_retry(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    let req = request(BackupMode::SelfManaged);
    assert!(first.back_up(&req).await.is_err());
    assert!(log1.calls().contains(&"checkpoint.STORED".to_owned()));

    let log2 = Log::default();
    let (portal, envelope, _) = service(&log2);
    let retry = BackupService::new(
        portal,
        envelope,
        FakeStore {
            log: log2.clone(),
            ..store.clone()
        },
    );
    let out = retry.back_up(&req).await.unwrap();
    assert_eq!(out.status, "COMPLETED");
    let calls = log2.calls();
    assert_eq!(count(&calls, "portal.backup"), 0, "{calls:?}");
    // The same ciphertexts again (safe to repeat), read back and opened before the mark.
    assert_eq!(count(&calls, "store.put"), 2, "{calls:?}");
    assert_eq!(count(&calls, "envelope.open"), 2, "{calls:?}");
    assert_before(&calls, "envelope.open", "portal.mark");
    assert_eq!(
        calls.last().map(String::as_str),
        Some("checkpoint.COMPLETED")
    );
    assert_eq!(store.items.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_completed_backup_answers_at_once_and_a_leased_one_is_busy() {
    let store = FakeStore::default();
    let svc = BackupService::new(
        FakePortal::default(),
        FakeEnvelope::default(),
        store.clone(),
    );
    let first = svc
        .back_up(&request(BackupMode::SelfManaged))
        .await
        .unwrap();
    let log = Log::default();
    let again = BackupService::new(
        FakePortal {
            log: log.clone(),
            ..Default::default()
        },
        FakeEnvelope::default(),
        FakeStore {
            log: log.clone(),
            ..store.clone()
        },
    );
    assert_eq!(
        again
            .back_up(&request(BackupMode::SelfManaged))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        log.calls(),
        ["checkpoint.acquire"],
        "the earlier result, no work"
    );

    // A live lease held by another delivery: this one backs off, transiently.
    let mut other = request(BackupMode::SelfManaged);
    other.idempotency_key = Some("k-1".into());
    let key = BackupKey::new("client-1", Some("k-1"), &["a".into(), "b".into()]);
    let fresh = Progress {
        status: Status::InProgress,
        backup_mode: BackupMode::SelfManaged,
        signing_share_pair_ids: ["a".into(), "b".into()],
        shares: None,
    };
    store
        .acquire(&key, "someone-else", now_ms() + 60_000, &fresh)
        .await
        .unwrap();
    let err = svc.back_up(&other).await.unwrap_err();
    assert!(matches!(err.cause, Cause::InProgress));
    assert!(err.is_transient());
}

#[tokio::test]
async fn work_that_cannot_finish_is_not_started() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p, e, s);
    let inv = Invocation::new(Deadline::after(Duration::from_secs(2)), "r");
    let err = svc
        .run(
            &request(BackupMode::SelfManaged),
            &inv,
            &mut RunStats::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.cause, Cause::Deadline(_)) && err.is_transient());
    assert!(log.calls().is_empty());
}

#[tokio::test]
async fn a_reused_idempotency_key_is_refused_and_never_answers_another_wallets_backup() {
    let store = FakeStore::default();
    let log = Log::default();
    let svc = BackupService::new(
        FakePortal {
            log: log.clone(),
            ..Default::default()
        },
        FakeEnvelope::default(),
        store.clone(),
    );
    let mut first = request(BackupMode::SelfManaged);
    first.idempotency_key = Some("wallet-key".into());
    svc.back_up(&first).await.unwrap();
    assert_eq!(count(&log.calls(), "portal.backup"), 1);

    // The same key with another wallet's signing shares: refused, permanently, with no work.
    let mut other_wallet = request(BackupMode::SelfManaged);
    other_wallet.idempotency_key = Some("wallet-key".into());
    other_wallet.generate = GenerateInput::Plain(GenerateResponse {
        json: SecretString::new("{}".into()),
        signing_share_pair_ids: ["other-s".into(), "other-e".into()],
        share_client_ids: [Some("client-1".into()), Some("client-1".into())],
    });
    let err = svc.back_up(&other_wallet).await.unwrap_err();
    assert!(
        matches!(&err.cause, Cause::IdempotencyKeyReused(k) if k == "wallet-key"),
        "{err}"
    );
    assert!(!err.is_transient());
    // The same key and wallet in another mode is another backup too.
    let mut other_mode = request(BackupMode::PortalManaged);
    other_mode.idempotency_key = Some("wallet-key".into());
    let err = svc.back_up(&other_mode).await.unwrap_err();
    assert!(matches!(err.cause, Cause::IdempotencyKeyReused(_)), "{err}");
    assert_eq!(
        count(&log.calls(), "portal.backup"),
        1,
        "no new backup was made"
    );
    // The first backup's checkpoint is untouched: its own retry still answers it.
    assert!(svc.back_up(&first).await.is_ok());

    // An unfinished checkpoint of another wallet is refused too, and its lease let go.
    let unfinished = FakeStore::default();
    let svc = BackupService::new(
        FakePortal::default(),
        FakeEnvelope::default(),
        unfinished.clone(),
    );
    let key = BackupKey::new("client-1", Some("wallet-key"), &["a".into(), "b".into()]);
    let theirs = Progress {
        status: Status::InProgress,
        backup_mode: BackupMode::SelfManaged,
        signing_share_pair_ids: ["a".into(), "b".into()],
        shares: None,
    };
    unfinished
        .acquire(&key, "crashed-delivery", now_ms() - 1, &theirs)
        .await
        .unwrap();
    let err = svc.back_up(&first).await.unwrap_err();
    assert!(matches!(err.cause, Cause::IdempotencyKeyReused(_)), "{err}");
    let acquired = unfinished
        .acquire(&key, "its-own-retry", now_ms() + 60_000, &theirs)
        .await
        .unwrap();
    assert!(
        matches!(acquired, Acquired::Run(ref p) if p.signing_share_pair_ids == theirs.signing_share_pair_ids),
        "the other wallet's retry takes its checkpoint back"
    );
}

#[tokio::test]
async fn signing_shares_of_another_client_never_reach_portal() {
    let log = Log::default();
    let (p, e, s) = service(&log);
    let svc = BackupService::new(p, e, s);
    for names in [
        [Some("victim".to_owned()), Some("victim".to_owned())],
        [Some("client-1".to_owned()), Some("victim".to_owned())],
        [Some("client-1".to_owned()), None],
    ] {
        let mut req = request(BackupMode::SelfManaged);
        if let GenerateInput::Plain(g) = &mut req.generate {
            g.share_client_ids = names.clone();
        }
        let err = svc.back_up(&req).await.unwrap_err();
        assert!(
            matches!(err.cause, Cause::ClientMismatch { .. }),
            "{names:?}: {err}"
        );
        assert!(!err.is_transient());
        assert_eq!(crate::entry::failure(&err).code, "CLIENT_MISMATCH");
        assert_eq!(crate::entry::failure(&err).status, 422);
    }
    assert!(log.calls().is_empty(), "no checkpoint, no Portal call");
}

#[tokio::test]
async fn backup_shares_naming_another_client_are_never_stored() {
    let log = Log::default();
    let (mut p, e, s) = service(&log);
    p.backup_client = Some("someone-else".into());
    let svc = BackupService::new(p, e, s.clone());
    let err = svc
        .back_up(&request(BackupMode::SelfManaged))
        .await
        .unwrap_err();
    assert!(matches!(err.cause, Cause::ClientMismatch { .. }), "{err}");
    assert_eq!(err.step, Step::Backup);
    assert_eq!(
        log.calls(),
        ["checkpoint.acquire", "portal.backup", "checkpoint.release"],
        "nothing sealed, stored or marked"
    );
    assert!(s.items.lock().unwrap().is_empty());
}
