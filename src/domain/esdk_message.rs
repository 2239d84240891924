//! The header of an AWS Encryption SDK message, read without opening it.
//!
//! Every new ciphertext is an ESDK message (format version 2, see the AWS Encryption SDK's
//! "Message format reference"). The header names the KMS key that wrapped the data key (the
//! provider info of its encrypted data key) and, when the writer stored it, the encryption
//! context. Rotation reads the key to know what to re-seal, opening picks the keyring from it
//! (in this region, for a multi-Region key), and tests read both. Nothing here decrypts: the
//! header is authenticated only when the message is opened, so what is read here decides
//! nothing about trust, only which key to ask.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::ciphertext::{EnvelopeError, MAX_CIPHERTEXT_LEN};

/// Message format version 2: the committing suites.
pub const VERSION_2: u8 = 0x02;

/// `AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: key commitment, no signature (KMS authenticates the
/// writer; an ECDSA signature would add about 400 bytes a share).
pub const SUITE_COMMIT_KEY: u16 = 0x0478;

/// The provider id of a data key wrapped by AWS KMS.
pub const AWS_KMS_PROVIDER: &str = "aws-kms";

/// What the header says, unauthenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    /// The algorithm suite id (`0x0478` for every message this function writes).
    pub suite: u16,
    /// The encryption context stored in the header (empty if the writer left it out).
    pub stored_context: Vec<(String, String)>,
    /// The encrypted data keys.
    pub data_keys: Vec<DataKey>,
}

/// One encrypted data key of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataKey {
    /// Who wrapped it: `aws-kms` for every message of this function.
    pub provider_id: String,
    /// For `aws-kms`, the ARN of the key that wrapped it.
    pub provider_info: String,
    /// The wrapped data key (for `aws-kms`, a KMS ciphertext blob).
    pub ciphertext: Vec<u8>,
}

impl MessageHeader {
    /// The one KMS key that wrapped the data key (this function writes exactly one).
    pub fn kms_key_arn(&self) -> Result<&str, EnvelopeError> {
        match self.data_keys.as_slice() {
            [key] if key.provider_id == AWS_KMS_PROVIDER => Ok(&key.provider_info),
            [_] => Err(EnvelopeError::Malformed(
                "the data key is not wrapped by AWS KMS",
            )),
            _ => Err(EnvelopeError::Malformed(
                "a message of this function has exactly one encrypted data key",
            )),
        }
    }
}

/// A byte reader that never panics: every read says what was being read when input ran out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EnvelopeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A length-prefixed (u16) UTF-8 string.
    fn text(&mut self, what: &'static str) -> Result<String, EnvelopeError> {
        let len = usize::from(self.u16(what)?);
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| EnvelopeError::Malformed(what))
    }
}

/// Reads the header of a message up to its encrypted data keys.
pub fn read_header(message: &[u8]) -> Result<MessageHeader, EnvelopeError> {
    let mut r = Reader(message);
    match r.u8("message is empty")? {
        VERSION_2 => {}
        0x01 => {
            return Err(EnvelopeError::Malformed(
                "AWS Encryption SDK message version 1 has no key commitment and is not accepted",
            ));
        }
        _ => {
            return Err(EnvelopeError::Malformed(
                "not an AWS Encryption SDK message (unknown version byte)",
            ));
        }
    }
    let suite = r.u16("header ends in the algorithm suite id")?;
    r.take(32, "header ends in the message id")?;
    let aad_len = usize::from(r.u16("header ends in the context length")?);
    let mut aad = Reader(r.take(aad_len, "header ends in the encryption context")?);
    let mut stored_context = Vec::new();
    if aad_len > 0 {
        let pairs = aad.u16("encryption context has no pair count")?;
        for _ in 0..pairs {
            let key = aad.text("encryption context key is cut short or not UTF-8")?;
            let value = aad.text("encryption context value is cut short or not UTF-8")?;
            stored_context.push((key, value));
        }
        if !aad.0.is_empty() {
            return Err(EnvelopeError::Malformed(
                "encryption context is longer than its pairs",
            ));
        }
    }
    let count = r.u16("header ends in the data key count")?;
    let mut data_keys = Vec::with_capacity(usize::from(count.min(8)));
    for _ in 0..count {
        let provider_id = r.text("data key provider id is cut short or not UTF-8")?;
        let provider_info = r.text("data key provider info is cut short or not UTF-8")?;
        let len = usize::from(r.u16("header ends in a data key")?);
        let ciphertext = r.take(len, "header ends in a data key")?.to_vec();
        data_keys.push(DataKey {
            provider_id,
            provider_info,
            ciphertext,
        });
    }
    Ok(MessageHeader {
        suite,
        stored_context,
        data_keys,
    })
}

/// The message bytes of a ciphertext string (standard base64, as Portal and JSON answers carry
/// it), bounded like every ciphertext this function opens.
pub fn decode_text(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    if text.len() > MAX_CIPHERTEXT_LEN {
        return Err(EnvelopeError::Malformed("longer than 1 MiB"));
    }
    STANDARD.decode(text).map_err(|_| {
        EnvelopeError::Malformed(
            "neither pbe1 nor standard base64 of an AWS Encryption SDK message",
        )
    })
}

