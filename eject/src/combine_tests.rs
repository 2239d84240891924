use super::*;
use crate::output::{address, key_text};
use portal_shares::check::{partial_checks, scalar_times_g};
use portal_shares::share::parse;
use portal_shares::split::{Rng, b64, portal_example, split};
use serde_json::{Value, json};

fn halves(curve: Curve, client: &Value, custodian: &Value) -> (Half, Half) {
    (
        parse(Role::Client, curve, b64(client).as_bytes()).unwrap(),
        parse(Role::Custodian, curve, custodian.to_string().as_bytes()).unwrap(),
    )
}

fn refusal(curve: Curve, client: &Value, custodian: &Value) -> String {
    let (c, s) = halves(curve, client, custodian);
    combine(curve, &c, &s).err().unwrap().to_string()
}

/// Portal's published example: the key must satisfy d·G == pubkey (checked by `combine`, and
/// again here), and the output strings must stay what they were when first computed.
fn portal_example_gives(curve: Curve, key: &str, addr: &str) {
    let (client, custodian) = portal_example(curve);
    let (c, s) = halves(curve, &client, &custodian);
    let ejected = combine(curve, &c, &s).unwrap();
    let mut be = *ejected.key;
    if curve == Curve::Ed25519 {
        be.reverse();
    }
    assert_eq!(scalar_times_g(curve, &be), Some(c.pubkey), "d·G == pubkey");
    assert_eq!(*key_text(&ejected), key);
    assert_eq!(address(&ejected).to_string(), addr);
}

#[test]
fn portal_example_secp256k1() {
    portal_example_gives(
        Curve::Secp256k1,
        "de555f8f7552fb503e48ccbc1e200d26ea3f8dc24fc236a1ff6a2be9c36a915c",
        "EVM address: 0x755e7572e8916802f9DD75EEb00992E2d53aA345",
    );
}

#[test]
fn portal_example_ed25519() {
    portal_example_gives(
        Curve::Ed25519,
        "7QouaVEmauRJgEhLXEaj3Et8VZXfuYzHYLw35FDZVFau",
        "Solana address: AWG2mxFQ8wrhqXVfRMn6sSjLRb8sfTph7ANVWnLSELsJ",
    );
}

fn random_splits<G: Group>() {
    let mut rng = Rng::new(G::CURVE.as_str());
    for i in 0..48 {
        let s = split::<G>(&mut rng, &format!("client-{i}"));
        let (c, k) = halves(G::CURVE, &s.client, &s.custodian);
        partial_checks(G::CURVE, &c).unwrap();
        partial_checks(G::CURVE, &k).unwrap();
        let ejected = combine(G::CURVE, &c, &k).unwrap();
        let mut be = *ejected.key;
        if G::CURVE == Curve::Ed25519 {
            be.reverse();
        }
        assert_eq!(be, s.d, "split {i}");
    }
}

#[test]
fn random_splits_give_the_key_back_secp256k1() {
    random_splits::<Secp256k1>();
}

#[test]
fn random_splits_give_the_key_back_ed25519() {
    random_splits::<Ed25519>();
}

const N_SECP: &str =
    "115792089237316195423570985008687907852837564279074904382605163141518161494337";
const L_ED: &str = "7237005577332262213973186563042994240857116359379907606001950938285454250989";

#[test]
fn mismatched_halves_are_refused() {
    let mut rng = Rng::new("mismatch");
    let a = split::<Secp256k1>(&mut rng, "client-a");
    let b = split::<Secp256k1>(&mut rng, "client-a");
    let curve = Curve::Secp256k1;

    let mut other_client = a.custodian.clone();
    other_client["clientId"] = json!("client-b");
    assert_eq!(
        refusal(curve, &a.client, &other_client),
        "the two halves name different clients (clientId)"
    );
    // Another wallet's custodian half, same client.
    assert_eq!(
        refusal(curve, &a.client, &b.custodian),
        "the two halves name different wallet public keys (pubkey; x, y)"
    );
    let mut bk = a.custodian.clone();
    bk["serverBk"] = b.custodian["serverBk"].clone();
    assert_eq!(
        refusal(curve, &a.client, &bk),
        "the two halves disagree on the server's Birkhoff x (bks.server.x; serverBk)"
    );
    let mut partial = a.custodian.clone();
    partial["clientPartialPubKey_x"] = b.custodian["clientPartialPubKey_x"].clone();
    partial["clientPartialPubKey_y"] = b.custodian["clientPartialPubKey_y"].clone();
    assert_eq!(
        refusal(curve, &a.client, &partial),
        "the two halves disagree on the client's partial public key"
    );
    // A share that belongs to no line through the key: d·G is not the wallet's key.
    let mut tampered = a.custodian.clone();
    tampered["share"] = json!("12345");
    tampered
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.contains("PartialPubKey"));
    assert_eq!(
        refusal(curve, &a.client, &tampered),
        "the combined key does not give the wallet's public key (d·G ≠ pubkey): refused"
    );
    let mut named = a.client.clone();
    named["curve"] = json!("ED25519");
    assert_eq!(
        refusal(curve, &named, &a.custodian),
        "client backup share: it is for ED25519, not SECP256K1"
    );
    let (c, k) = halves(curve, &a.client, &a.custodian);
    assert_eq!(
        combine(curve, &k, &c).err().unwrap().to_string(),
        "a custodian backup share was given where the client backup share belongs"
    );
}

#[test]
fn out_of_range_values_are_refused() {
    let (client, custodian) = portal_example(Curve::Secp256k1);
    let curve = Curve::Secp256k1;
    let set = |v: &Value, path: &[&str], to: &str| {
        let mut v = v.clone();
        let mut slot = &mut v;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = json!(to);
        v
    };
    let x_c = client["bks"]["client"]["x"].as_str().unwrap();
    assert_eq!(
        refusal(
            curve,
            &set(&client, &["bks", "server", "x"], x_c),
            &set(&custodian, &["serverBk"], x_c)
        ),
        "both halves sit at the same Birkhoff x (bks.client.x = bks.server.x): they cannot be combined"
    );
    assert_eq!(
        refusal(curve, &set(&client, &["share"], N_SECP), &custodian),
        "client backup share: field `share` is not below the order of SECP256K1"
    );
    assert_eq!(
        refusal(curve, &client, &set(&custodian, &["share"], "0")),
        "custodian backup share: field `share` is zero"
    );
    assert_eq!(
        refusal(
            curve,
            &set(&client, &["bks", "client", "x"], "0"),
            &set(&custodian, &["clientBk"], "0")
        ),
        "client backup share: field `bks.client.x` is zero"
    );
    let (ed_c, ed_s) = portal_example(Curve::Ed25519);
    assert_eq!(
        refusal(Curve::Ed25519, &set(&ed_c, &["share"], L_ED), &ed_s),
        "client backup share: field `share` is not below the order of ED25519"
    );
    let off = |v: &Value, p: &[&str]| set(v, p, "5");
    assert_eq!(
        refusal(
            Curve::Ed25519,
            &off(&ed_c, &["pubkey", "y"]),
            &off(&ed_s, &["y"])
        ),
        "client backup share: field `pubkey` is not a point of ED25519 (the coordinates are not on the curve)"
    );
    assert_eq!(
        refusal(
            curve,
            &off(&client, &["pubkey", "y"]),
            &off(&custodian, &["y"])
        ),
        "client backup share: field `pubkey` is not a point of SECP256K1 (the coordinates are not on the curve)"
    );
    // The example's points are of their own curve only.
    assert!(refusal(Curve::Ed25519, &client, &custodian).contains("not a point of ED25519"));
}
