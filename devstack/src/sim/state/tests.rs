use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portal_shares::check::partial_checks;
use portal_shares::curve::Curve as ShareCurve;
use portal_shares::public::public_of_affine;
use portal_shares::share::{Role, parse};

#[test]
fn ids_look_like_cuids() {
    let id = new_id().unwrap();
    assert_eq!(id.len(), 25);
    assert!(id.starts_with("cm"));
    assert!(
        id.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );
}

#[test]
fn demo_generate_is_deterministic() {
    assert_eq!(demo_generate(), demo_generate());
    let doc = demo_generate();
    let share = doc["SECP256K1"]["share"].as_str().unwrap();
    let decoded: Value = serde_json::from_slice(&STANDARD.decode(share).unwrap()).unwrap();
    assert_eq!(decoded["clientId"], DEMO_CLIENT_ID);
    assert_eq!(decoded["signingSharePairId"], "cmdemosecp256k1signing000");
    assert!(
        decoded["share"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit())
    );
    assert_eq!(doc["ED25519"]["id"], "cmdemoed25519signing0000");
}

/// Every backup is two halves of the wallet's key: each passes its checks against public values,
/// both name the wallet's public key, and the custodian half is the flat JSON Portal sends.
#[test]
fn backups_are_real_splits_of_the_wallets_key() {
    let mut inner = Inner::new(SimOptions::default());
    let signing = inner.issue_signing("c1", None).unwrap();
    let pairs = signing.clone().map(|i| inner.pair(&i.id).unwrap().clone());
    let wallets = pairs.clone().map(|p| p.wallet);
    let backup = inner.issue_backup("c1", pairs).unwrap();
    for (i, curve) in [ShareCurve::Secp256k1, ShareCurve::Ed25519]
        .into_iter()
        .enumerate()
    {
        let pair = inner.pair(&backup[i].id).unwrap();
        let client = parse(Role::Client, curve, backup[i].share.as_bytes()).unwrap();
        let custodian_text = inner.custodian_share(&backup[i].id).unwrap();
        assert!(custodian_text.starts_with('{'));
        let custodian = parse(Role::Custodian, curve, custodian_text.as_bytes()).unwrap();
        partial_checks(curve, &client).unwrap();
        partial_checks(curve, &custodian).unwrap();
        assert_eq!(client.pubkey, custodian.pubkey);
        assert_eq!(
            client.backup_share_pair_id.as_deref(),
            Some(pair.id.as_str())
        );
        assert_eq!(
            public_of_affine(curve, &client.pubkey).unwrap(),
            wallets[i].public
        );
        assert_ne!(client.bks.client, custodian.bks.server);
    }
    // Recover keeps the wallets: new signing shares of the same keys.
    let again = inner.issue_signing("c1", Some(wallets.clone())).unwrap();
    for (i, issued) in again.iter().enumerate() {
        assert_eq!(inner.pair(&issued.id).unwrap().wallet.id, wallets[i].id);
        assert_ne!(issued.share, signing[i].share);
    }
}