/// The string form of a message: standard base64, nothing around it.
pub fn encode_text(message: &[u8]) -> String {
    STANDARD.encode(message)
}

/// The ARN of a multi-Region key (`key/mrk-…`) as its replica in `region` is named; any other
/// key is returned as it is. A message sealed under a multi-Region key in one region then opens
/// with the replica key of the region it is read in, and nothing else changes.
pub fn arn_in_region(arn: &str, region: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "kms", _, account, resource]
            if resource.starts_with("key/mrk-") && !region.is_empty() =>
        {
            format!("arn:{partition}:kms:{region}:{account}:{resource}")
        }
        _ => arn.to_owned(),
    }
}

/// Whether a message under `under` is under `target` (an ARN in the reading region): the same
/// key, or the same multi-Region key in another region.
pub fn same_key(under: &str, target: &str) -> bool {
    let region = target.split(':').nth(3).unwrap_or_default();
    under == target || arn_in_region(under, region) == target
}

/// A v2 header as the format reference lays it out, for tests (no body: only the header is read).
#[cfg(test)]
pub(crate) fn test_message(context: &[(&str, &str)], keys: &[(&str, &str)]) -> Vec<u8> {
    let mut m = vec![VERSION_2, 0x04, 0x78];
    m.extend([7u8; 32]);
    let mut aad = Vec::new();
    if !context.is_empty() {
        aad.extend((context.len() as u16).to_be_bytes());
        for (k, v) in context {
            aad.extend((k.len() as u16).to_be_bytes());
            aad.extend(k.as_bytes());
            aad.extend((v.len() as u16).to_be_bytes());
            aad.extend(v.as_bytes());
        }
    }
    m.extend((aad.len() as u16).to_be_bytes());
    m.extend(aad);
    m.extend((keys.len() as u16).to_be_bytes());
    for (p, i) in keys {
        m.extend((p.len() as u16).to_be_bytes());
        m.extend(p.as_bytes());
        m.extend((i.len() as u16).to_be_bytes());
        m.extend(i.as_bytes());
        m.extend(3u16.to_be_bytes());
        m.extend([1, 2, 3]);
    }
    m.push(0x02);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234";

    #[test]
    fn reads_suite_context_and_key() {
        let m = test_message(
            &[("clientId", "c1"), ("curve", "ED25519")],
            &[("aws-kms", ARN)],
        );
        let h = read_header(&m).unwrap();
        assert_eq!(h.suite, SUITE_COMMIT_KEY);
        assert_eq!(
            h.stored_context,
            vec![
                ("clientId".to_owned(), "c1".to_owned()),
                ("curve".to_owned(), "ED25519".to_owned())
            ]
        );
        assert_eq!(h.kms_key_arn().unwrap(), ARN);
        let bare = read_header(&test_message(&[], &[("aws-kms", ARN)])).unwrap();
        assert!(bare.stored_context.is_empty());
    }

    #[test]
    fn refuses_other_versions_other_providers_and_every_truncation() {
        let m = test_message(&[("clientId", "c1")], &[("aws-kms", ARN)]);
        let mut v1 = m.clone();
        v1[0] = 0x01;
        assert!(matches!(read_header(&v1), Err(EnvelopeError::Malformed(_))));
        assert!(read_header(b"pbe1.a.b").is_err());
        let raw = read_header(&test_message(&[], &[("raw-aes", "k")])).unwrap();
        assert!(raw.kms_key_arn().is_err());
        let two = read_header(&test_message(&[], &[("aws-kms", ARN), ("aws-kms", ARN)])).unwrap();
        assert!(two.kms_key_arn().is_err());
        // The header ends after the content type byte; every shorter prefix is refused.
        for n in 0..m.len() - 1 {
            assert!(read_header(&m[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn text_form_is_standard_base64_and_bounded() {
        let text = encode_text(&[0xfb, 0xff, 0x00]);
        assert_eq!(text, "+/8A");
        assert_eq!(decode_text(&text).unwrap(), vec![0xfb, 0xff, 0x00]);
        assert!(decode_text("-_8A").is_err());
        assert!(decode_text(&"A".repeat(MAX_CIPHERTEXT_LEN + 4)).is_err());
    }

    #[test]
    fn multi_region_keys_are_named_in_the_reading_region_only() {
        let mrk = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd";
        assert_eq!(
            arn_in_region(mrk, "eu-west-1"),
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd"
        );
        assert_eq!(arn_in_region(ARN, "eu-west-1"), ARN);
        assert_eq!(arn_in_region(mrk, ""), mrk);
        assert_eq!(arn_in_region("alias/x", "eu-west-1"), "alias/x");
        let replica = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd";
        assert!(same_key(mrk, replica));
        assert!(same_key(replica, replica));
        assert!(!same_key(
            ARN,
            "arn:aws:kms:eu-west-1:111122223333:key/1234"
        ));
        assert!(!same_key(
            "arn:aws:kms:us-east-1:111122223333:key/mrk-other",
            replica
        ));
    }
}
