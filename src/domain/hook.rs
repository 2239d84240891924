//! The bodies of Portal's custodian webhooks, parsed strictly: every error names the field and
//! the problem, never a value, and every string of the body is wiped once read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::domain::request::MAX_CLIENT_ID_LEN;
use crate::domain::secret::{SecretString, sha256_hex, wipe_json};

/// Largest webhook body read (a custodian share is a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Longest share accepted.
pub const MAX_SHARE_LEN: usize = 128 * 1024;

/// Longest backup share pair id accepted.
pub const MAX_PAIR_ID_LEN: usize = 128;

/// Longest `backupMethod` stored (free text from Portal).
pub const MAX_METHOD_LEN: usize = 64;

/// A webhook body that is not acceptable: the field and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct HookInputError {
    /// The field at fault (`body` for the whole body).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn bad(field: &'static str, problem: &'static str) -> HookInputError {
    HookInputError { field, problem }
}

/// A validated `POST /backup` body.
#[derive(Debug)]
pub struct BackupHook {
    /// Portal client id.
    pub client_id: String,
    /// Portal's backup method, free text (e.g. `CUSTOM`, `GDRIVE`).
    pub backup_method: String,
    /// The backup share pair the share belongs to (body, else the share's own, else its digest).
    pub backup_share_pair_id: String,
    /// The custodian backup share, exactly as Portal sent it.
    pub share: SecretString,
}

/// Parses a JSON-object body; every string of it is wiped once `f` has taken what it needs.
fn with_object<T>(
    body: &[u8],
    f: impl FnOnce(&mut Map<String, Value>) -> Result<T, HookInputError>,
) -> Result<T, HookInputError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(bad("body", "is larger than 256 KiB"));
    }
    // serde_json's error is not passed on: it may quote a piece of the input.
    let mut doc: Value = serde_json::from_slice(body).map_err(|_| bad("body", "is not JSON"))?;
    let result = match doc.as_object_mut() {
        Some(map) => f(map),
        None => Err(bad("body", "must be a JSON object")),
    };
    wipe_json(&mut doc);
    result
}

