//! Values that carry key material or credentials.
//!
//! Each type is zeroized on drop, prints `[redacted]` under `Debug`, and implements neither
//! `Display` nor `Serialize`. The only ways out are methods named for their use, so every place a
//! secret leaves can be found with grep.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use http::HeaderMap;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The header Portal sends the webhook secret in.
pub const SECRET_HEADER: &str = "x-webhook-secret";

/// A Portal client API key or client session token.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ClientApiKey(String);

impl ClientApiKey {
    /// Wraps a key taken from input; the caller's `String` is moved, not copied.
    pub fn new(key: String) -> Self {
        Self(key)
    }

    /// The key itself, to seal it (a recovered wallet's sealed payload carries it).
    pub(crate) fn expose(&self) -> &str {
        &self.0
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

/// The configured webhook secret, held only as its SHA-256 digest.
///
/// Comparing digests in constant time means neither the secret's bytes nor its length leak
/// through timing; keeping only the digest means the secret itself is not kept in memory.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct WebhookSecret([u8; 32]);

impl WebhookSecret {
    /// Takes the secret (wiped here) and keeps its digest; `None` if it is empty.
    pub fn new(mut secret: String) -> Option<Self> {
        let trimmed = secret.trim();
        let out = (!trimmed.is_empty()).then(|| Self(sha256(trimmed.as_bytes())));
        secret.zeroize();
        out
    }

    /// Whether `presented` is the secret, in time independent of both values.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest = sha256(presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(&digest, &self.0).is_ok()
    }

    /// Whether the request's `X-Webhook-Secret` header (exactly one) is the secret.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(SECRET_HEADER).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => self.matches(v.as_bytes()),
            _ => false,
        }
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// The webhook secrets a call may carry: the current one and, during a rotation, the previous
/// one (Secrets Manager's `AWSCURRENT` and `AWSPREVIOUS`), so Portal's calls never fail while its
/// dashboard is switched to the new value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecrets {
    /// `AWSCURRENT`.
    pub current: WebhookSecret,
    /// `AWSPREVIOUS`, until it is retired.
    pub previous: Option<WebhookSecret>,
}

impl WebhookSecrets {
    /// One secret, no previous one.
    pub fn only(current: WebhookSecret) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// Whether the request's `X-Webhook-Secret` header (exactly one) is either secret. Both are
    /// always compared, so timing does not tell which one matched.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let current = self.current.admits(headers);
        let previous = self.previous.as_ref().is_some_and(|p| p.admits(headers));
        current | previous
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    sha256(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
