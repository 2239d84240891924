//! The backup request: one SQS message body (or API body, or direct payload), validated before
//! any network call.

use serde_json::{Map, Value};

use crate::domain::model::{BackupMode, Curve, check_id, curve_entries};
use crate::domain::secret::{ClientApiKey, SecretString, wipe_json};

/// Largest accepted body: SQS's own message limit (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Largest accepted share (base64) in a generate response.
pub const MAX_SHARE_BYTES: usize = 64 * 1024;

/// Longest accepted client id.
pub const MAX_CLIENT_ID_LEN: usize = 256;

/// The rule a client id must meet, as field-level errors state it.
pub const CLIENT_ID_RULE: &str = "must be 1 to 256 characters with no control characters";

/// Whether a client id is 1 to [`MAX_CLIENT_ID_LEN`] bytes with no control characters (it goes
/// into table keys, encryption contexts and logs).
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN && !id.chars().any(char::is_control)
}

/// The fields a backup request may carry.
pub const FIELDS: [&str; 6] = [
    "clientId",
    "idempotencyKey",
    "clientApiKey",
    "generateResponse",
    "sealedGenerateResponse",
    "backupMode",
];

/// How requests are read: the deployment's settings that apply to every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPolicy {
    /// Mode for requests that do not name one.
    pub default_mode: BackupMode,
    /// Refuse `generateResponse` in the clear: only `sealedGenerateResponse` is accepted.
    pub require_sealed: bool,
}

impl RequestPolicy {
    /// Plain or sealed input, with `default_mode`.
    pub fn new(default_mode: BackupMode) -> Self {
        Self {
            default_mode,
            require_sealed: false,
        }
    }
}

/// A validated `/v1/generate` response: the JSON string Portal takes, and its pair ids.
#[derive(Debug)]
pub struct GenerateResponse {
    /// The generate response as the JSON string `/v1/backup` takes.
    pub json: SecretString,
    /// The signing share pair ids in it (SECP256K1, ED25519); not secret.
    pub signing_share_pair_ids: [String; 2],
    /// The `clientId` each signing share names (SECP256K1, ED25519), if it names one.
    pub share_client_ids: [Option<String>; 2],
}

impl GenerateResponse {
    /// Whether both signing shares name `client_id` (a share naming none does not).
    pub fn names_only(&self, client_id: &str) -> bool {
        self.share_client_ids
            .iter()
            .all(|named| named.as_deref() == Some(client_id))
    }
}

/// The signing shares as the request carried them.
#[derive(Debug)]
pub enum GenerateInput {
    /// In the clear (`generateResponse`), validated.
    Plain(GenerateResponse),
    /// Envelope-encrypted (`sealedGenerateResponse`): opened and validated by the workflow.
    Sealed(String),
}

/// A validated request to back up one client's wallet.
#[derive(Debug)]
pub struct BackupRequest {
    /// Portal client id; binds the ciphertexts and keys the store.
    pub client_id: String,
    /// The client's API key or session token, for every Portal call; `None` when it travels
    /// inside `sealedGenerateResponse` (the workflow takes it from there once opened).
    pub api_key: Option<ClientApiKey>,
    /// The signing shares.
    pub generate: GenerateInput,
    /// Overrides the backup's identity (default: client id + signing share pair ids).
    pub idempotency_key: Option<String>,
    /// Where the ciphertexts go.
    pub mode: BackupMode,
}

