use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::*;
use crate::adapters::dynamodb::client_pk;
use crate::domain::esdk_message::{encode_text, test_message};
use crate::ports::rotation::{ItemKey, Page, Rewrap, Rewrapped, RotationTable, ScannedItem, Swap};

const OLD: &str = "arn:aws:kms:us-east-1:1:key/old";
const NEW: &str = "arn:aws:kms:us-east-1:1:key/new";
const GONE: &str = "arn:aws:kms:us-east-1:1:key/disabled";

/// Re-wraps by tagging the data key with the context and the destination; refuses `GONE`.
struct FakeKms {
    current: Result<String, ()>,
    calls: Mutex<u32>,
    /// The proof of a new ciphertext fails (KMS fails between the re-seal and the swap).
    fail_proof: bool,
    proofs: Mutex<u32>,
}

impl FakeKms {
    fn new() -> Self {
        Self {
            current: Ok(NEW.into()),
            calls: Mutex::new(0),
            fail_proof: false,
            proofs: Mutex::new(0),
        }
    }
}

impl Rewrap for FakeKms {
    async fn current_key(&self) -> Result<String, EnvelopeError> {
        self.current
            .clone()
            .map_err(|()| EnvelopeError::KeyService {
                operation: "DescribeKey",
                transient: false,
                code: Some("NotFoundException".into()),
                detail: "no such key".into(),
            })
    }

    async fn rewrap(
        &self,
        sealed: &Sealed,
        context: &EncryptionContext,
        destination: &str,
    ) -> Result<Rewrapped, EnvelopeError> {
        *self.calls.lock().unwrap() += 1;
        // A KMS call takes time: under a paused clock this moves it on.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if sealed.key_id == GONE {
            return Err(EnvelopeError::KeyService {
                operation: "ReEncrypt",
                transient: false,
                code: Some("DisabledException".into()),
                detail: "key is disabled".into(),
            });
        }
        let mut edk = destination.as_bytes().to_vec();
        edk.extend(context.aad());
        Ok(Rewrapped {
            key_id: destination.into(),
            encrypted_data_key: edk,
        })
    }

    async fn reseal(
        &self,
        context: &EncryptionContext,
        old: &str,
    ) -> Result<String, EnvelopeError> {
        *self.calls.lock().unwrap() += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
        if key_of(old)? == GONE {
            return Err(EnvelopeError::KeyService {
                operation: "Decrypt",
                transient: false,
                code: Some("DisabledException".into()),
                detail: "key is disabled".into(),
            });
        }
        Ok(esdk(NEW, context))
    }

    async fn proves(&self, context: &EncryptionContext, new: &str) -> Result<(), EnvelopeError> {
        *self.proofs.lock().unwrap() += 1;
        if self.fail_proof {
            return Err(EnvelopeError::KeyService {
                operation: "Decrypt",
                transient: true,
                code: Some("KMSInternalException".into()),
                detail: "unavailable".into(),
            });
        }
        // The new ciphertext must be under the new key and carry its context.
        match Format::of(new) {
            Format::Esdk => {
                let (key, stored) = opened(new);
                assert_eq!((key.as_str(), &stored), (NEW, &context.to_kms()));
            }
            Format::Pbe1 => assert_eq!(Sealed::decode(new)?.key_id, NEW),
        }
        Ok(())
    }
}

/// An ESDK message (header only) under `key`, its context stored in the header.
fn esdk(key: &str, context: &EncryptionContext) -> String {
    let pairs: BTreeMap<String, String> = context.to_kms().into_iter().collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    encode_text(&test_message(&pairs, &[("aws-kms", key)]))
}

/// The key and stored context of an ESDK message.
fn opened(text: &str) -> (String, HashMap<String, String>) {
    assert_eq!(Format::of(text), Format::Esdk, "{text}");
    let h = read_header(&decode_text(text).unwrap()).unwrap();
    (
        h.kms_key_arn().unwrap().to_owned(),
        h.stored_context.into_iter().collect(),
    )
}

