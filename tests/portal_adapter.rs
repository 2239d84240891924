//! `HttpPortal`, the reqwest adapter, against the real Portal simulator binary (never a mock):
//! the backup round trip, every documented backup form, error statuses and their classification,
//! timeouts, the PATCH→POST fallback, client isolation, and ids refused before any request.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Sim;
use portal_backup::adapters::portal_http::{HttpPortal, HttpTimeouts, http_client};
use portal_backup::domain::model::Curve;
use portal_backup::domain::secret::{ClientApiKey, SecretString};
use portal_backup::domain::share::embedded_pair_id;
use portal_backup::ports::portal::{BackupShare, Portal, PortalError};
use serde_json::{Value, json};

/// Request timeout of the adapter in tests that do not test timeouts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An adapter talking to `sim` for both APIs, with the given whole-request timeout.
fn adapter(sim: &Sim, request: Duration) -> HttpPortal {
    let timeouts = HttpTimeouts {
        connect: Duration::from_secs(2),
        request,
    };
    let http = http_client(timeouts, false).expect("http client");
    HttpPortal::new(http, &sim.url, &sim.url)
}

fn key(api_key: &str) -> ClientApiKey {
    ClientApiKey::new(api_key.to_owned())
}

fn secret(generate: &Value) -> SecretString {
    SecretString::new(generate.to_string())
}

/// A registered client and its adapter: (client id, api key, generate response, adapter).
async fn client(sim: &Sim, n: usize) -> (String, ClientApiKey, Value, HttpPortal) {
    let (client, api_key, generate) = sim.new_client(n).await;
    (
        client,
        key(&api_key),
        generate,
        adapter(sim, REQUEST_TIMEOUT),
    )
}

/// `/v1/backup` through the adapter, which must succeed.
async fn backup(portal: &HttpPortal, api_key: &ClientApiKey, generate: &Value) -> [BackupShare; 2] {
    portal
        .backup(api_key, &secret(generate))
        .await
        .expect("backup")
}

fn ids(shares: &[BackupShare; 2]) -> Vec<String> {
    shares.iter().map(|s| s.id.clone()).collect()
}

/// The `PortalError::Status` fields that tests look at: (status, error id, retry after).
fn status_of(error: &PortalError) -> (u16, Option<&str>, Option<Duration>) {
    match error {
        PortalError::Status {
            status,
            error_id,
            retry_after,
            ..
        } => (*status, error_id.as_deref(), *retry_after),
        other => panic!("expected PortalError::Status, got {other:?}"),
    }
}

/// Asserts that `shares` are two distinct, incomplete backup pairs of `client` in the
/// simulator, one per curve, each share carrying its own pair id.
async fn assert_backup_pairs(sim: &Sim, client: &str, shares: &[BackupShare; 2]) {
    assert_eq!(shares[0].curve, Curve::Secp256k1);
    assert_eq!(shares[1].curve, Curve::Ed25519);
    assert_ne!(shares[0].id, shares[1].id, "both curves got the same id");
    for share in shares {
        let pair = sim.pair(&share.id).await;
        assert_eq!(pair["kind"], "backup", "{pair}");
        assert_eq!(pair["clientId"], client, "{pair}");
        assert_eq!(pair["curve"], share.curve.as_str(), "{pair}");
        assert_eq!(pair["status"], "incomplete", "{pair}");
        assert_eq!(
            embedded_pair_id(share.share.expose()),
            Some(Some(share.id.clone())),
            "the share carries its backup share pair id"
        );
    }
}