/// Why a request was refused: the field at fault and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct InputError {
    /// JSON path of the field at fault (`body` for the whole document).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl BackupRequest {
    /// Parses and validates a message body under the deployment's policy.
    pub fn parse(body: &[u8], policy: RequestPolicy) -> Result<Self, InputError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(bad(
                "body",
                format!("is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
            ));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("body", "is not UTF-8"))?;
        // serde_json's messages name a position, never the input, so they are safe to pass on.
        let mut doc: Value = serde_json::from_str(text)
            .map_err(|e| bad("body", format!("is not valid JSON ({e})")))?;
        let result = match doc.as_object_mut() {
            Some(map) => Self::from_map(map, policy),
            None => Err(bad("body", "must be a JSON object")),
        };
        wipe_json(&mut doc);
        result
    }

    fn from_map(map: &mut Map<String, Value>, policy: RequestPolicy) -> Result<Self, InputError> {
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            let name: String = unknown.chars().take(64).collect();
            return Err(bad(name, "is not a known field"));
        }
        let client_id = take_string(map, "clientId")?;
        if client_id.len() > MAX_CLIENT_ID_LEN || client_id.chars().any(char::is_control) {
            return Err(bad(
                "clientId",
                "must be at most 256 characters with no control characters",
            ));
        }
        let mode = match map.get("backupMode") {
            None | Some(Value::Null) => policy.default_mode,
            Some(Value::String(s)) => s.parse().map_err(|e: String| bad("backupMode", e))?,
            Some(_) => return Err(bad("backupMode", "must be a string")),
        };
        let has_plain = map.contains_key("generateResponse");
        let generate = match (has_plain, map.get_mut("sealedGenerateResponse")) {
            (true, Some(_)) => {
                return Err(bad(
                    "sealedGenerateResponse",
                    "cannot be sent together with generateResponse",
                ));
            }
            (_, Some(Value::String(s))) if crate::domain::ciphertext::looks_sealed(s) => {
                GenerateInput::Sealed(std::mem::take(s))
            }
            (_, Some(_)) => {
                return Err(bad(
                    "sealedGenerateResponse",
                    "must be a ciphertext string: an AWS Encryption SDK message in standard base64 (see the README)",
                ));
            }
            (_, None) if policy.require_sealed => {
                return Err(bad(
                    "generateResponse",
                    "is refused in the clear by this deployment (REQUIRE_SEALED_INPUT): send sealedGenerateResponse",
                ));
            }
            (_, None) => GenerateInput::Plain(generate_response(
                map.get_mut("generateResponse"),
                "generateResponse",
            )?),
        };
        // In the clear beside signing shares in the clear; with sealed ones it may be sealed with
        // them, and a deployment that requires sealed input refuses it in the clear.
        let api_key = match (&generate, map.contains_key("clientApiKey")) {
            (GenerateInput::Plain(_), _) => {
                Some(ClientApiKey::new(take_string(map, "clientApiKey")?))
            }
            (GenerateInput::Sealed(_), true) if policy.require_sealed => {
                return Err(bad(
                    "clientApiKey",
                    "is refused in the clear by this deployment (REQUIRE_SEALED_INPUT): seal it with the generate response",
                ));
            }
            (GenerateInput::Sealed(_), true) => {
                Some(ClientApiKey::new(take_string(map, "clientApiKey")?))
            }
            (GenerateInput::Sealed(_), false) => None,
        };
        let idempotency_key = match map.get_mut("idempotencyKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => {
                check_id(k).map_err(|p| bad("idempotencyKey", p))?;
                Some(std::mem::take(k))
            }
            Some(_) => return Err(bad("idempotencyKey", "must be a string")),
        };
        Ok(BackupRequest {
            client_id,
            api_key,
            generate,
            idempotency_key,
            mode,
        })
    }
}