/// A sorted in-memory table; `changed` makes every swap find another value.
#[derive(Default)]
struct FakeTable {
    items: Mutex<BTreeMap<(String, String), HashMap<String, String>>>,
    changed: bool,
}

impl FakeTable {
    fn insert(&self, pk: &str, sk: &str, attrs: &[(&str, &str)]) {
        let mut a: HashMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        a.insert("pk".into(), pk.into());
        a.insert("sk".into(), sk.into());
        self.items.lock().unwrap().insert((pk.into(), sk.into()), a);
    }

    fn get(&self, pk: &str, sk: &str, attr: &str) -> String {
        self.items.lock().unwrap()[&(pk.to_owned(), sk.to_owned())][attr].clone()
    }
}

impl RotationTable for FakeTable {
    async fn page(
        &self,
        client_id: Option<&str>,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let items = self.items.lock().unwrap();
        let all: Vec<ScannedItem> = items
            .iter()
            .filter(|((pk, sk), _)| {
                client_id.is_none_or(|c| *pk == client_pk(c))
                    && start.is_none_or(|s| (pk, sk) > (&s.pk, &s.sk))
            })
            .map(|((pk, sk), a)| ScannedItem {
                key: ItemKey {
                    pk: pk.clone(),
                    sk: sk.clone(),
                },
                attributes: a.clone(),
            })
            .collect();
        let more = all.len() > limit as usize;
        let items: Vec<_> = all.into_iter().take(limit as usize).collect();
        let last = more.then(|| items.last().map(|i| i.key.clone())).flatten();
        Ok(Page { items, last })
    }

    async fn in_flight_pairs(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        let items = self.items.lock().unwrap();
        Ok(items
            .iter()
            .filter(|((pk, sk), a)| {
                *pk == client_pk(client_id)
                    && sk.starts_with("BACKUP#")
                    && a.get("status").map(String::as_str) == Some("BACKED_UP")
            })
            .flat_map(|(_, a)| {
                ["secp256k1PairId", "ed25519PairId"]
                    .into_iter()
                    .filter_map(|k| a.get(k).cloned())
            })
            .collect())
    }

    async fn swap(
        &self,
        key: &ItemKey,
        attribute: &str,
        old: &str,
        new: &str,
    ) -> Result<Swap, StoreError> {
        let mut items = self.items.lock().unwrap();
        let item = items.get_mut(&(key.pk.clone(), key.sk.clone())).unwrap();
        if self.changed || item.get(attribute).map(String::as_str) != Some(old) {
            return Ok(Swap::Changed);
        }
        item.insert(attribute.into(), new.into());
        Ok(Swap::Written)
    }
}

fn pbe1(key_id: &str, nonce: u8) -> String {
    Sealed {
        key_id: key_id.into(),
        encrypted_data_key: vec![7; 8],
        nonce: [nonce; 12],
        ciphertext: vec![nonce; 24],
    }
    .encode()
}

/// Two clients: shares, a completed checkpoint, a custodian copy, and oddities.
fn table() -> FakeTable {
    let t = FakeTable::default();
    for c in ["c1", "c2"] {
        let pk = format!("CLIENT#{c}");
        t.insert(
            &pk,
            "SHARE#a",
            &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 1))],
        );
        t.insert(
            &pk,
            "SHARE#b",
            &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 2))],
        );
        t.insert(
            &pk,
            "BACKUP#s1.s2",
            &[
                ("status", "COMPLETED"),
                ("secp256k1PairId", "a"),
                ("secp256k1CipherText", &pbe1(OLD, 1)),
                ("ed25519PairId", "b"),
                ("ed25519CipherText", &pbe1(OLD, 2)),
            ],
        );
    }
    t.insert(
        "CLIENT#c1",
        "CUSTODIAN#x",
        &[("backupSharePairId", "a"), ("cipherText", &pbe1(OLD, 3))],
    );
    t.insert("CLIENT#c1", "BACKUP#fresh", &[("status", "IN_PROGRESS")]);
    t.insert("CLIENT#c1", "WEBHOOK#1", &[("cipherText", &pbe1(OLD, 4))]);
    t
}

