use super::*;

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
    assert_eq!(decoded["share"].as_str().unwrap().len(), 64);
    assert_eq!(doc["ED25519"]["id"], "cmdemoed25519signing0000");
}
