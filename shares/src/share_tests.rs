use super::*;
use crate::secp256k1::Secp256k1;
use crate::split::{Rng, b64, portal_example, split};
use serde_json::json;

fn err(role: Role, text: &str) -> String {
    parse(role, Curve::Secp256k1, text.as_bytes())
        .err()
        .unwrap()
        .to_string()
}

fn client_err(v: &Value) -> String {
    err(Role::Client, &v.to_string())
}

fn custodian_err(v: &Value) -> String {
    err(Role::Custodian, &v.to_string())
}

#[test]
fn reads_a_client_share_in_every_form_portal_and_storage_give() {
    let (client, _) = portal_example(Curve::Secp256k1);
    let want = parse(
        Role::Client,
        Curve::Secp256k1,
        client.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(want.client_id, "portal-example-client");
    assert_eq!(want.backup_share_pair_id.as_deref(), Some("pair-1"));
    assert_eq!(want.curve, None);
    assert_eq!(
        want.partials,
        Partials {
            client: None,
            server: None
        }
    );
    let entry = json!({"share": b64(&client), "id": "pair-1"});
    let answer = json!({"ED25519": {"share": "x", "id": "other"}, "SECP256K1": entry});
    let forms = [
        b64(&client),
        entry.to_string(),
        b64(&entry),
        answer.to_string(),
        serde_json::to_string(&client.to_string()).unwrap(),
    ];
    for form in forms {
        let half = parse(Role::Client, Curve::Secp256k1, form.as_bytes()).unwrap();
        assert_eq!(*half.scalar, *want.scalar);
        assert_eq!((half.bks, half.pubkey), (want.bks, want.pubkey));
    }
    let from_answer = parse(
        Role::Client,
        Curve::Secp256k1,
        answer.to_string().as_bytes(),
    );
    assert_eq!(from_answer.unwrap().curve, Some(Curve::Secp256k1));
    // Portal's generate shares spell the public key's coordinates X and Y.
    let mut upper = client.clone();
    upper["pubkey"] = json!({"X": client["pubkey"]["x"], "Y": client["pubkey"]["y"]});
    let half = parse(Role::Client, Curve::Secp256k1, upper.to_string().as_bytes()).unwrap();
    assert_eq!(half.pubkey, want.pubkey);
}

#[test]
fn reads_a_custodian_share_flat_base64_or_as_portal_answers_it() {
    let mut rng = Rng::new("share-forms");
    let s = split::<Secp256k1>(&mut rng, "client-9");
    let want = parse(
        Role::Custodian,
        Curve::Secp256k1,
        s.custodian.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(want.client_id, "client-9");
    assert!(want.partials.client.is_some() && want.partials.server.is_some());
    let answer = json!({"custodianBackupShare": s.custodian.to_string(), "encryptedClientBackupShare": "AgR4"});
    for form in [b64(&s.custodian), answer.to_string()] {
        let half = parse(Role::Custodian, Curve::Secp256k1, form.as_bytes()).unwrap();
        assert_eq!(*half.scalar, *want.scalar);
        assert_eq!(
            (half.bks, half.pubkey, half.partials),
            (want.bks, want.pubkey, want.partials)
        );
    }
}

#[test]
fn malformed_client_shares_are_refused_naming_the_field() {
    let (client, _) = portal_example(Curve::Secp256k1);
    let with = |path: &[&str], value: Value| {
        let mut v = client.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut slot = &mut v;
        for key in parents {
            slot = &mut slot[*key];
        }
        match value {
            Value::Null => {
                slot.as_object_mut().unwrap().remove(*last);
            }
            value => slot[*last] = value,
        }
        v
    };
    let cases = [
        (
            with(&["share"], json!("12a4")),
            "field `share` is not a decimal string (digits 0-9 only)",
        ),
        (
            with(&["share"], json!("-5")),
            "field `share` is not a decimal string (digits 0-9 only)",
        ),
        (
            with(&["share"], json!(12345)),
            "field `share` must be a string",
        ),
        (with(&["share"], json!("")), "field `share` is empty"),
        (
            with(&["share"], json!("9".repeat(90))),
            "field `share` is larger than 256 bits",
        ),
        (with(&["share"], Value::Null), "field `share` is missing"),
        (with(&["clientId"], json!("")), "field `clientId` is empty"),
        (
            with(&["clientId"], json!(7)),
            "field `clientId` must be a string",
        ),
        (
            with(&["bks", "server", "x"], Value::Null),
            "field `bks.server.x` is missing",
        ),
        (
            with(&["bks"], Value::Null),
            "field `bks.client.x` is missing",
        ),
        (
            with(&["bks", "client", "rank"], json!(1)),
            "field `bks.client.rank` must be 0 (2-of-2 shares have rank 0)",
        ),
        (
            with(&["pubkey", "y"], json!("0x12")),
            "field `pubkey.y` is not a decimal string (digits 0-9 only)",
        ),
        (
            with(&["curve"], json!("P256")),
            "field `curve` names neither SECP256K1 nor ED25519",
        ),
        (
            with(&["partialPubkey"], json!({"client": {"x": "1"}})),
            "field `partialPubkey.client.y` is given without the other coordinate",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(client_err(&v), format!("client backup share: {want}"));
    }
    let entry = json!({"share": b64(&client), "id": "another-pair"});
    assert_eq!(
        client_err(&entry),
        "client backup share: field `id` is not the share's backupSharePairId"
    );
    let answer = json!({"ED25519": {"share": b64(&client), "id": "pair-1"}});
    assert_eq!(
        client_err(&answer),
        "client backup share: the /v1/backup answer has no SECP256K1 entry"
    );
}

#[test]
fn malformed_custodian_shares_are_refused_naming_the_field() {
    let (_, custodian) = portal_example(Curve::Secp256k1);
    let without = |key: &str| {
        let mut v = custodian.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let with = |key: &str, value: Value| {
        let mut v = custodian.clone();
        v[key] = value;
        v
    };
    let cases = [
        (without("clientId"), "field `clientId` is missing"),
        (without("serverBk"), "field `serverBk` is missing"),
        (without("x"), "field `x` is missing"),
        (
            with("clientBk", json!("1.5")),
            "field `clientBk` is not a decimal string (digits 0-9 only)",
        ),
        (with("y", json!(null)), "field `y` is missing"),
        (
            with("serverPartialPubKey_x", json!("5")),
            "field `serverPartialPubKey_y` is given without the other coordinate",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(custodian_err(&v), format!("custodian backup share: {want}"));
    }
}

#[test]
fn swapped_files_are_named_as_such() {
    let (client, custodian) = portal_example(Curve::Secp256k1);
    assert_eq!(
        err(Role::Client, &custodian.to_string()),
        "client backup share: the file holds the other half (are the two files swapped?)"
    );
    assert_eq!(
        err(Role::Custodian, &b64(&client)),
        "custodian backup share: the file holds the other half (are the two files swapped?)"
    );
}

#[test]
fn what_is_not_a_share_is_refused() {
    assert_eq!(
        err(Role::Client, "not a share"),
        "client backup share: neither JSON nor standard base64 of JSON"
    );
    assert_eq!(
        err(Role::Custodian, "[1, 2]"),
        "custodian backup share: not a JSON object of a backup share"
    );
    assert_eq!(
        err(Role::Custodian, r#"{"a": "b"}"#),
        "custodian backup share: not a JSON object of a backup share"
    );
    assert_eq!(
        err(Role::Client, "{\"clientId\": "),
        "client backup share: neither JSON nor standard base64 of JSON"
    );
    let mut deep = json!("{}");
    for _ in 0..6 {
        deep = json!(deep.to_string());
    }
    assert_eq!(
        err(Role::Client, &deep.to_string()),
        "client backup share: wrapped in too many layers of JSON strings and base64"
    );
}

#[test]
fn errors_and_debug_never_show_a_value() {
    let (client, _) = portal_example(Curve::Secp256k1);
    let share = client["share"].as_str().unwrap().to_owned();
    let half = parse(
        Role::Client,
        Curve::Secp256k1,
        client.to_string().as_bytes(),
    )
    .unwrap();
    assert!(!format!("{half:?}").contains(&share[..12]));
    assert!(format!("{half:?}").contains("<redacted>"));
    let mut bad = client.clone();
    bad["share"] = json!(format!("{share}x"));
    assert!(!client_err(&bad).contains(&share[..12]));
}