fn request(page_size: u32) -> RotateRequest {
    RotateRequest {
        mode: Mode::Rewrap,
        client_id: None,
        start: None,
        page_size,
    }
}

async fn run_to_end(kms: &FakeKms, t: &FakeTable, page_size: u32) -> (RotateAnswer, u32) {
    run_mode(kms, t, page_size, Mode::Rewrap).await
}

async fn run_mode(kms: &FakeKms, t: &FakeTable, page_size: u32, mode: Mode) -> (RotateAnswer, u32) {
    let mut total = RotateAnswer::default();
    let mut req = RotateRequest {
        mode,
        ..request(page_size)
    };
    let mut invocations = 0;
    loop {
        invocations += 1;
        let a = rotate(kms, t, &req, &Deadline::none()).await.unwrap();
        assert_eq!(a.mode, mode);
        total.rewrapped += a.rewrapped;
        total.migrated += a.migrated;
        total.already_current += a.already_current;
        total.skipped += a.skipped;
        total.failed += a.failed;
        let Some(cursor) = a.cursor else { break };
        req.start = decode_cursor(&cursor).map(|(k, _)| k);
    }
    (total, invocations)
}

#[tokio::test]
async fn every_kind_is_rewrapped_keeping_nonce_and_ciphertext_and_a_rerun_does_nothing() {
    let (kms, t) = (FakeKms::new(), table());
    let (total, invocations) = run_to_end(&kms, &t, 2).await;
    // 2 × (2 shares + 2 checkpoint ciphertexts); a custodian share is never the backup's to touch.
    assert_eq!(total.rewrapped, 8, "{total:?}");
    assert_eq!((total.already_current, total.failed), (0, 0));
    assert_eq!(total.skipped, 2, "the unknown kind and the custodian share");
    assert!(invocations >= 5, "{invocations}");
    let after = Sealed::decode(&t.get("CLIENT#c2", "BACKUP#s1.s2", "ed25519CipherText")).unwrap();
    let before = Sealed::decode(&pbe1(OLD, 2)).unwrap();
    assert_eq!(after.key_id, NEW);
    assert_eq!(
        (after.nonce, &after.ciphertext),
        (before.nonce, &before.ciphertext)
    );
    let expected_ctx = EncryptionContext::backup_share("c2", "b", Curve::Ed25519);
    assert!(after.encrypted_data_key.ends_with(&expected_ctx.aad()));
    assert_eq!(
        t.get("CLIENT#c1", "CUSTODIAN#x", "cipherText"),
        pbe1(OLD, 3),
        "a custodian share in the backup table is refused, left as it was"
    );
    assert_eq!(t.get("CLIENT#c1", "WEBHOOK#1", "cipherText"), pbe1(OLD, 4));

    let calls = *kms.calls.lock().unwrap();
    let (again, _) = run_to_end(&kms, &t, 100).await;
    assert_eq!((again.rewrapped, again.already_current), (0, 8));
    assert_eq!(
        *kms.calls.lock().unwrap(),
        calls,
        "no KMS call for current ciphertexts"
    );
}

