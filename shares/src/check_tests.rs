use super::*;
use crate::ed25519::Ed25519;
use crate::secp256k1::Secp256k1;
use crate::share::parse;
use crate::split::{Rng, b64, new_key, portal_example, split, split_key};
use serde_json::json;

#[test]
fn partial_checks_catch_a_changed_half_without_the_other() {
    let mut rng = Rng::new("partials");
    for curve in [Curve::Secp256k1, Curve::Ed25519] {
        let s = match curve {
            Curve::Secp256k1 => split::<Secp256k1>(&mut rng, "c"),
            Curve::Ed25519 => split::<Ed25519>(&mut rng, "c"),
        };
        let mut changed = s.custodian.clone();
        changed["share"] = json!("777");
        let half = parse(Role::Custodian, curve, changed.to_string().as_bytes()).unwrap();
        assert_eq!(
            partial_checks(curve, &half).err().unwrap().to_string(),
            "custodian backup share: its share times G is not its own partial public key \
             (serverPartialPubKey_x, serverPartialPubKey_y)"
        );
        // Partial keys consistent with the share, but of another wallet.
        let mut moved = s.client.clone();
        moved["partialPubkey"]["server"] = moved["partialPubkey"]["client"].clone();
        let half = parse(Role::Client, curve, moved.to_string().as_bytes()).unwrap();
        assert_eq!(
            partial_checks(curve, &half).err().unwrap().to_string(),
            "client backup share: its partial public keys do not combine to the wallet's public key"
        );
        let (bare, _) = portal_example(curve);
        let half = parse(Role::Client, curve, bare.to_string().as_bytes()).unwrap();
        assert_eq!(
            partial_checks(curve, &half),
            Err(CheckError::PartialMissing(Role::Client))
        );
    }
}

/// The simulator's splits: both documents parse, pass their checks, and name the key's public
/// values; a changed scalar that still parses fails as a mismatch.
#[test]
fn key_splits_in_portal_shapes_pass_their_checks() {
    let mut rng = Rng::new("key-splits");
    for curve in [Curve::Secp256k1, Curve::Ed25519] {
        for _ in 0..4 {
            let d = new_key(curve, &mut rng);
            let k = split_key(curve, &d, &mut rng).unwrap();
            assert_eq!(scalar_times_g(curve, &d), Some(k.pubkey));
            let client = k.client_backup_share("c1", "bp1", "sp1", &mut rng);
            let custodian = k.custodian_backup_share("c1", "custodian-1", &mut rng);
            let c = parse(Role::Client, curve, b64(&client).as_bytes()).unwrap();
            let s = parse(Role::Custodian, curve, custodian.to_string().as_bytes()).unwrap();
            partial_checks(curve, &c).unwrap();
            partial_checks(curve, &s).unwrap();
            assert_eq!(c.pubkey, s.pubkey);
            assert_eq!(c.backup_share_pair_id.as_deref(), Some("bp1"));
            let mut changed = custodian.clone();
            changed["share"] = json!(crate::decimal::to_decimal(&rng.bytes32().map(|b| b & 0x0f)));
            let s = parse(Role::Custodian, curve, changed.to_string().as_bytes()).unwrap();
            assert!(partial_checks(curve, &s).unwrap_err().is_mismatch());
        }
        assert!(split_key(curve, &[0u8; 32], &mut rng).is_none());
    }
}
