//! Values that carry key material or credentials.
//!
//! Each type is zeroized on drop, prints `[redacted]` under `Debug`, and implements neither
//! `Display` nor `Serialize`. The only ways out are methods named for their use, so every place a
//! secret leaves can be found with grep.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A Portal client API key or client session token.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ClientApiKey(String);

impl ClientApiKey {
    /// Wraps a key taken from input; the caller's `String` is moved, not copied.
    pub fn new(key: String) -> Self {
        Self(key)
    }

    /// The value of an `Authorization` header carrying this key.
    pub fn bearer_header(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("Bearer {}", self.0))
    }
}

impl fmt::Debug for ClientApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientApiKey([redacted])")
    }
}

/// Secret text: a generate response, a backup share, the JSON that is sealed.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps secret text; the caller's `String` is moved, not copied.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text, for the one call that must send or parse it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The bytes, for sealing.
    pub fn as_bytes_for_seal(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

/// Secret bytes: a plaintext data key or an opened ciphertext.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes; the caller's `Vec` is moved, not copied.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes, for the one call that must use them (a cipher key, a comparison).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The buffer, for in-place decryption.
    pub(crate) fn expose_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Number of bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// Overwrites every string in a parsed JSON value before it is dropped.
///
/// `serde_json` offers no zeroizing value type; input that carried shares is wiped by hand.
pub fn wipe_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe_json),
        serde_json::Value::Object(map) => {
            for (_, v) in map.iter_mut() {
                wipe_json(v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let key = ClientApiKey::new("sk_live_abc".into());
        let text = SecretString::new("share-xyz".into());
        let bytes = SecretBytes::new(vec![7u8; 32]);
        let all = format!("{key:?} {text:?} {bytes:?}");
        assert!(!all.contains("sk_live_abc"));
        assert!(!all.contains("share-xyz"));
        assert!(all.contains("[redacted"));
        assert_eq!(key.bearer_header().as_str(), "Bearer sk_live_abc");
    }

    #[test]
    fn wipe_json_clears_nested_strings() {
        let mut v = serde_json::json!({"a": {"share": "secret"}, "b": ["x"]});
        wipe_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": {"share": ""}, "b": [""]}));
    }
}