#[tokio::test]
async fn migrate_reseals_every_pbe1_string_as_an_esdk_message_under_its_context() {
    let (kms, t) = (FakeKms::new(), table());
    // One share already current in pbe1, one ESDK message under the old key.
    t.insert(
        "CLIENT#c3",
        "SHARE#n",
        &[("curve", "ED25519"), ("cipherText", &pbe1(NEW, 5))],
    );
    let ctx = EncryptionContext::backup_share("c3", "e", Curve::Secp256k1);
    t.insert(
        "CLIENT#c3",
        "SHARE#e",
        &[("curve", "SECP256K1"), ("cipherText", &esdk(OLD, &ctx))],
    );
    let (total, _) = run_mode(&kms, &t, 3, Mode::Migrate).await;
    assert_eq!((total.migrated, total.rewrapped), (9, 1), "{total:?}");
    assert_eq!(
        (total.already_current, total.failed, total.skipped),
        (0, 0, 2)
    );
    for (pk, sk, attr, ctx) in [
        (
            "CLIENT#c2",
            "BACKUP#s1.s2",
            "ed25519CipherText",
            EncryptionContext::backup_share("c2", "b", Curve::Ed25519),
        ),
        (
            "CLIENT#c1",
            "SHARE#a",
            "cipherText",
            EncryptionContext::backup_share("c1", "a", Curve::Secp256k1),
        ),
        (
            "CLIENT#c3",
            "SHARE#n",
            "cipherText",
            EncryptionContext::backup_share("c3", "n", Curve::Ed25519),
        ),
        ("CLIENT#c3", "SHARE#e", "cipherText", ctx),
    ] {
        let (key, stored) = opened(&t.get(pk, sk, attr));
        assert_eq!((key.as_str(), &stored), (NEW, &ctx.to_kms()), "{pk} {sk}");
    }
    assert_eq!(t.get("CLIENT#c1", "WEBHOOK#1", "cipherText"), pbe1(OLD, 4));

    // Done: a re-run in either mode finds every ciphertext current and calls KMS for none.
    let calls = *kms.calls.lock().unwrap();
    for mode in [Mode::Migrate, Mode::Rewrap] {
        let (again, _) = run_mode(&kms, &t, 100, mode).await;
        assert_eq!(
            (again.migrated, again.rewrapped, again.already_current),
            (0, 0, 10)
        );
    }
    assert_eq!(*kms.calls.lock().unwrap(), calls);
}

#[tokio::test]
async fn rewrap_mode_reseals_esdk_messages_and_keeps_pbe1_strings_pbe1() {
    let (kms, t) = (FakeKms::new(), FakeTable::default());
    let ctx = EncryptionContext::backup_share("c", "a", Curve::Ed25519);
    t.insert(
        "CLIENT#c",
        "SHARE#a",
        &[("curve", "ED25519"), ("cipherText", &esdk(OLD, &ctx))],
    );
    t.insert(
        "CLIENT#c",
        "SHARE#b",
        &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 2))],
    );
    let gone = EncryptionContext::backup_share("c", "g", Curve::Ed25519);
    t.insert(
        "CLIENT#c",
        "SHARE#g",
        &[("curve", "ED25519"), ("cipherText", &esdk(GONE, &gone))],
    );
    let (total, _) = run_to_end(&kms, &t, 10).await;
    assert_eq!(
        (total.rewrapped, total.migrated, total.failed),
        (2, 0, 1),
        "{total:?}"
    );
    assert_eq!(
        opened(&t.get("CLIENT#c", "SHARE#a", "cipherText")),
        (NEW.to_owned(), ctx.to_kms())
    );
    assert_eq!(
        Sealed::decode(&t.get("CLIENT#c", "SHARE#b", "cipherText"))
            .unwrap()
            .key_id,
        NEW
    );
    assert_eq!(
        t.get("CLIENT#c", "SHARE#g", "cipherText"),
        esdk(GONE, &gone),
        "a failure writes nothing"
    );
}

#[tokio::test]
async fn one_bad_item_is_counted_and_the_run_goes_on() {
    let (kms, t) = (FakeKms::new(), FakeTable::default());
    t.insert(
        "CLIENT#c",
        "SHARE#a",
        &[("curve", "ED25519"), ("cipherText", &pbe1(GONE, 1))],
    );
    t.insert(
        "CLIENT#c",
        "SHARE#b",
        &[("curve", "ED25519"), ("cipherText", "pbe1.garbage")],
    );
    t.insert(
        "CLIENT#c",
        "SHARE#c",
        &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 3))],
    );
    t.insert("CLIENT#c", "SHARE#d", &[("cipherText", &pbe1(OLD, 3))]);
    let a = rotate(&kms, &t, &request(10), &Deadline::none())
        .await
        .unwrap();
    assert_eq!((a.rewrapped, a.failed, a.skipped), (1, 2, 1), "{a:?}");
    assert_eq!(a.cursor, None);
    assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(GONE, 1));
}