#[tokio::test]
async fn backup_store_read_back_and_mark_stored_round_trip() {
    let sim = Sim::start().await;
    let (client, api_key, generate, portal) = client(&sim, 1).await;

    let shares = backup(&portal, &api_key, &generate).await;
    assert_backup_pairs(&sim, &client, &shares).await;
    // The generate response reached Portal intact: each backup pair backs up its signing pair.
    for share in &shares {
        let pair = sim.pair(&share.id).await;
        assert_eq!(
            pair["signingSharePairId"],
            generate[share.curve.as_str()]["id"]
        );
    }

    for share in &shares {
        let cipher_text = format!("ciphertext-of-{}-{}", share.curve, share.id);
        portal
            .store_cipher_text(&api_key, &share.id, &cipher_text)
            .await
            .expect("store cipher text");
        let read = portal
            .cipher_text(&api_key, &share.id)
            .await
            .expect("read cipher text");
        assert_eq!(read, cipher_text);
        let pair = sim.pair(&share.id).await;
        assert_eq!(pair["clientCipherText"], cipher_text.as_str());
        assert_eq!(pair["status"], "incomplete", "stored is not yet completed");
    }

    portal
        .mark_stored(&api_key, &ids(&shares))
        .await
        .expect("mark stored");
    for share in &shares {
        assert_eq!(sim.pair(&share.id).await["status"], "completed");
    }
}

#[tokio::test]
async fn every_backup_response_form_parses_to_both_curves() {
    let sim = Sim::start().await;
    let (client, api_key, generate, portal) = client(&sim, 1).await;
    // The same key, for the raw request that shows which form the simulator answers in.
    let authorization = api_key.bearer_header();

    for (form, keys) in [
        ("upper", ["SECP256K1", "ED25519"]),
        ("lower", ["secp256k1", "ed25519"]),
        ("seed", ["secp256k1Share", "ed25519Share"]),
    ] {
        sim.admin("config", json!({ "responseForm": form })).await;

        // The knob took effect: a raw call answers under this form's keys only.
        let raw: Value = sim
            .http
            .post(format!("{}/v1/backup", sim.url))
            .header("authorization", authorization.as_str())
            .json(&json!({ "generateResponse": generate.to_string() }))
            .send()
            .await
            .expect("raw backup")
            .json()
            .await
            .expect("raw backup json");
        let mut got: Vec<&str> = raw
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        let mut want = keys.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "form {form}");

        let shares = backup(&portal, &api_key, &generate).await;
        assert_backup_pairs(&sim, &client, &shares).await;
    }
}

