//! Custody's webhooks against the in-memory fakes of `adapters::memory`.
use super::*;
use crate::adapters::memory::{FakeEnvelope, FakeStore};
use crate::domain::secret::WebhookSecret;
use http::HeaderValue;

fn secret() -> WebhookSecrets {
    WebhookSecrets::only(WebhookSecret::new("whsec-correct-horse".into()).unwrap())
}

fn headers(value: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = value {
        h.insert("X-Webhook-Secret", HeaderValue::from_str(v).unwrap());
    }
    h
}

/// A custodian share as Portal sends it: flat JSON naming its client.
fn share(client: &str, scalar: &str) -> String {
    json!({"clientId": client, "custodianId": "cust-1", "share": scalar}).to_string()
}

#[test]
fn secret_check_is_exact_and_takes_the_previous_value_during_a_rotation() {
    let s = secret();
    assert!(s.admits(&headers(Some("whsec-correct-horse"))));
    for wrong in [
        None,
        Some(""),
        Some("whsec-correct-hors"),
        Some("whsec-correct-horse "),
    ] {
        assert!(!s.admits(&headers(wrong)), "{wrong:?}");
    }
    let mut two = headers(Some("whsec-correct-horse"));
    two.append(
        "x-webhook-secret",
        HeaderValue::from_static("whsec-correct-horse"),
    );
    assert!(!s.admits(&two), "a repeated header is refused");
    assert!(WebhookSecret::new("  ".into()).is_none());
    assert!(!format!("{s:?}").contains("horse"));
    let rotating = WebhookSecrets {
        current: WebhookSecret::new("whsec-new".into()).unwrap(),
        previous: Some(WebhookSecret::new("whsec-correct-horse".into()).unwrap()),
    };
    assert!(rotating.admits(&headers(Some("whsec-new"))));
    assert!(rotating.admits(&headers(Some("whsec-correct-horse"))));
    assert!(!rotating.admits(&headers(Some("whsec-older"))));
}

#[test]
fn routes_allow_stage_prefixes() {
    assert_eq!(Hook::from_path("/webhook/backup"), Some(Hook::Backup));
    assert_eq!(Hook::from_path("/prod/webhook/backup/"), Some(Hook::Backup));
    assert_eq!(
        Hook::from_path("/prod/webhook/backup/fetch"),
        Some(Hook::Fetch)
    );
    assert_eq!(Hook::from_path("/backups"), None);
    assert_eq!(Hook::from_path("/webhook/backups"), None);
}

async fn call_capped(
    store: &FakeStore,
    caps: CustodianCaps,
    hook: Hook,
    secret_header: Option<&str>,
    body: &str,
) -> HookAnswer {
    let headers = headers(secret_header);
    serve(
        &FakeEnvelope::default(),
        store,
        caps,
        &secret(),
        HookCall {
            hook,
            headers: &headers,
            body: body.as_bytes(),
            source: "35.203.150.117",
        },
    )
    .await
}

async fn call(
    store: &FakeStore,
    hook: Hook,
    secret_header: Option<&str>,
    body: &str,
) -> HookAnswer {
    call_capped(store, CustodianCaps::default(), hook, secret_header, body).await
}