#[tokio::test]
async fn a_concurrent_change_is_never_overwritten() {
    let kms = FakeKms::new();
    let t = FakeTable {
        changed: true,
        ..FakeTable::default()
    };
    t.insert(
        "CLIENT#c",
        "SHARE#a",
        &[("curve", "ED25519"), ("cipherText", &pbe1(OLD, 1))],
    );
    let a = rotate(&kms, &t, &request(10), &Deadline::none())
        .await
        .unwrap();
    assert_eq!((a.rewrapped, a.failed), (0, 1));
    assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(OLD, 1));
}

#[tokio::test]
async fn backups_in_flight_are_skipped_with_their_shares_and_a_missing_target_key_is_an_error() {
    let t = FakeTable::default();
    t.insert(
        "CLIENT#c",
        "BACKUP#k",
        &[
            ("status", "BACKED_UP"),
            ("secp256k1PairId", "a"),
            ("secp256k1CipherText", &pbe1(OLD, 1)),
        ],
    );
    // Its share item was stored before a crash: its retry must find it byte-equal.
    t.insert(
        "CLIENT#c",
        "SHARE#a",
        &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 1))],
    );
    t.insert(
        "CLIENT#c",
        "SHARE#z",
        &[("curve", "SECP256K1"), ("cipherText", &pbe1(OLD, 2))],
    );
    let a = rotate(&FakeKms::new(), &t, &request(10), &Deadline::none())
        .await
        .unwrap();
    assert_eq!((a.rewrapped, a.skipped), (1, 2), "{a:?}");
    assert_eq!(t.get("CLIENT#c", "SHARE#a", "cipherText"), pbe1(OLD, 1));
    let kms = FakeKms {
        current: Err(()),
        ..FakeKms::new()
    };
    let e = rotate(&kms, &t, &request(10), &Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Rotate);
    assert!(!e.is_transient());
}

#[tokio::test(start_paused = true)]
async fn near_the_deadline_it_stops_after_an_item_and_answers_where_to_resume() {
    let (kms, t) = (FakeKms::new(), table());
    let deadline = Deadline::after(ITEM_BUDGET + crate::workflow::retry::RESERVE);
    // Exactly the budget: the first item that calls KMS uses some of it, so the run stops there.
    let a = rotate(&kms, &t, &request(100), &deadline).await.unwrap();
    let (key, client) = decode_cursor(a.cursor.as_deref().unwrap()).unwrap();
    assert_eq!(client, None);
    assert_eq!(a.rewrapped, 2, "{a:?}");
    let mut req = request(100);
    req.start = Some(key);
    let rest = rotate(&kms, &t, &req, &Deadline::none()).await.unwrap();
    assert_eq!(rest.cursor, None);
    assert_eq!(a.rewrapped + rest.rewrapped, 8);
    let too_late = Deadline::after(Duration::from_millis(10));
    let e = rotate(&kms, &t, &request(100), &too_late)
        .await
        .unwrap_err();
    assert!(matches!(e.cause, Cause::Deadline(_)) && e.is_transient());
}

#[tokio::test]
async fn a_client_run_reads_only_that_client() {
    let (kms, t) = (FakeKms::new(), table());
    let mut req = request(100);
    req.client_id = Some("c2".into());
    let a = rotate(&kms, &t, &req, &Deadline::none()).await.unwrap();
    assert_eq!(a.rewrapped, 4);
    assert_eq!(t.get("CLIENT#c1", "SHARE#a", "cipherText"), pbe1(OLD, 1));
}

