use super::*;
use crate::adapters::memory::{FakeEnvelope, FakeStore, fake_share};
use crate::domain::checkpoint::{Progress, SealedRecord, Status};
use crate::domain::model::Curve;
use crate::ports::store::StoredShare;

/// `n` completed self-managed backups (clients `c00…`), each with its two share items, and one
/// Portal-managed one whose copies are in its checkpoint; one backup still in progress.
async fn table(n: usize) -> (FakeEnvelope, FakeStore) {
    let (envelope, store) = (FakeEnvelope::default(), FakeStore::default());
    for i in 0..=n {
        let who = format!("c{i:02}");
        let mode = if i == n {
            BackupMode::PortalManaged
        } else {
            BackupMode::SelfManaged
        };
        let mut records = Vec::new();
        for (curve, pair) in [
            (Curve::Secp256k1, format!("s{i}")),
            (Curve::Ed25519, format!("e{i}")),
        ] {
            let plain = format!(r#"{{"share":"{}","id":"{pair}"}}"#, fake_share(&who, &pair));
            let ctx = EncryptionContext::backup_share(&who, &pair, curve);
            let ct = envelope.seal(&ctx, plain.as_bytes()).await.unwrap();
            if mode == BackupMode::SelfManaged {
                store
                    .put(&StoredShare {
                        client_id: who.clone(),
                        backup_share_pair_id: pair.clone(),
                        curve,
                        signing_share_pair_id: format!("sig-{pair}"),
                        cipher_text: ct.clone(),
                        created_at: 0,
                        public: None,
                    })
                    .await
                    .unwrap();
            }
            records.push(SealedRecord {
                curve,
                id: pair,
                cipher_text: ct,
                public: None,
            });
        }
        let [a, b]: [SealedRecord; 2] = records.try_into().unwrap();
        store.checkpoints.lock().unwrap().insert(
            (who, "k".into()),
            (
                Progress {
                    status: Status::Completed,
                    backup_mode: mode,
                    signing_share_pair_ids: [format!("sig-s{i}"), format!("sig-e{i}")],
                    shares: Some([a, b]),
                },
                String::new(),
                0,
            ),
        );
    }
    store.checkpoints.lock().unwrap().insert(
        ("c99".into(), "fresh".into()),
        (
            Progress {
                status: Status::InProgress,
                backup_mode: BackupMode::SelfManaged,
                signing_share_pair_ids: ["x".into(), "y".into()],
                shares: None,
            },
            String::new(),
            0,
        ),
    );
    (envelope, store)
}

fn req(sample: u32) -> DrillRequest {
    DrillRequest { sample }
}

#[tokio::test]
async fn drills_walk_every_backup_once_per_cycle_and_start_the_next() {
    // 9 self-managed + 1 Portal-managed completed backups; 4 a drill (3 walked, 1 random).
    let (envelope, store) = table(9).await;
    let mut walked_total = 0;
    let mut now = 1_000_000;
    let mut drills = 0;
    loop {
        drills += 1;
        let a = drill(&envelope, &store, req(4), &Deadline::none(), now)
            .await
            .unwrap();
        assert_eq!(a.failed, 0, "{a:?}");
        // What the walk took this time, at least (random picks may add to it).
        assert!(a.verified >= a.cycle.proven - walked_total, "{a:?}");
        assert_eq!(a.cycle.number, 1);
        walked_total = a.cycle.proven;
        now += 60_000;
        if a.cycle.last_ended_at.is_some() {
            assert_eq!(a.cycle.age_seconds, 0, "the cycle just ended");
            break;
        }
        assert!(drills < 10, "a cycle must end");
    }
    assert_eq!(
        walked_total, 10,
        "each completed backup once, the one in progress never"
    );
    assert_eq!(drills, 4, "10 backups, 3 walked a drill");
    // The next drill starts cycle 2 from the first backup, and reports the last cycle's end.
    let a = drill(&envelope, &store, req(4), &Deadline::none(), now)
        .await
        .unwrap();
    assert_eq!((a.cycle.number, a.cycle.proven), (2, 3));
    assert_eq!(a.cycle.last_ended_at, Some(now - 60_000));
    assert_eq!(a.cycle.age_seconds, 60);
}

#[tokio::test]
async fn a_damaged_or_missing_share_is_reported_with_its_curve_and_no_value() {
    let (envelope, store) = table(3).await;
    // c01's ED25519 share item now holds c02's ciphertext (another context); c02's SECP256K1
    // item is gone.
    {
        let mut items = store.items.lock().unwrap();
        let other = items[&("c02".to_owned(), "e2".to_owned())]
            .cipher_text
            .clone();
        items
            .get_mut(&("c01".to_owned(), "e1".to_owned()))
            .unwrap()
            .cipher_text = other;
        items.remove(&("c02".to_owned(), "s2".to_owned()));
    }
    let a = drill(&envelope, &store, req(8), &Deadline::none(), 0)
        .await
        .unwrap();
    assert_eq!((a.verified, a.failed), (2, 2), "{a:?}");
    let mut seen: Vec<_> = a
        .failures
        .iter()
        .map(|f| (f.client_id.as_str(), f.key.as_str(), f.curve))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("c01", "k", Some("ED25519")),
            ("c02", "k", Some("SECP256K1"))
        ]
    );
    let text = serde_json::to_string(&a).unwrap();
    assert!(!text.contains("5ecret") && !text.contains('|'), "{text}");
    assert!(text.contains("missing from the table"), "{text}");
}