#[tokio::test]
async fn backup_then_fetch_round_trips_sealed_shares_written_once() {
    let store = FakeStore::default();
    let good = Some("whsec-correct-horse");
    for (pair, scalar, status, outcome) in [
        ("bp1", "share-one", 200, Outcome::Stored),
        ("bp2", "share-two", 200, Outcome::Stored),
        // Portal resends: the same share is accepted, nothing is rewritten.
        ("bp1", "share-one", 200, Outcome::Resent),
        // Another share for a stored pair is refused and the stored one stays.
        ("bp1", "share-one-forged", 409, Outcome::Conflict),
    ] {
        let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", scalar), "backupSharePairId": pair});
        let a = call(&store, Hook::Backup, good, &body.to_string()).await;
        assert_eq!(
            (a.status, a.outcome),
            (status, outcome),
            "{pair} {scalar}: {}",
            a.body
        );
        assert!(
            !a.body.to_string().contains("share-one"),
            "no share in answers"
        );
        if status == 409 {
            assert_eq!(a.body["error"]["code"], "CUSTODIAN_SHARE_CONFLICT");
        }
    }
    let other = json!({"clientId": "c2", "backupMethod": "CUSTOM", "share": share("c2", "theirs"), "backupSharePairId": "bp9"});
    assert_eq!(
        call(&store, Hook::Backup, good, &other.to_string())
            .await
            .status,
        200
    );
    let stored = store.custodian.lock().unwrap().clone();
    let item = &stored[&("c1".to_owned(), "bp1".to_owned())];
    assert!(
        item.cipher_text
            .contains(r#""purpose":"custodian-backup-share""#),
        "sealed under its own context"
    );
    let a = call(&store, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
    assert_eq!((a.status, a.outcome, a.fetched), (200, Outcome::Fetched, 2));
    let mut shares: Vec<String> = serde_json::from_value(a.body["backupShares"].clone()).unwrap();
    shares.sort();
    assert_eq!(
        shares,
        [share("c1", "share-one"), share("c1", "share-two")],
        "the first share of each pair; only this client's"
    );
}

#[tokio::test]
async fn a_share_is_stored_only_under_the_client_it_names() {
    let store = FakeStore::default();
    let good = Some("whsec-correct-horse");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(json!({"clientId": "c1", "backupSharePairId": "bp7"}).to_string())
    };
    for (inner, status) in [
        (share("victim", "s3cr3t"), 422),
        (json!({"share": "s3cr3t"}).to_string(), 422),
        ("opaque-s3cr3t".to_owned(), 422),
        (b64, 200),
    ] {
        let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": inner, "backupSharePairId": "bp7"});
        let a = call(&store, Hook::Backup, good, &body.to_string()).await;
        assert_eq!(a.status, status, "{inner}: {}", a.body);
        assert!(!a.body.to_string().contains("s3cr3t"));
        if status == 422 {
            assert_eq!(a.body["error"]["code"], "CLIENT_MISMATCH");
            assert_eq!(a.outcome, Outcome::ClientMismatch);
            assert!(a.outcome.is_refusal());
            assert!(store.custodian.lock().unwrap().is_empty(), "nothing stored");
        }
    }
}

#[tokio::test]
async fn a_client_stops_at_its_caps_and_fetch_always_answers_in_full() {
    let store = FakeStore::default();
    let good = Some("whsec-correct-horse");
    let caps = CustodianCaps {
        shares: 3,
        bytes: 1 << 20,
    };
    for n in 0..5 {
        let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", &format!("s{n}")), "backupSharePairId": format!("bp{n}")});
        let a = call_capped(&store, caps, Hook::Backup, good, &body.to_string()).await;
        let expected = if n < 3 { 200 } else { 507 };
        assert_eq!(a.status, expected, "share {n}: {}", a.body);
        if expected == 507 {
            assert_eq!(a.body["error"]["code"], "CUSTODIAN_CAP_REACHED");
            assert_eq!(a.outcome, Outcome::OverCap);
        }
    }
    // A resend of a stored share is still fine at the cap.
    let resend = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", "s0"), "backupSharePairId": "bp0"});
    let a = call_capped(&store, caps, Hook::Backup, good, &resend.to_string()).await;
    assert_eq!((a.status, a.outcome), (200, Outcome::Resent));
    let a = call_capped(&store, caps, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
    assert_eq!(a.body["backupShares"].as_array().map(Vec::len), Some(3));
    // Byte cap: a client whose shares exceed it (a cap lowered since) is refused whole.
    let tight = CustodianCaps {
        shares: 3,
        bytes: 64,
    };
    let a = call_capped(&store, tight, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
    assert_eq!((a.status, a.outcome), (507, Outcome::OverCap));
    assert!(a.body.get("backupShares").is_none(), "never a partial list");
    let fewer = CustodianCaps {
        shares: 2,
        bytes: 1 << 20,
    };
    let a = call_capped(&store, fewer, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
    assert_eq!(a.status, 507);
}

#[tokio::test]
async fn fetch_returns_every_share_of_a_client() {
    let store = FakeStore::default();
    let good = Some("whsec-correct-horse");
    let caps = CustodianCaps {
        shares: 250,
        bytes: 4 << 20,
    };
    for n in 0..250 {
        let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", &format!("s{n}")), "backupSharePairId": format!("bp{n}")});
        assert_eq!(
            call_capped(&store, caps, Hook::Backup, good, &body.to_string())
                .await
                .status,
            200
        );
    }
    let a = call_capped(&store, caps, Hook::Fetch, good, r#"{"clientId":"c1"}"#).await;
    assert_eq!(a.body["backupShares"].as_array().map(Vec::len), Some(250));
}

#[tokio::test]
async fn wrong_secret_is_401_with_no_body_and_nothing_stored() {
    let store = FakeStore::default();
    let body =
        json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", "s")}).to_string();
    for wrong in [None, Some("nope")] {
        for hook in [Hook::Backup, Hook::Fetch] {
            let a = call(&store, hook, wrong, &body).await;
            assert_eq!(a.status, 401);
            assert_eq!(a.body, json!({"message": "Unauthorized"}), "no detail");
        }
    }
    assert!(store.custodian.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_and_storage_failures_are_clear() {
    let good = Some("whsec-correct-horse");
    let a = call(
        &FakeStore::default(),
        Hook::Backup,
        good,
        r#"{"clientId":"c1","share":"s3cr3t"}"#,
    )
    .await;
    assert_eq!(a.status, 400);
    let text = a.body.to_string();
    assert!(text.contains("backupMethod") && !text.contains("s3cr3t"));
    let failing = FakeStore {
        fail_put: true,
        ..Default::default()
    };
    let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", "s3cr3t")})
        .to_string();
    let a = call(&failing, Hook::Backup, good, &body).await;
    assert_eq!(a.status, 503);
    assert!(!a.body.to_string().contains("s3cr3t"));
}

/// An envelope whose KMS never answers.
struct Stalled;

impl Envelope for Stalled {
    async fn seal(
        &self,
        _: &EncryptionContext,
        _: &[u8],
    ) -> Result<String, crate::ports::envelope::EnvelopeError> {
        std::future::pending().await
    }
    async fn open(
        &self,
        _: &EncryptionContext,
        _: &str,
    ) -> Result<crate::domain::secret::SecretBytes, crate::ports::envelope::EnvelopeError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_dependency_answers_before_portal_gives_up() {
    let started = tokio::time::Instant::now();
    let body = json!({"clientId": "c1", "backupMethod": "CUSTOM", "share": share("c1", "s3cr3t")})
        .to_string();
    let headers = headers(Some("whsec-correct-horse"));
    let a = serve(
        &Stalled,
        &FakeStore::default(),
        CustodianCaps::default(),
        &secret(),
        HookCall {
            hook: Hook::Backup,
            headers: &headers,
            body: body.as_bytes(),
            source: "35.203.150.117",
        },
    )
    .await;
    assert_eq!(a.status, 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
