//! The backup request: one SQS message body (or API body, or direct payload), validated before
//! any network call.

use serde_json::{Map, Value};

use crate::model::{BackupMode, check_id, curve_entries};
use crate::secret::{ClientApiKey, SecretString, wipe_json};

/// Largest accepted body: SQS's own message limit (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest accepted share (base64) in a generate response.
pub const MAX_SHARE_BYTES: usize = 64 * 1024;
/// Longest accepted client id.
pub const MAX_CLIENT_ID_LEN: usize = 256;

/// The fields a backup request may carry.
pub const FIELDS: [&str; 4] = ["clientId", "clientApiKey", "generateResponse", "backupMode"];

/// A validated request to back up one client's wallet.
#[derive(Debug)]
pub struct BackupRequest {
    /// Portal client id; binds the ciphertexts and keys the store.
    pub client_id: String,
    /// The client's API key or session token, for every Portal call.
    pub api_key: ClientApiKey,
    /// The generate response as the JSON string `/v1/backup` takes.
    pub generate_response: SecretString,
    /// The signing share pair ids in the generate response (SECP256K1, ED25519); not secret.
    pub signing_share_pair_ids: [String; 2],
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
    /// Parses and validates a message body; `default_mode` applies when `backupMode` is absent.
    pub fn parse(body: &[u8], default_mode: BackupMode) -> Result<Self, InputError> {
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
            Some(map) => Self::from_map(map, default_mode),
            None => Err(bad("body", "must be a JSON object")),
        };
        wipe_json(&mut doc);
        result
    }

    fn from_map(
        map: &mut Map<String, Value>,
        default_mode: BackupMode,
    ) -> Result<Self, InputError> {
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
        let api_key = ClientApiKey::new(take_string(map, "clientApiKey")?);
        let mode = match map.get("backupMode") {
            None | Some(Value::Null) => default_mode,
            Some(Value::String(s)) => s.parse().map_err(|e: String| bad("backupMode", e))?,
            Some(_) => return Err(bad("backupMode", "must be a string")),
        };
        let (generate_response, signing_share_pair_ids) =
            generate_response(map.get_mut("generateResponse"))?;
        Ok(BackupRequest {
            client_id,
            api_key,
            generate_response,
            signing_share_pair_ids,
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
fn generate_response(value: Option<&mut Value>) -> Result<(SecretString, [String; 2]), InputError> {
    const FIELD: &str = "generateResponse";
    match value {
        None | Some(Value::Null) => Err(bad(FIELD, "is required")),
        Some(Value::String(s)) => {
            let text = SecretString::new(std::mem::take(s));
            let mut inner: Value = serde_json::from_str(text.expose())
                .map_err(|e| bad(FIELD, format!("is a string but not valid JSON ({e})")))?;
            let ids = signing_ids(&inner);
            wipe_json(&mut inner);
            Ok((text, ids?))
        }
        Some(obj @ Value::Object(_)) => {
            let ids = signing_ids(obj)?;
            let text = serde_json::to_string(obj)
                .map_err(|e| bad(FIELD, format!("cannot be encoded ({e})")))?;
            Ok((SecretString::new(text), ids))
        }
        Some(_) => Err(bad(FIELD, "must be an object or a JSON string")),
    }
}

fn signing_ids(doc: &Value) -> Result<[String; 2], InputError> {
    const FIELD: &str = "generateResponse";
    let map = doc
        .as_object()
        .ok_or_else(|| bad(FIELD, "must be a JSON object"))?;
    let entries = curve_entries(map, false).map_err(|e| bad(FIELD, e))?;
    let mut ids: [String; 2] = Default::default();
    for ((entry, id_out), curve) in entries
        .iter()
        .zip(ids.iter_mut())
        .zip(crate::model::Curve::ALL)
    {
        let field = format!("{FIELD}.{curve}");
        let entry = entry
            .as_object()
            .ok_or_else(|| bad(&field, "must be an object with `share` and `id`"))?;
        match entry.get("share") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SHARE_BYTES => {}
            Some(Value::String(_)) => {
                return Err(bad(
                    format!("{field}.share"),
                    format!("must be 1 to {MAX_SHARE_BYTES} bytes"),
                ));
            }
            Some(_) => return Err(bad(format!("{field}.share"), "must be a string")),
            None => return Err(bad(format!("{field}.share"), "is required")),
        }
        let id = match entry.get("id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(bad(format!("{field}.id"), "must be a string")),
            None => return Err(bad(format!("{field}.id"), "is required")),
        };
        check_id(id).map_err(|p| bad(format!("{field}.id"), p))?;
        *id_out = id.clone();
    }
    if ids[0] == ids[1] {
        return Err(bad(FIELD, "has the same share pair id for both curves"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generate() -> Value {
        json!({"SECP256K1": {"share": "c2VjcmV0MQ==", "id": "cmsecp"},
               "ED25519": {"share": "c2VjcmV0Mg==", "id": "cmed"}})
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn err(v: Value) -> InputError {
        BackupRequest::parse(&body(v), BackupMode::SelfManaged).unwrap_err()
    }

    #[test]
    fn accepts_object_and_string_generate_responses() {
        let obj =
            body(json!({"clientId": "c1", "clientApiKey": "k", "generateResponse": generate()}));
        let r = BackupRequest::parse(&obj, BackupMode::PortalManaged).unwrap();
        assert_eq!(r.client_id, "c1");
        assert_eq!(r.mode, BackupMode::PortalManaged);
        assert_eq!(
            r.signing_share_pair_ids,
            ["cmsecp".to_owned(), "cmed".to_owned()]
        );
        let back: Value = serde_json::from_str(r.generate_response.expose()).unwrap();
        assert_eq!(back, generate());

        let as_string = generate().to_string();
        let s = body(json!({"clientId": "c1", "clientApiKey": "k",
                            "generateResponse": as_string, "backupMode": "SELF_MANAGED"}));
        let r = BackupRequest::parse(&s, BackupMode::PortalManaged).unwrap();
        assert_eq!(r.mode, BackupMode::SelfManaged);
        assert_eq!(
            r.generate_response.expose(),
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
            BackupMode::SelfManaged,
        )
        .unwrap();
        assert_eq!(r.signing_share_pair_ids, ["x1".to_owned(), "x2".to_owned()]);
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
            BackupRequest::parse(&[0xff, 0xfe], BackupMode::SelfManaged)
                .unwrap_err()
                .field,
            "body"
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(
            BackupRequest::parse(&big, BackupMode::SelfManaged)
                .unwrap_err()
                .problem
                .contains("limit")
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            BackupRequest::parse(deep.as_bytes(), BackupMode::SelfManaged)
                .unwrap_err()
                .field,
            "body"
        );
    }
}
