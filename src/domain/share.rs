//! A Portal share document: base64 of JSON (or, for a custodian share, the JSON itself), and the
//! ids it names: its backup share pair and the client it belongs to.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{Engine, alphabet};
use serde_json::Value;

use crate::domain::secret::{SecretBytes, wipe_json};

/// Portal's shares are standard base64; padding is accepted either way.
pub(crate) const SHARE_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `backupSharePairId` inside a share (base64 of JSON); `None` if it is not base64 JSON.
pub fn embedded_pair_id(share: &str) -> Option<Option<String>> {
    let decoded = SecretBytes::new(SHARE_B64.decode(share.trim()).ok()?);
    let mut doc: Value = serde_json::from_slice(decoded.expose()).ok()?;
    let id = doc
        .get("backupSharePairId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is_object = doc.is_object();
    wipe_json(&mut doc);
    is_object.then_some(id)
}

/// The `clientId` a share names: the share is JSON (a custodian share as Portal's webhook sends
/// it) or base64 of JSON (signing and client backup shares). `None` if it names none. Only that
/// one field is kept; every other string of the document is wiped.
pub fn client_id_in(share: &str) -> Option<String> {
    let read = |bytes: &[u8]| {
        let mut doc: Value = serde_json::from_slice(bytes).ok()?;
        let id = doc
            .get("clientId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        wipe_json(&mut doc);
        id
    };
    let trimmed = share.trim();
    if trimmed.starts_with('{') {
        return read(trimmed.as_bytes());
    }
    let decoded = SecretBytes::new(SHARE_B64.decode(trimmed).ok()?);
    read(decoded.expose())
}

/// How an opened `{"share","id"}` record compares with the pair and client it is stored under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCheck {
    /// The record is the share of that pair, and the share names that client.
    Matches,
    /// The record is not the share of that pair.
    OtherPair,
    /// The share names another client, or none: the backup is not this client's.
    OtherClient,
}

/// Whether opened `{"share","id"}` JSON names `id`, both as its `id` and inside its share, and
/// whether its share names `client_id`.
pub fn check_record(plaintext: &[u8], id: &str, client_id: &str) -> RecordCheck {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(plaintext) else {
        return RecordCheck::OtherPair;
    };
    let share = doc.get("share").and_then(|v| v.as_str());
    let pair_ok = doc.get("id").and_then(|v| v.as_str()) == Some(id)
        && share
            .and_then(embedded_pair_id)
            .is_some_and(|embedded| embedded.is_none() || embedded.as_deref() == Some(id));
    let client_ok = share.and_then(client_id_in).as_deref() == Some(client_id);
    wipe_json(&mut doc);
    match (pair_ok, client_ok) {
        (false, _) => RecordCheck::OtherPair,
        (true, false) => RecordCheck::OtherClient,
        (true, true) => RecordCheck::Matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(doc: &serde_json::Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(doc.to_string())
    }

    #[test]
    fn the_client_a_share_names() {
        let doc = serde_json::json!({"clientId": "c1", "backupSharePairId": "bp1", "share": "123"});
        assert_eq!(client_id_in(&b64(&doc)).as_deref(), Some("c1"));
        assert_eq!(client_id_in(&doc.to_string()).as_deref(), Some("c1"));
        let unpadded = b64(&doc).trim_end_matches('=').to_owned();
        assert_eq!(client_id_in(&unpadded).as_deref(), Some("c1"));
        for none in [
            b64(&serde_json::json!({"share": "123"})),
            b64(&serde_json::json!({"clientId": ""})),
            b64(&serde_json::json!({"clientId": 7})),
            "opaque".to_owned(),
            "{not json".to_owned(),
        ] {
            assert_eq!(client_id_in(&none), None, "{none}");
        }
    }

    #[test]
    fn a_record_is_its_pairs_and_its_clients() {
        let share = b64(&serde_json::json!({"clientId": "c1", "backupSharePairId": "bp1"}));
        let record = serde_json::json!({"share": share, "id": "bp1"}).to_string();
        assert_eq!(
            check_record(record.as_bytes(), "bp1", "c1"),
            RecordCheck::Matches
        );
        assert_eq!(
            check_record(record.as_bytes(), "bp1", "c2"),
            RecordCheck::OtherClient
        );
        assert_eq!(
            check_record(record.as_bytes(), "bp2", "c1"),
            RecordCheck::OtherPair
        );
        assert_eq!(
            check_record(b"not json", "bp1", "c1"),
            RecordCheck::OtherPair
        );
        let anonymous = b64(&serde_json::json!({"backupSharePairId": "bp1"}));
        let record = serde_json::json!({"share": anonymous, "id": "bp1"}).to_string();
        assert_eq!(
            check_record(record.as_bytes(), "bp1", "c1"),
            RecordCheck::OtherClient
        );
    }
}
