//! Property tests: the decoders that read untrusted bytes (events, messages, Portal answers,
//! webhook bodies, ciphertexts, rotate requests and their cursors) never panic, whatever they are
//! given, and the ciphertext format round-trips.

use portal_backup::adapters::portal_http::{parse_backup_response, parse_error};
use portal_backup::domain::ciphertext::{Sealed, open_with_key};
use portal_backup::domain::hook::{BackupHook, parse_fetch};
use portal_backup::domain::model::BackupMode;
use portal_backup::domain::request::{BackupRequest, RequestPolicy};
use portal_backup::domain::secret::SecretBytes;
use portal_backup::domain::share::embedded_pair_id;
use portal_backup::entry::recognise;
use portal_backup::workflow::rotation::{RotateRequest, is_rotate};
use proptest::prelude::*;

/// JSON-looking text: the characters JSON is made of, so the parser gets past the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[\{\}\[\]":,0-9a-zA-Z_\\ .\-]{0,300}"#).unwrap()
}

/// Messages with the right fields and arbitrary values.
fn message_like() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9/_.-]{0,20}".prop_map(|s| format!("\"{s}\"")),
        jsonish().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#"{"SECP256K1":{"share":"a","id":"x"},"ED25519":{"share":"b","id":"y"}}"#.to_owned()),
    ];
    proptest::collection::vec(
        (
            prop_oneof![
                Just("clientId"),
                Just("clientApiKey"),
                Just("generateResponse"),
                Just("sealedGenerateResponse"),
                Just("backupMode"),
                Just("other")
            ],
            value,
        ),
        0..6,
    )
    .prop_map(|fields| {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

fn ciphertext_like() -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9_\\-=+/]{0,40}", 0..7).prop_map(|parts| {
        let mut s = "pbe1".to_owned();
        for p in parts {
            s.push('.');
            s.push_str(&p);
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn message_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = BackupRequest::parse(&bytes, RequestPolicy::new(BackupMode::SelfManaged));
    }

    #[test]
    fn message_decoder_never_panics_on_near_valid_messages(body in message_like()) {
        let strict = RequestPolicy { default_mode: BackupMode::PortalManaged, require_sealed: true };
        let _ = BackupRequest::parse(body.as_bytes(), RequestPolicy::new(BackupMode::SelfManaged));
        let _ = BackupRequest::parse(body.as_bytes(), strict);
    }

    #[test]
    fn event_recogniser_never_panics(text in prop_oneof![jsonish(), message_like(), any::<String>()]) {
        let _ = recognise(&text);
    }

    #[test]
    fn portal_answer_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in jsonish()) {
        let _ = parse_backup_response(&bytes);
        let _ = parse_backup_response(text.as_bytes());
        let _ = parse_error(&bytes);
        let _ = parse_error(text.as_bytes());
        let _ = embedded_pair_id(&text);
    }

    #[test]
    fn webhook_decoders_never_panic_and_never_quote_input(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        text in jsonish(),
        share in "[A-Za-z0-9+/={}\":,]{0,80}",
        pair in prop_oneof![Just(None), "[ -~]{0,140}".prop_map(Some)],
    ) {
        let _ = BackupHook::parse(&bytes);
        let _ = parse_fetch(&bytes);
        let _ = BackupHook::parse(text.as_bytes());
        let mut body = serde_json::json!({"clientId": "c", "backupMethod": "CUSTOM", "share": share});
        if let Some(pair) = pair {
            body["backupSharePairId"] = serde_json::json!(pair);
        }
        match BackupHook::parse(body.to_string().as_bytes()) {
            Ok(hook) => prop_assert!(!hook.backup_share_pair_id.is_empty()),
            // Field-level errors are fixed text: never a piece of the share.
            Err(e) => prop_assert!(share.len() < 4 || !e.to_string().contains(&share)),
        }
    }

    #[test]
    fn rotate_request_decoder_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cursor in "[A-Za-z0-9_\\-=+/]{0,200}",
        page in any::<i64>(),
        client in "[a-z0-9\\u{0}-\\u{1f}]{0,8}",
    ) {
        let _ = is_rotate(&bytes);
        let _ = RotateRequest::parse(&bytes);
        let body = serde_json::json!({"action": "rotate", "cursor": cursor, "pageSize": page, "clientId": client});
        let body = body.to_string();
        prop_assert!(is_rotate(body.as_bytes()));
        let _ = RotateRequest::parse(body.as_bytes());
    }

    #[test]
    fn ciphertext_decoder_never_panics(text in prop_oneof![ciphertext_like(), any::<String>()]) {
        if let Ok(sealed) = Sealed::decode(&text) {
            // Whatever decodes must survive the cipher too: a refusal, never a panic.
            let key = SecretBytes::new(vec![7; 32]);
            let _ = open_with_key(&key, b"aad", sealed.nonce, &sealed.ciphertext);
        }
    }

    #[test]
    fn ciphertext_format_round_trips(
        key_id in "[ -~]{1,100}",
        edk in proptest::collection::vec(any::<u8>(), 1..300),
        nonce in any::<[u8; 12]>(),
        body in proptest::collection::vec(any::<u8>(), 16..300),
    ) {
        let sealed = Sealed { key_id, encrypted_data_key: edk, nonce, ciphertext: body };
        prop_assert_eq!(Sealed::decode(&sealed.encode()).unwrap(), sealed);
    }
}
