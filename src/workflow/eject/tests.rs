//! Portal-managed eject against the in-memory fakes.
use super::*;
use crate::adapters::memory::{FakeEnvelope, FakePortal};
use crate::adapters::memory_eject::FixedKey;
use portal_shares::curve::Curve as C;
use portal_shares::split::{Rng, new_key, split_key};
use serde_json::json;

fn request(action: &str) -> Vec<u8> {
    json!({"action": action, "clientId": "c1", "walletId": "w1", "clientApiKey": "ck-secret"})
        .to_string()
        .into_bytes()
}

/// A Portal with wallet `w1`'s custodian share (a real half) and its stored client cipher text.
fn portal(client: &str) -> (FakePortal, String) {
    let mut rng = Rng::new("eject-workflow");
    let d = new_key(C::Secp256k1, &mut rng);
    let k = split_key(C::Secp256k1, &d, &mut rng).unwrap();
    let custodian = k
        .custodian_backup_share(client, "cust", &mut rng)
        .to_string();
    let p = FakePortal::default();
    p.ejectable
        .lock()
        .unwrap()
        .insert("w1".into(), (custodian.clone(), "stored-client-ct".into()));
    (p, custodian)
}

#[test]
fn requests_are_strict_and_name_fields_only() {
    assert!(is_eject(&request("eject")) && is_eject(&request("complete-eject")));
    assert!(!is_eject(br#"{"action":"drill"}"#));
    let r = EjectRequest::parse(&request("complete-eject")).unwrap();
    assert_eq!(
        (r.action, r.wallet_id.as_str()),
        (EjectAction::Complete, "w1")
    );
    for (body, field) in [
        (
            json!({"action": "eject", "clientId": "c1", "walletId": "w1"}),
            "clientApiKey",
        ),
        (
            json!({"action": "eject", "clientId": "c1", "clientApiKey": "k"}),
            "walletId",
        ),
        (
            json!({"action": "eject", "clientId": "c1", "walletId": "w/1", "clientApiKey": "k"}),
            "walletId",
        ),
        (
            json!({"action": "eject", "clientId": "c1", "walletId": "w1", "clientApiKey": "k", "x": 1}),
            "x",
        ),
    ] {
        let e = EjectRequest::parse(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{body}");
        assert!(!e.to_string().contains("k\""), "{e}");
    }
}

#[tokio::test]
async fn eject_answers_both_halves_sealed_and_never_in_the_clear() {
    let (p, custodian) = portal("c1");
    let envelope = FakeEnvelope::default();
    let service = EjectService::new(p.clone(), envelope.clone())
        .with_custodian_key(Arc::new(FixedKey(Some("custodian-key"))));
    let answer = service
        .act(&EjectRequest::parse(&request("eject")).unwrap())
        .await
        .unwrap();
    let EjectAnswer::Ejectable {
        curve,
        custodian_key_check,
        sealed_custodian_backup_share,
        encrypted_client_backup_share,
        address,
        ..
    } = &answer
    else {
        panic!("an ejectable answer")
    };
    assert_eq!(*curve, Some("SECP256K1"));
    assert_eq!(*custodian_key_check, "proven");
    assert!(address.as_deref().is_some_and(|a| a.starts_with("0x")));
    assert_eq!(encrypted_client_backup_share, "stored-client-ct");
    // Sealed under the eject context for the recovery role (the fake's seal shows its AAD).
    let opened = envelope
        .open(
            &EncryptionContext::eject_share("c1", "w1"),
            sealed_custodian_backup_share,
        )
        .await
        .unwrap();
    assert_eq!(opened.expose(), custodian.as_bytes());
    let calls = p.log.calls();
    assert_eq!(
        calls,
        [
            "portal.enable_eject c1 w1 Bearer custodian-key",
            "portal.ejectable_shares w1"
        ]
    );
    let done = service
        .act(&EjectRequest::parse(&request("complete-eject")).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        done,
        EjectAnswer::Completed {
            completed: true,
            ..
        }
    ));
}

#[tokio::test]
async fn eject_is_refused_without_a_key_for_another_client_and_on_portals_refusal() {
    let (p, _) = portal("c1");
    let req = EjectRequest::parse(&request("eject")).unwrap();
    let e = EjectService::new(p.clone(), FakeEnvelope::default())
        .act(&req)
        .await
        .unwrap_err();
    assert!(matches!(e.cause, Cause::EjectNotConfigured) && !e.is_transient());
    let e = EjectService::new(p.clone(), FakeEnvelope::default())
        .with_custodian_key(Arc::new(FixedKey(None)))
        .act(&req)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    // Portal's custodian share names another client: refused before anything is sealed.
    let (other, _) = portal("c2");
    let e = EjectService::new(other, FakeEnvelope::default())
        .with_custodian_key(Arc::new(FixedKey(Some("k"))))
        .act(&req)
        .await
        .unwrap_err();
    assert!(matches!(e.cause, Cause::ClientMismatch { .. }), "{e}");
    // An unknown wallet: Portal's 404, permanent.
    let e = EjectService::new(FakePortal::default(), FakeEnvelope::default())
        .with_custodian_key(Arc::new(FixedKey(Some("k"))))
        .act(&req)
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
}