#[tokio::test]
async fn a_generate_response_portal_did_not_issue_to_this_client_is_refused() {
    let sim = Sim::start().await;
    let (_, api_key, generate, portal) = client(&sim, 1).await;
    let (_, _, other_generate) = sim.new_client(2).await;

    let made_up_share = |id: &str| {
        STANDARD.encode(
            json!({"clientId": "client-1", "signingSharePairId": id, "share": "00ff"}).to_string(),
        )
    };
    let made_up = json!({
        "SECP256K1": {"share": made_up_share("cmmadeupsecp000000000000a"), "id": "cmmadeupsecp000000000000a"},
        "ED25519": {"share": made_up_share("cmmadeuped0000000000000b"), "id": "cmmadeuped0000000000000b"},
    });
    // This client's own pair ids, but shares it was never issued.
    let mut tampered = generate.clone();
    tampered["SECP256K1"]["share"] = json!(made_up_share("x"));

    for (what, doc) in [
        ("another client's generate response", &other_generate),
        ("a made-up generate response", &made_up),
        ("a generate response with a foreign share", &tampered),
    ] {
        let before = sim.calls("backup").await;
        let error = portal.backup(&api_key, &secret(doc)).await.expect_err(what);
        let (status, error_id, _) = status_of(&error);
        assert_eq!(status, 400, "{what}: {error}");
        assert_eq!(error_id, Some("SHARE_PARSING_FAILED"), "{what}: {error}");
        assert!(!error.is_transient(), "{what}");
        assert_eq!(sim.calls("backup").await, before + 1, "{what}: one call");
    }

    // Nothing refused created a backup pair.
    let state = sim.state().await;
    let backups = state["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .filter(|p| p["kind"] == "backup")
        .count();
    assert_eq!(backups, 0);
}

#[tokio::test]
async fn a_wrong_api_key_is_a_permanent_401_that_does_not_echo_the_key() {
    let sim = Sim::start().await;
    let (_, _, generate, portal) = client(&sim, 1).await;
    let wrong = "wrong-key-5f1c3a9e2b7d40c8";
    let wrong_key = key(wrong);

    let errors = [
        portal
            .backup(&wrong_key, &secret(&generate))
            .await
            .expect_err("backup with a wrong key"),
        portal
            .store_cipher_text(&wrong_key, "cm0000000000000000000000a", "ct")
            .await
            .expect_err("store with a wrong key"),
        portal
            .cipher_text(&wrong_key, "cm0000000000000000000000a")
            .await
            .expect_err("read with a wrong key"),
        portal
            .mark_stored(&wrong_key, &["cm0000000000000000000000a".to_owned()])
            .await
            .expect_err("mark stored with a wrong key"),
    ];
    for error in &errors {
        let (status, error_id, _) = status_of(error);
        assert_eq!(status, 401, "{error}");
        assert_eq!(error_id, Some("AUTH_FAILED"), "{error}");
        assert!(!error.is_transient(), "{error}");
        assert!(!error.to_string().contains(wrong), "Display leaks the key");
        assert!(!format!("{error:?}").contains(wrong), "Debug leaks the key");
    }
}

#[tokio::test]
async fn faults_are_classified_transient_or_permanent() {
    let sim = Sim::start().await;
    let (_, api_key, generate, portal) = client(&sim, 1).await;

    // 503: transient, and the fault is used up by one call.
    sim.fault("backup", 1, 503).await;
    let error = portal
        .backup(&api_key, &secret(&generate))
        .await
        .expect_err("503");
    let (status, error_id, retry_after) = status_of(&error);
    assert_eq!(status, 503, "{error}");
    assert_eq!(error_id, Some("SERVICE_UNAVAILABLE"));
    assert_eq!(retry_after, None);
    assert!(error.is_transient());
    let shares = backup(&portal, &api_key, &generate).await;

    // 429 with Retry-After: transient, and the delay is read.
    sim.admin(
        "faults",
        json!({"route": "store-cipher-text", "status": 429, "retryAfter": 7}),
    )
    .await;
    let error = portal
        .store_cipher_text(&api_key, &shares[0].id, "ct")
        .await
        .expect_err("429");
    let (status, _, retry_after) = status_of(&error);
    assert_eq!(status, 429, "{error}");
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert!(error.is_transient());
    assert_eq!(
        sim.pair(&shares[0].id).await["clientCipherText"],
        Value::Null
    );

    // 404 for a pair Portal does not know: permanent.
    let error = portal
        .cipher_text(&api_key, "cmunknownpair00000000000a")
        .await
        .expect_err("404");
    let (status, error_id, _) = status_of(&error);
    assert_eq!(status, 404, "{error}");
    assert_eq!(error_id, Some("NOT_FOUND"));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_hanging_portal_is_a_transient_transport_error_after_the_request_timeout() {
    let sim = Sim::start().await;
    let (_, api_key, generate, _) = client(&sim, 1).await;
    let portal = adapter(&sim, Duration::from_millis(500));
    sim.admin("faults", json!({"route": "backup", "hang": true}))
        .await;

    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        portal.backup(&api_key, &secret(&generate)),
    )
    .await
    .expect("the adapter gave up on its own");
    let elapsed = started.elapsed();

    let error = result.expect_err("a hung request fails");
    assert!(
        matches!(error, PortalError::Transport { .. }),
        "expected Transport, got {error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(error.status(), None);
    assert!(
        elapsed >= Duration::from_millis(400),
        "gave up before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?} for a 500 ms timeout"
    );
    assert_eq!(sim.calls("backup").await, 1, "the request did reach Portal");
}

#[tokio::test]
async fn store_cipher_text_falls_back_to_post_when_patch_is_refused() {
    let sim = Sim::start().await;
    let (_, api_key, generate, portal) = client(&sim, 1).await;
    let [secp, ed] = backup(&portal, &api_key, &generate).await;

    // PATCH refused with 405: the adapter retries once with POST.
    sim.admin("config", json!({"patchAllowed": false})).await;
    let before = sim.calls("store-cipher-text").await;
    portal
        .store_cipher_text(&api_key, &secp.id, "ct-by-post")
        .await
        .expect("store falls back to POST");
    assert_eq!(sim.calls("store-cipher-text").await, before + 2);
    assert_eq!(sim.pair(&secp.id).await["clientCipherText"], "ct-by-post");
    assert_eq!(
        portal
            .cipher_text(&api_key, &secp.id)
            .await
            .expect("read back"),
        "ct-by-post"
    );

    // Both methods refused: the 405 surfaces, permanent, and nothing is stored.
    sim.admin(
        "config",
        json!({"patchAllowed": false, "postAllowed": false}),
    )
    .await;
    let before = sim.calls("store-cipher-text").await;
    let error = portal
        .store_cipher_text(&api_key, &ed.id, "ct-nowhere")
        .await
        .expect_err("both methods refused");
    let (status, error_id, _) = status_of(&error);
    assert_eq!(status, 405, "{error}");
    assert_eq!(error_id, Some("METHOD_NOT_ALLOWED"));
    assert!(!error.is_transient());
    assert_eq!(sim.calls("store-cipher-text").await, before + 2);
    assert_eq!(sim.pair(&ed.id).await["clientCipherText"], Value::Null);
}

#[tokio::test]
async fn mark_stored_with_another_clients_pair_is_a_permanent_404() {
    let sim = Sim::start().await;
    let (client_a, key_a, generate_a, portal) = client(&sim, 1).await;
    let (_, key_b, generate_b) = sim.new_client(2).await;
    let key_b = key(&key_b);
    let shares_a = backup(&portal, &key_a, &generate_a).await;
    let shares_b = backup(&portal, &key_b, &generate_b).await;

    // Client B names client A's pairs.
    let error = portal
        .mark_stored(&key_b, &ids(&shares_a))
        .await
        .expect_err("another client's pairs");
    let (status, error_id, _) = status_of(&error);
    assert_eq!(status, 404, "{error}");
    assert_eq!(error_id, Some("NOT_FOUND"));
    assert!(!error.is_transient());

    // Client A names one own pair and one of B's: refused as a whole.
    let mixed = vec![shares_a[0].id.clone(), shares_b[1].id.clone()];
    let error = portal
        .mark_stored(&key_a, &mixed)
        .await
        .expect_err("a foreign pair among own pairs");
    assert_eq!(status_of(&error).0, 404, "{error}");
    assert!(!error.is_transient());

    assert_backup_pairs(&sim, &client_a, &shares_a).await;
    for share in &shares_b {
        assert_eq!(sim.pair(&share.id).await["status"], "incomplete");
    }
}

#[tokio::test]
async fn ids_refused_by_the_adapter_never_reach_the_network() {
    let sim = Sim::start().await;
    let (_, api_key, _, portal) = client(&sim, 1).await;
    let too_long = "x".repeat(129);

    for id in [
        "../x", "..", "a/b", "a%2Fb", "a?b=c", "a b", "", "é", &too_long,
    ] {
        let stores = sim.calls("store-cipher-text").await;
        let reads = sim.calls("get-cipher-text").await;

        let error = portal
            .store_cipher_text(&api_key, id, "ct")
            .await
            .expect_err("store with a bad id");
        assert!(
            matches!(error, PortalError::Contract { .. }),
            "{id:?}: {error:?}"
        );
        assert!(!error.is_transient());

        let error = portal
            .cipher_text(&api_key, id)
            .await
            .expect_err("read with a bad id");
        assert!(
            matches!(error, PortalError::Contract { .. }),
            "{id:?}: {error:?}"
        );

        assert_eq!(sim.calls("store-cipher-text").await, stores, "{id:?}");
        assert_eq!(sim.calls("get-cipher-text").await, reads, "{id:?}");
    }
}