#[tokio::test]
async fn requests_are_strict_and_a_concurrent_drill_never_moves_the_cursor_back() {
    assert_eq!(
        DrillRequest::parse(br#"{"action":"drill"}"#)
            .unwrap()
            .sample,
        20
    );
    assert_eq!(
        DrillRequest::parse(br#"{"action":"drill","sample":7}"#)
            .unwrap()
            .sample,
        7
    );
    for bad in [
        r#"{"action":"drill","sample":0}"#,
        r#"{"action":"drill","sample":501}"#,
        r#"{"action":"drill","sample":"5"}"#,
        r#"{"action":"drill","other":1}"#,
    ] {
        assert!(DrillRequest::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(is_drill(br#"{"action":"drill"}"#));
    assert!(!is_drill(br#"{"action":"rotate"}"#));

    let (envelope, store) = table(6).await;
    drill(&envelope, &store, req(4), &Deadline::none(), 0)
        .await
        .unwrap();
    let saved = store.drill_cursor.lock().unwrap().clone().unwrap();
    // Another drill saved meanwhile: this one's save is refused, the stored cursor kept.
    *store.drill_cursor.lock().unwrap() = Some(DrillCursor {
        version: saved.version + 1,
        ..saved.clone()
    });
    let ahead = store.drill_cursor.lock().unwrap().clone();
    let mut stale = saved.clone();
    stale.version += 1;
    assert!(!store.save_drill_cursor(&stale).await.unwrap());
    assert_eq!(*store.drill_cursor.lock().unwrap(), ahead);
}

#[tokio::test]
async fn a_share_that_names_another_client_is_a_drill_failure_of_its_own() {
    let (envelope, store) = table(2).await;
    // c00's SECP256K1 share item: sealed for c00 and its pair, but the share inside is another
    // client's (a backup filed under c00's id).
    let plain = format!(
        r#"{{"share":"{}","id":"s0"}}"#,
        fake_share("intruder", "s0")
    );
    let ctx = EncryptionContext::backup_share("c00", "s0", Curve::Secp256k1);
    let forged = envelope.seal(&ctx, plain.as_bytes()).await.unwrap();
    store
        .items
        .lock()
        .unwrap()
        .get_mut(&("c00".to_owned(), "s0".to_owned()))
        .unwrap()
        .cipher_text = forged;
    let a = drill(&envelope, &store, req(8), &Deadline::none(), 0)
        .await
        .unwrap();
    assert_eq!(a.failed, 1, "{a:?}");
    let f = &a.failures[0];
    assert_eq!((f.client_id.as_str(), f.curve), ("c00", Some("SECP256K1")));
    assert!(f.problem.starts_with("CLIENT_MISMATCH"), "{}", f.problem);
}

/// Completed self-managed backups whose shares are real halves of a wallet's key: `c00` sound,
/// `c01` with its ED25519 scalar changed (it still seals and opens), `c02` whose SECP256K1
/// record names another public key than its share, `c03` with shares that carry no public
/// values.
async fn real_table() -> (FakeEnvelope, FakeStore) {
    use portal_shares::curve::Curve as C;
    use portal_shares::split::{Rng, b64, new_key, split_key};
    let (envelope, store) = (FakeEnvelope::default(), FakeStore::default());
    let mut rng = Rng::new("drill-key-checks");
    let other_public = crate::domain::wallet_key::WalletPublic {
        public_key: "04ab".into(),
        address: "0x0".into(),
    };
    for i in 0..4 {
        let who = format!("c{i:02}");
        let mut records = Vec::new();
        for (curve, sc, pair) in [
            (Curve::Secp256k1, C::Secp256k1, format!("s{i}")),
            (Curve::Ed25519, C::Ed25519, format!("e{i}")),
        ] {
            let d = new_key(sc, &mut rng);
            let k = split_key(sc, &d, &mut rng).unwrap();
            let mut doc = k.client_backup_share(&who, &pair, "sig", &mut rng);
            if i == 1 && curve == Curve::Ed25519 {
                doc["share"] = serde_json::json!("4242");
            }
            let share = if i == 3 {
                fake_share(&who, &pair)
            } else {
                b64(&doc)
            };
            let mut public = check_half(Half::Client, curve, share.as_bytes()).public;
            if i == 2 && curve == Curve::Secp256k1 {
                public = Some(other_public.clone());
            }
            let plain = format!(r#"{{"share":"{share}","id":"{pair}"}}"#);
            let ctx = EncryptionContext::backup_share(&who, &pair, curve);
            let ct = envelope.seal(&ctx, plain.as_bytes()).await.unwrap();
            store
                .put(&StoredShare {
                    client_id: who.clone(),
                    backup_share_pair_id: pair.clone(),
                    curve,
                    signing_share_pair_id: "sig".into(),
                    cipher_text: ct.clone(),
                    created_at: 0,
                    public: public.clone(),
                })
                .await
                .unwrap();
            records.push(SealedRecord {
                curve,
                id: pair,
                cipher_text: ct,
                public,
            });
        }
        let [a, b]: [SealedRecord; 2] = records.try_into().unwrap();
        store.checkpoints.lock().unwrap().insert(
            (who, "k".into()),
            (
                Progress {
                    status: Status::Completed,
                    backup_mode: BackupMode::SelfManaged,
                    signing_share_pair_ids: ["sig".into(), "sig".into()],
                    shares: Some([a, b]),
                },
                String::new(),
                0,
            ),
        );
    }
    (envelope, store)
}

#[tokio::test]
async fn a_half_that_opens_but_does_not_make_its_wallets_key_is_a_key_mismatch() {
    let (envelope, store) = real_table().await;
    let a = drill(&envelope, &store, req(8), &Deadline::none(), 0)
        .await
        .unwrap();
    assert_eq!((a.verified, a.failed), (2, 2), "{a:?}");
    assert_eq!(
        a.key_unchecked, 2,
        "c03's two shares carry no public values"
    );
    let mut seen: Vec<_> = a
        .failures
        .iter()
        .map(|f| (f.client_id.as_str(), f.curve, f.kind))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("c01", Some("ED25519"), KEY_MISMATCH),
            ("c02", Some("SECP256K1"), KEY_MISMATCH)
        ]
    );
    let text = serde_json::to_string(&a).unwrap();
    assert!(text.contains("not its own partial public key"), "{text}");
    assert!(text.contains("another wallet public key"), "{text}");
    assert!(!text.contains("4242"), "{text}");
    let emf = crate::entry::metrics::drill_document(Some(&a));
    assert_eq!(emf["DrillKeyMismatches"], 2);
}
