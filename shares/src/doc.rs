//! The layers around a share's JSON: the JSON itself, the standard base64 of it (as Portal sends
//! it), or a JSON string holding either. The parsed document is wiped when dropped.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// A parsed JSON document whose strings are overwritten when it is dropped (a share's scalar
/// is one of them). Best effort: the parser's own scratch buffers are not reachable.
pub(crate) struct Doc(Value);

impl Doc {
    /// The document.
    pub(crate) fn value(&self) -> &Value {
        &self.0
    }
}

impl Drop for Doc {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn starts_json(text: &[u8]) -> bool {
    matches!(text.first(), Some(b'{' | b'[' | b'"'))
}

/// Parses `text` as JSON, or as base64 (standard, or URL-safe; padding optional; line breaks
/// ignored) of JSON. `None` when it is neither.
pub(crate) fn decode(text: &[u8]) -> Option<Doc> {
    let text = text.trim_ascii();
    if starts_json(text) {
        return serde_json::from_slice(text).ok().map(Doc);
    }
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    let decoded = STANDARD_PAD_INDIFFERENT
        .decode(&*compact)
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(&*compact))
        .ok()
        .map(Zeroizing::new)?;
    let inner = decoded.trim_ascii();
    if starts_json(inner) {
        serde_json::from_slice(inner).ok().map(Doc)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn reads_json_base64_and_json_strings() {
        let json = br#" {"a":"1"} "#;
        assert_eq!(decode(json).unwrap().value()["a"], "1");
        let b64 = STANDARD.encode(br#"{"a":"2"}"#);
        assert_eq!(decode(b64.as_bytes()).unwrap().value()["a"], "2");
        let wrapped = format!("{}\n{}\n", &b64[..4], &b64[4..]);
        assert_eq!(decode(wrapped.as_bytes()).unwrap().value()["a"], "2");
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(decode(unpadded.as_bytes()).unwrap().value()["a"], "2");
        let string = br#""{\"a\":\"3\"}""#;
        assert_eq!(decode(string).unwrap().value(), r#"{"a":"3"}"#);
    }

    #[test]
    fn refuses_what_is_neither() {
        assert!(decode(b"").is_none());
        assert!(decode(b"{not json").is_none());
        assert!(decode(b"%%%").is_none());
        assert!(decode(STANDARD.encode(b"plain words").as_bytes()).is_none());
    }

    #[test]
    fn wipe_clears_every_string() {
        let mut v: Value = serde_json::from_str(r#"{"a":["xy",{"b":"zz"}],"c":1}"#).unwrap();
        wipe(&mut v);
        assert_eq!(v, serde_json::json!({"a":["",{"b":""}],"c":1}));
    }
}