/// Moves a required non-empty string out of the map (no copy of a secret is left behind).
fn take_string(map: &mut Map<String, Value>, field: &str) -> Result<String, InputError> {
    match map.get_mut(field) {
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(Value::String(s)) if s.is_empty() => Err(bad(field, "must not be empty")),
        Some(Value::String(s)) => Ok(std::mem::take(s)),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// Validates the generate response (an object, or that object as a JSON string) and returns it
/// as the JSON string Portal takes, with its signing share pair ids.
fn generate_response(
    value: Option<&mut Value>,
    field: &str,
) -> Result<GenerateResponse, InputError> {
    match value {
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(Value::String(s)) => {
            GenerateResponse::parse(SecretString::new(std::mem::take(s)), field)
        }
        Some(obj @ Value::Object(_)) => {
            let (signing_share_pair_ids, share_client_ids) = signing_ids(obj, field)?;
            let text = serde_json::to_string(obj)
                .map_err(|e| bad(field, format!("cannot be encoded ({e})")))?;
            Ok(GenerateResponse {
                json: SecretString::new(text),
                signing_share_pair_ids,
                share_client_ids,
            })
        }
        Some(_) => Err(bad(field, "must be an object or a JSON string")),
    }
}

/// What a `sealedGenerateResponse` opens to: the generate response itself, or
/// `{"clientApiKey", "generateResponse"}` so that the API key is sealed with the shares.
#[derive(Debug)]
pub struct SealedPayload {
    /// The signing shares.
    pub generate: GenerateResponse,
    /// The API key, when it was sealed with them.
    pub api_key: Option<ClientApiKey>,
}

impl SealedPayload {
    /// The field errors name.
    const FIELD: &'static str = "sealedGenerateResponse";

    /// Validates an opened sealed payload; errors name the field inside it, never a value.
    pub fn parse(plaintext: SecretString) -> Result<Self, InputError> {
        let mut doc: Value = serde_json::from_str(plaintext.expose())
            .map_err(|e| bad(Self::FIELD, format!("is not valid JSON ({e})")))?;
        let result =
            match doc.as_object_mut() {
                Some(map) if map.contains_key("generateResponse") => Self::wrapped(map),
                // The generate response alone: its text is already what Portal takes.
                Some(_) => signing_ids(&doc, Self::FIELD).map(
                    |(signing_share_pair_ids, share_client_ids)| Self {
                        generate: GenerateResponse {
                            json: plaintext,
                            signing_share_pair_ids,
                            share_client_ids,
                        },
                        api_key: None,
                    },
                ),
                None => Err(bad(Self::FIELD, "must open to a JSON object")),
            };
        wipe_json(&mut doc);
        result
    }

    fn wrapped(map: &mut Map<String, Value>) -> Result<Self, InputError> {
        const GENERATE: &str = "sealedGenerateResponse.generateResponse";
        if let Some(unknown) = map
            .keys()
            .find(|k| *k != "clientApiKey" && *k != "generateResponse")
        {
            let name: String = unknown.chars().take(64).collect();
            return Err(bad(
                format!("{}.{name}", Self::FIELD),
                "is not a field of a sealed payload (clientApiKey, generateResponse)",
            ));
        }
        let api_key = match map.get_mut("clientApiKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(ClientApiKey::new(std::mem::take(s))),
            Some(_) => {
                return Err(bad(
                    "sealedGenerateResponse.clientApiKey",
                    "must be a non-empty string",
                ));
            }
        };
        Ok(Self {
            generate: generate_response(map.get_mut("generateResponse"), GENERATE)?,
            api_key,
        })
    }
}

impl GenerateResponse {
    /// Validates a generate response given as JSON text; errors name `field`.
    pub fn parse(json: SecretString, field: &str) -> Result<Self, InputError> {
        let mut inner: Value = serde_json::from_str(json.expose())
            .map_err(|e| bad(field, format!("is not valid JSON ({e})")))?;
        let read = signing_ids(&inner, field);
        wipe_json(&mut inner);
        let (signing_share_pair_ids, share_client_ids) = read?;
        Ok(GenerateResponse {
            json,
            signing_share_pair_ids,
            share_client_ids,
        })
    }
}

/// The signing share pair ids of a generate response, and the client each share names.
type Signing = ([String; 2], [Option<String>; 2]);

fn signing_ids(doc: &Value, field: &str) -> Result<Signing, InputError> {
    let map = doc
        .as_object()
        .ok_or_else(|| bad(field, "must be a JSON object"))?;
    if let Some(other) = map
        .keys()
        .find(|k| !crate::domain::model::is_curve_key(k, false))
    {
        let name: String = other.chars().take(32).collect();
        return Err(bad(
            field,
            format!("has an unknown curve `{name}` (expected SECP256K1 and ED25519)"),
        ));
    }
    let entries = curve_entries(map, false).map_err(|e| bad(field, e))?;
    let mut ids: [String; 2] = Default::default();
    let mut clients: [Option<String>; 2] = Default::default();
    for (((entry, id_out), client_out), curve) in entries
        .iter()
        .zip(ids.iter_mut())
        .zip(clients.iter_mut())
        .zip(Curve::ALL)
    {
        let at = format!("{field}.{curve}");
        let entry = entry
            .as_object()
            .ok_or_else(|| bad(&at, "must be an object with `share` and `id`"))?;
        match entry.get("share") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SHARE_BYTES => {
                *client_out = crate::domain::share::client_id_in(s);
            }
            Some(Value::String(_)) => {
                return Err(bad(
                    format!("{at}.share"),
                    format!("must be 1 to {MAX_SHARE_BYTES} bytes"),
                ));
            }
            Some(_) => return Err(bad(format!("{at}.share"), "must be a string")),
            None => return Err(bad(format!("{at}.share"), "is required")),
        }
        let id = match entry.get("id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(bad(format!("{at}.id"), "must be a string")),
            None => return Err(bad(format!("{at}.id"), "is required")),
        };
        check_id(id).map_err(|p| bad(format!("{at}.id"), p))?;
        *id_out = id.clone();
    }
    if ids[0] == ids[1] {
        return Err(bad(field, "has the same share pair id for both curves"));
    }
    Ok((ids, clients))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generate() -> Value {
        json!({"SECP256K1": {"share": "c2VjcmV0MQ==", "id": "cmsecp"},
               "ED25519": {"share": "c2VjcmV0Mg==", "id": "cmed"}})
    }

    fn plain(r: &BackupRequest) -> &GenerateResponse {
        match &r.generate {
            GenerateInput::Plain(g) => g,
            GenerateInput::Sealed(_) => panic!("expected a plain generate response"),
        }
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn err(v: Value) -> InputError {
        BackupRequest::parse(&body(v), RequestPolicy::new(BackupMode::SelfManaged)).unwrap_err()
    }

    #[test]
    fn accepts_object_and_string_generate_responses() {
        let obj =
            body(json!({"clientId": "c1", "clientApiKey": "k", "generateResponse": generate()}));
        let r = BackupRequest::parse(&obj, RequestPolicy::new(BackupMode::PortalManaged)).unwrap();
        assert_eq!(r.client_id, "c1");
        assert_eq!(r.mode, BackupMode::PortalManaged);
        assert_eq!(
            plain(&r).signing_share_pair_ids,
            ["cmsecp".to_owned(), "cmed".to_owned()]
        );
        let back: Value = serde_json::from_str(plain(&r).json.expose()).unwrap();
        assert_eq!(back, generate());

        let as_string = generate().to_string();
        let s = body(json!({"clientId": "c1", "clientApiKey": "k",
                            "generateResponse": as_string, "backupMode": "SELF_MANAGED"}));
        let r = BackupRequest::parse(&s, RequestPolicy::new(BackupMode::PortalManaged)).unwrap();
        assert_eq!(r.mode, BackupMode::SelfManaged);
        assert_eq!(
            plain(&r).json.expose(),
            as_string,
            "a string is forwarded as sent"
        );
    }

    #[test]
    fn lowercase_curve_keys_are_accepted() {
        let g =
            json!({"secp256k1": {"share": "a", "id": "x1"}, "ed25519": {"share": "b", "id": "x2"}});
        let r = BackupRequest::parse(
            &body(json!({"clientId": "c", "clientApiKey": "k", "generateResponse": g})),
            RequestPolicy::new(BackupMode::SelfManaged),
        )
        .unwrap();
        assert_eq!(
            plain(&r).signing_share_pair_ids,
            ["x1".to_owned(), "x2".to_owned()]
        );
    }

    #[test]
    fn each_fault_names_its_field_and_never_the_secret() {
        let cases = [
            (
                json!({"clientApiKey": "k", "generateResponse": generate()}),
                "clientId",
            ),
            (
                json!({"clientId": "c", "generateResponse": generate()}),
                "clientApiKey",
            ),
            (
                json!({"clientId": "c", "clientApiKey": 5, "generateResponse": generate()}),
                "clientApiKey",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k"}),
                "generateResponse",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": "{not json"}),
                "generateResponse",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": 3}),
                "generateResponse",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": {"SECP256K1": {"share": "s", "id": "a"}}}),
                "generateResponse",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": {"SECP256K1": {"share": "s", "id": "a/b"}, "ED25519": {"share": "s", "id": "b"}}}),
                "generateResponse.SECP256K1.id",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": {"SECP256K1": {"share": 1, "id": "a"}, "ED25519": {"share": "s", "id": "b"}}}),
                "generateResponse.SECP256K1.share",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": {"SECP256K1": {"share": "s", "id": "a"}, "ED25519": {"share": "s", "id": "a"}}}),
                "generateResponse",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": generate(), "backupMode": "CLOUD"}),
                "backupMode",
            ),
            (
                json!({"clientId": "c", "clientApiKey": "k", "generateResponse": generate(), "extra": 1}),
                "extra",
            ),
            (json!(["not", "an", "object"]), "body"),
        ];
        for (input, field) in cases {
            let e = err(input.clone());
            assert_eq!(e.field, field, "{input}");
            let shown = e.to_string();
            for secret in ["c2VjcmV0MQ==", "\"k\""] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn refuses_non_utf8_oversized_and_deep_bodies() {
        assert_eq!(
            BackupRequest::parse(&[0xff, 0xfe], RequestPolicy::new(BackupMode::SelfManaged))
                .unwrap_err()
                .field,
            "body"
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(
            BackupRequest::parse(&big, RequestPolicy::new(BackupMode::SelfManaged))
                .unwrap_err()
                .problem
                .contains("limit")
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            BackupRequest::parse(deep.as_bytes(), RequestPolicy::new(BackupMode::SelfManaged))
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn sealed_input_is_taken_as_is_and_can_be_required() {
        let sealed = json!({"clientId": "c", "sealedGenerateResponse": "AgR4+/8="});
        let strict = RequestPolicy {
            default_mode: BackupMode::SelfManaged,
            require_sealed: true,
        };
        let r = BackupRequest::parse(&body(sealed), strict).unwrap();
        assert!(matches!(r.generate, GenerateInput::Sealed(ref s) if s == "AgR4+/8="));
        let old = json!({"clientId": "c", "sealedGenerateResponse": "pbe1.a.b.c.d"});
        assert!(
            matches!(BackupRequest::parse(&body(old), strict).unwrap().generate,
                         GenerateInput::Sealed(ref s) if s == "pbe1.a.b.c.d")
        );
        for bad in ["", "{\"SECP256K1\":1}", "not base64!"] {
            let e =
                err(json!({"clientId": "c", "clientApiKey": "k", "sealedGenerateResponse": bad}));
            assert_eq!(e.field, "sealedGenerateResponse", "{bad}");
        }
        assert!(
            r.api_key.is_none(),
            "the key travels inside the sealed payload"
        );
        // The API key beside sealed shares: taken where allowed, refused where sealing is required.
        let key_beside =
            json!({"clientId": "c", "clientApiKey": "k", "sealedGenerateResponse": "pbe1.a.b.c.d"});
        assert!(
            BackupRequest::parse(
                &body(key_beside.clone()),
                RequestPolicy::new(BackupMode::SelfManaged)
            )
            .unwrap()
            .api_key
            .is_some()
        );
        let e = BackupRequest::parse(&body(key_beside), strict).unwrap_err();
        assert_eq!(e.field, "clientApiKey");
        assert!(e.problem.contains("REQUIRE_SEALED_INPUT"));
        let clear =
            body(json!({"clientId": "c", "clientApiKey": "k", "generateResponse": generate()}));
        let e = BackupRequest::parse(&clear, strict).unwrap_err();
        assert_eq!(e.field, "generateResponse");
        assert!(e.problem.contains("REQUIRE_SEALED_INPUT"));
        let both = json!({"clientId": "c", "clientApiKey": "k", "generateResponse": generate(),
                          "sealedGenerateResponse": "pbe1.a.b.c.d"});
        assert_eq!(err(both).field, "sealedGenerateResponse");
        let not_sealed = json!({"clientId": "c", "clientApiKey": "k", "sealedGenerateResponse": {"SECP256K1": 1}});
        assert_eq!(err(not_sealed).field, "sealedGenerateResponse");
    }

    #[test]
    fn a_sealed_payload_is_the_generate_response_or_it_with_the_api_key() {
        let alone = SealedPayload::parse(SecretString::new(generate().to_string())).unwrap();
        assert!(alone.api_key.is_none());
        assert_eq!(alone.generate.signing_share_pair_ids, ["cmsecp", "cmed"]);
        for g in [generate(), json!(generate().to_string())] {
            let wrapped = json!({"clientApiKey": "sk_live_9", "generateResponse": g});
            let p = SealedPayload::parse(SecretString::new(wrapped.to_string())).unwrap();
            assert_eq!(
                p.api_key.map(|k| k.bearer_header().to_string()),
                Some("Bearer sk_live_9".to_owned())
            );
            assert_eq!(p.generate.signing_share_pair_ids, ["cmsecp", "cmed"]);
        }
        for (bad, field) in [
            (
                json!({"clientApiKey": "sk_live_9", "generateResponse": generate(), "x": 1}),
                "sealedGenerateResponse.x",
            ),
            (
                json!({"clientApiKey": 7, "generateResponse": generate()}),
                "sealedGenerateResponse.clientApiKey",
            ),
            (
                json!({"clientApiKey": "sk_live_9", "generateResponse": {"SECP256K1": 1}}),
                "sealedGenerateResponse.generateResponse",
            ),
            (json!(["sk_live_9"]), "sealedGenerateResponse"),
        ] {
            let e = SealedPayload::parse(SecretString::new(bad.to_string())).unwrap_err();
            assert!(e.field.starts_with(field), "{e} vs {field}");
            assert!(!e.to_string().contains("sk_live_9"), "{e}");
        }
    }

    #[test]
    fn unknown_curves_are_refused() {
        let mut g = generate();
        g["P256"] = json!({"share": "x", "id": "p"});
        let e = err(json!({"clientId": "c", "clientApiKey": "k", "generateResponse": g}));
        assert_eq!(e.field, "generateResponse");
        assert!(e.problem.contains("unknown curve `P256`"), "{e}");
    }
}
