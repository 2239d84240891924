//! The ids a backup request names, read without validating the rest: what a failed backup's
//! outcome event can still say about it.

use serde_json::Value;

use crate::domain::secret::wipe_json;

/// The client and idempotency key a request names, where they are well formed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedIds {
    /// `clientId`, when it follows the client id rule.
    pub client_id: Option<String>,
    /// `idempotencyKey`, when it follows the id rule.
    pub idempotency_key: Option<String>,
}

/// Reads `clientId` and `idempotencyKey` from a request body; every other string is wiped.
pub fn named_ids(body: &[u8]) -> NamedIds {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return NamedIds::default();
    };
    let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
    let ids = NamedIds {
        client_id: text("clientId").filter(|c| crate::domain::request::valid_client_id(c)),
        idempotency_key: text("idempotencyKey")
            .filter(|k| crate::domain::model::check_id(k).is_ok()),
    };
    wipe_json(&mut doc);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_well_formed_ids() {
        let ids = named_ids(br#"{"clientId":"c1","idempotencyKey":"k-1","clientApiKey":"s"}"#);
        assert_eq!(ids.client_id.as_deref(), Some("c1"));
        assert_eq!(ids.idempotency_key.as_deref(), Some("k-1"));
        let ids = named_ids(br#"{"clientId":"c\u0001","idempotencyKey":"k/1"}"#);
        assert_eq!(ids, NamedIds::default());
        assert_eq!(named_ids(b"{poison"), NamedIds::default());
    }
}
