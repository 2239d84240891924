//! The custody drill against the in-memory fakes, with custodian shares that are real halves of
//! wallets' keys.
use super::*;
use crate::adapters::memory::{FakeEnvelope, FakeStore};
use crate::domain::model::Curve;
use crate::domain::wallet_key::{Half, WalletPublic, check_half};
use crate::ports::custody::{CustodianCaps, CustodianStore};
use crate::ports::store::{BackupStore, StoredShare};
use portal_shares::curve::Curve as C;
use portal_shares::split::{Rng, b64, new_key, split_key};

/// Custodian shares of clients `c0…c4` (pair `p<i>`), each wallet's client half in the backup
/// table with its public values: `c0` sound, `c1` with its scalar changed (it still seals and
/// opens), `c2` whose backup-table half records another public key, `c3` a share without public
/// values, `c4` sealed under another context (does not open). `c5` is sound but has no backup
/// table item (unpaired).
async fn stores() -> (FakeEnvelope, FakeStore) {
    let (envelope, store) = (FakeEnvelope::default(), FakeStore::default());
    let mut rng = Rng::new("custody-drill");
    for i in 0..6 {
        let (client, pair) = (format!("c{i}"), format!("p{i}"));
        let (curve, sc) = if i % 2 == 0 {
            (Curve::Secp256k1, C::Secp256k1)
        } else {
            (Curve::Ed25519, C::Ed25519)
        };
        let d = new_key(sc, &mut rng);
        let k = split_key(sc, &d, &mut rng).unwrap();
        let mut custodian = k.custodian_backup_share(&client, "cust", &mut rng);
        if i == 1 {
            custodian["share"] = serde_json::json!("31337");
        }
        if i == 3 {
            custodian = serde_json::json!({"clientId": client, "share": "1"});
        }
        let text = custodian.to_string();
        let sealed_for = if i == 4 { "elsewhere" } else { pair.as_str() };
        let cipher_text = envelope
            .seal(
                &EncryptionContext::custodian_share(&client, sealed_for),
                text.as_bytes(),
            )
            .await
            .unwrap();
        let (named_curve, check) = crate::domain::wallet_key::check_custodian(text.as_bytes());
        store
            .put_custodian_once(
                &CustodianShare {
                    client_id: client.clone(),
                    backup_share_pair_id: pair.clone(),
                    backup_method: "CUSTOM".into(),
                    cipher_text,
                    updated_at: 0,
                    answer_bytes: 10,
                    wallet: named_curve.zip(check.public),
                },
                CustodianCaps::default(),
            )
            .await
            .unwrap();
        if i == 5 {
            continue;
        }
        let client_half = b64(&k.client_backup_share(&client, &pair, "sig", &mut rng));
        let mut public = check_half(Half::Client, curve, client_half.as_bytes()).public;
        if i == 2 {
            public = Some(WalletPublic {
                public_key: "04beef".into(),
                address: "0xbeef".into(),
            });
        }
        store
            .put(&StoredShare {
                client_id: client,
                backup_share_pair_id: pair,
                curve,
                signing_share_pair_id: "sig".into(),
                cipher_text: "ct".into(),
                created_at: 0,
                public,
            })
            .await
            .unwrap();
    }
    (envelope, store)
}

#[tokio::test]
async fn custody_drill_proves_each_half_against_public_values_and_the_other_domain() {
    let (envelope, store) = stores().await;
    let service = CustodyService::new(envelope, store.clone(), CustodianCaps::default());
    let req = DrillRequest { sample: 20 };
    let a = service
        .drill(Some(&store), req, &Deadline::none(), 1_000)
        .await
        .unwrap();
    let mut seen: Vec<_> = a
        .failures
        .iter()
        .map(|f| (f.client_id.as_str(), f.kind))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("c1", KEY_MISMATCH),
            ("c2", KEY_MISMATCH),
            ("c4", "UNREADABLE")
        ],
        "{a:?}"
    );
    assert_eq!((a.verified, a.failed), (3, 3), "{a:?}");
    assert_eq!(a.key_unchecked, 1, "c3 carries no public values");
    assert_eq!(
        a.unpaired, 2,
        "c3 names no key to pair, c5 has no backup-table half"
    );
    assert_eq!((a.cycle.number, a.cycle.proven), (1, 6));
    assert_eq!(a.cycle.last_ended_at, Some(1_000));
    let text = serde_json::to_string(&a).unwrap();
    assert!(
        text.contains("backup table recorded another wallet public key"),
        "{text}"
    );
    assert!(!text.contains("31337"), "{text}");

    // Without the backup table's public values, the other domain is not compared: c2 passes.
    let again = service
        .drill(
            None::<&FakeStore>,
            DrillRequest { sample: 4 },
            &Deadline::none(),
            2_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (again.cycle.number, again.cycle.proven),
        (2, 4),
        "{again:?}"
    );
    assert!(
        again.failures.iter().all(|f| f.client_id != "c2"),
        "{again:?}"
    );
    assert_eq!(again.unpaired, 3, "c0, c2, c3: c1 failed");
}
