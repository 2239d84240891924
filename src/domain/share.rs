//! A Portal share document: base64 of JSON, and the backup share pair id it names.

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

/// Whether opened `{"share","id"}` JSON names `id`, both as its `id` and inside its share.
pub fn names_pair(plaintext: &[u8], id: &str) -> bool {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(plaintext) else {
        return false;
    };
    let ok = doc.get("id").and_then(|v| v.as_str()) == Some(id)
        && doc
            .get("share")
            .and_then(|v| v.as_str())
            .and_then(embedded_pair_id)
            .is_some_and(|embedded| embedded.is_none() || embedded.as_deref() == Some(id));
    wipe_json(&mut doc);
    ok
}