/// A required non-empty string field of at most `max` bytes, with no control characters.
fn text(
    map: &mut Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<String, HookInputError> {
    match map.get_mut(field) {
        None | Some(Value::Null) => Err(bad(field, "is required")),
        Some(Value::String(s)) if s.is_empty() => Err(bad(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => Err(bad(field, "is too long")),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(bad(field, "must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(std::mem::take(s)),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// Whether a pair id is safe as a key part and a context value: `[A-Za-z0-9_.:-]`, bounded.
fn valid_pair_id(id: &str) -> bool {
    (1..=MAX_PAIR_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The `backupSharePairId` inside a share: the share is JSON, or base64 of JSON (as Portal's
/// client shares are). Only that one field is read.
fn pair_id_in_share(share: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "backupSharePairId")]
        id: Option<String>,
    }
    let probe = |bytes: &[u8]| {
        serde_json::from_slice::<Probe>(bytes)
            .ok()
            .and_then(|p| p.id)
    };
    probe(share.as_bytes()).or_else(|| {
        let decoded = zeroize::Zeroizing::new(STANDARD.decode(share.trim()).ok()?);
        probe(&decoded)
    })
}

impl BackupHook {
    /// Parses and validates a `POST /backup` body.
    pub fn parse(body: &[u8]) -> Result<Self, HookInputError> {
        with_object(body, |map| {
            let client_id = text(map, "clientId", MAX_CLIENT_ID_LEN)?;
            let backup_method = text(map, "backupMethod", MAX_METHOD_LEN)?;
            let share = match map.get_mut("share") {
                None | Some(Value::Null) => return Err(bad("share", "is required")),
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(bad("share", "must not be empty"));
                }
                Some(Value::String(s)) if s.len() > MAX_SHARE_LEN => {
                    return Err(bad("share", "is longer than 128 KiB"));
                }
                Some(Value::String(s)) => SecretString::new(std::mem::take(s)),
                Some(_) => return Err(bad("share", "must be a string")),
            };
            let backup_share_pair_id = match map.get_mut("backupSharePairId") {
                None | Some(Value::Null) => match pair_id_in_share(share.expose()) {
                    Some(id) if valid_pair_id(&id) => id,
                    Some(_) => {
                        return Err(bad(
                            "share.backupSharePairId",
                            "must be 1 to 128 of [A-Za-z0-9_.:-]",
                        ));
                    }
                    // No id anywhere: the share's digest identifies it, so a resend is an upsert.
                    None => sha256_hex(share.as_bytes_for_seal()),
                },
                Some(Value::String(s)) if valid_pair_id(s) => std::mem::take(s),
                Some(_) => {
                    return Err(bad(
                        "backupSharePairId",
                        "must be 1 to 128 of [A-Za-z0-9_.:-]",
                    ));
                }
            };
            Ok(BackupHook {
                client_id,
                backup_method,
                backup_share_pair_id,
                share,
            })
        })
    }
}

/// What one share adds to fetch's answer as Lambda returns it: the share is a JSON string in the
/// answer's body, and that body is itself a JSON string in API Gateway's proxy answer, so each
/// character counts as it reads once escaped twice (a quote `"` becomes `\\\"`, four bytes).
/// Counted without copying the share.
pub fn answer_bytes(share: &str) -> u64 {
    let chars: u64 = share
        .chars()
        .map(|c| match c {
            '"' | '\\' => 4,
            '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 3,
            c if u32::from(c) < 0x20 => 7,
            c => c.len_utf8() as u64,
        })
        .sum();
    // The string's own quotes, escaped twice, and the comma between two shares.
    chars + 5
}

/// Parses a `POST /backup/fetch` body: the client id.
pub fn parse_fetch(body: &[u8]) -> Result<String, HookInputError> {
    with_object(body, |map| text(map, "clientId", MAX_CLIENT_ID_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_body_is_parsed_strictly_and_errors_name_no_value() {
        let ok = BackupHook::parse(
            br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t","backupSharePairId":"bp1"}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.client_id.as_str(), ok.backup_share_pair_id.as_str()),
            ("c1", "bp1")
        );
        assert_eq!(ok.share.expose(), "s3cr3t");
        // The pair id from the share's JSON, or from base64 JSON, or the share's digest.
        let inner = r#"{\"backupSharePairId\":\"bp2\",\"share\":\"x\"}"#;
        let body = format!(r#"{{"clientId":"c1","backupMethod":"GDRIVE","share":"{inner}"}}"#);
        assert_eq!(
            BackupHook::parse(body.as_bytes())
                .unwrap()
                .backup_share_pair_id,
            "bp2"
        );
        let b64 = STANDARD.encode(br#"{"backupSharePairId":"bp3"}"#);
        let body = format!(r#"{{"clientId":"c1","backupMethod":"CUSTOM","share":"{b64}"}}"#);
        assert_eq!(
            BackupHook::parse(body.as_bytes())
                .unwrap()
                .backup_share_pair_id,
            "bp3"
        );
        let h = BackupHook::parse(br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"opaque"}"#)
            .unwrap();
        assert_eq!(h.backup_share_pair_id, sha256_hex(b"opaque"));
        for (body, field) in [
            (&b"{bad s3cr3t"[..], "body"),
            (b"[\"s3cr3t\"]", "body"),
            (br#"{"backupMethod":"CUSTOM","share":"s3cr3t"}"#, "clientId"),
            (br#"{"clientId":"c1","share":"s3cr3t"}"#, "backupMethod"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM"}"#, "share"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM","share":7}"#, "share"),
            (br#"{"clientId":"c1","backupMethod":"CUSTOM","share":"s3cr3t","backupSharePairId":"a#b"}"#, "backupSharePairId"),
            (br#"{"clientId":"c\u0001","backupMethod":"CUSTOM","share":"s3cr3t"}"#, "clientId"),
        ] {
            let e = BackupHook::parse(body).unwrap_err();
            assert_eq!(e.field, field, "{}", String::from_utf8_lossy(body));
            assert!(!e.to_string().contains("s3cr3t"));
        }
        let long = format!(
            r#"{{"clientId":"c1","backupMethod":"{}","share":"s"}}"#,
            "M".repeat(65)
        );
        assert_eq!(
            BackupHook::parse(long.as_bytes()).unwrap_err().field,
            "backupMethod"
        );
        // Counted as Lambda's answer carries them: escaped twice, with quotes and a comma (the
        // doubly-encoded string has two quotes more: the body's own, one string for all shares).
        assert_eq!(answer_bytes("eyJj"), 4 + 5);
        assert_eq!(answer_bytes(r#"{"a":1}"#), 5 + 2 * 4 + 5);
        let doubled =
            serde_json::to_string(&serde_json::to_string(r#"{"a":"\n\u0001é"}"#).unwrap()).unwrap();
        assert_eq!(
            answer_bytes(r#"{"a":"\n\u0001é"}"#),
            doubled.len() as u64 - 1
        );
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(BackupHook::parse(&huge).unwrap_err().field, "body");
        assert_eq!(parse_fetch(br#"{"clientId":"c1"}"#).unwrap(), "c1");
        assert_eq!(
            parse_fetch(br#"{"clientId":""}"#).unwrap_err().field,
            "clientId"
        );
    }
}