#[test]
fn requests_are_strict_and_cursors_round_trip_within_their_scope() {
    let key = ItemKey {
        pk: "CLIENT#c".into(),
        sk: "SHARE#a".into(),
    };
    let cursor = encode_cursor(&key, Some("c"));
    let body = format!(r#"{{"action":"rotate","clientId":"c","cursor":"{cursor}","pageSize":5}}"#);
    assert!(is_rotate(body.as_bytes()));
    let r = RotateRequest::parse(body.as_bytes()).unwrap();
    assert_eq!(
        (r.start, r.page_size, r.client_id.as_deref()),
        (Some(key), 5, Some("c"))
    );
    let r = RotateRequest::parse(br#"{"action":"rotate"}"#).unwrap();
    assert_eq!(
        (r.start, r.page_size, r.client_id),
        (None, DEFAULT_PAGE_SIZE, None)
    );
    assert!(!is_rotate(br#"{"action":"list","clientId":"c"}"#));
    assert!(!is_rotate(br#"{"clientId":"c"}"#));
    for bad in [
        format!(r#"{{"action":"rotate","cursor":"{cursor}"}}"#),
        r#"{"action":"rotate","cursor":"bm90IGpzb24"}"#.to_owned(),
        r#"{"action":"rotate","pageSize":0}"#.to_owned(),
        r#"{"action":"rotate","pageSize":1001}"#.to_owned(),
        r#"{"action":"rotate","pageSize":"5"}"#.to_owned(),
        r#"{"action":"rotate","clientId":""}"#.to_owned(),
        r#"{"action":"rotate","extra":1}"#.to_owned(),
    ] {
        assert!(RotateRequest::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn each_item_kind_maps_to_its_attributes_and_context() {
    let item = |sk: &str, attrs: &[(&str, &str)]| ScannedItem {
        key: ItemKey {
            pk: "CLIENT#c".into(),
            sk: sk.into(),
        },
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let f = sealed_fields(&item("SHARE#p", &[("curve", "SECP256K1")])).unwrap();
    assert_eq!(f[0].attribute, "cipherText");
    assert_eq!(
        f[0].context,
        EncryptionContext::backup_share("c", "p", Curve::Secp256k1)
    );
    let f = sealed_fields(&item(
        "BACKUP#k",
        &[
            ("status", "STORED"),
            ("ed25519PairId", "e"),
            ("ed25519CipherText", "x"),
        ],
    ))
    .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].attribute, "ed25519CipherText");
    assert_eq!(
        f[0].context,
        EncryptionContext::backup_share("c", "e", Curve::Ed25519)
    );
    assert!(
        sealed_fields(&item("BACKUP#k", &[("status", "IN_PROGRESS")]))
            .unwrap()
            .is_empty()
    );
    assert!(sealed_fields(&item("OTHER#k", &[])).is_err());
    assert!(sealed_fields(&item("nohash", &[])).is_err());
    let mut stray = item("SHARE#p", &[("curve", "SECP256K1")]);
    stray.key.pk = "USER#c".into();
    assert!(sealed_fields(&stray).is_err());
}

#[tokio::test]
async fn a_new_ciphertext_is_proven_before_it_replaces_the_old_one() {
    let t = table();
    let before = t.items.lock().unwrap().clone();
    // KMS fails after every re-seal, before the swap: nothing is replaced, every old ciphertext
    // stays as it was (and so readable), and each failure is counted to run again.
    let failing = FakeKms {
        fail_proof: true,
        ..FakeKms::new()
    };
    let (total, _) = run_to_end(&failing, &t, 100).await;
    assert_eq!(total.rewrapped, 0, "{total:?}");
    assert_eq!(total.failed, 8, "{total:?}");
    assert_eq!(
        *t.items.lock().unwrap(),
        before,
        "not one ciphertext swapped unproven"
    );
    // With KMS back, the same run proves each new ciphertext, then swaps it.
    let kms = FakeKms::new();
    let (total, _) = run_to_end(&kms, &t, 100).await;
    assert_eq!((total.rewrapped, total.failed), (8, 0), "{total:?}");
    assert_eq!(*kms.proofs.lock().unwrap(), 8, "one proof per swap");
}
