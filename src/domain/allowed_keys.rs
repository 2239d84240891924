//! Which KMS keys may open a message: the function's own key and the retired keys it is told of,
//! decided from the message's header before any KMS call. A message names its own key, so
//! without this list the function would ask whatever key a stored or sent message names.

use crate::domain::esdk_message::same_key;

/// The keys a message may be under: the current one (an ARN, a key id or an alias) and the
/// retired ones (ARNs or key ids: listed until rotation has moved every backup off them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedKeys {
    current: String,
    retired: Vec<String>,
}

/// What the list says of a message's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    /// One of the listed keys.
    Admitted,
    /// None of them: refused without a KMS call.
    Refused,
    /// Not one of the keys by name, but the current key is an alias: only KMS knows its key.
    ResolveAlias,
}

/// Whether a key spec is an alias (`alias/…` or an alias ARN).
pub fn is_alias(spec: &str) -> bool {
    spec.starts_with("alias/") || (spec.starts_with("arn:") && spec.contains(":alias/"))
}

/// Whether `spec` (an ARN or a bare key id; never an alias) names the key of `arn`.
fn names(spec: &str, arn: &str) -> bool {
    if is_alias(spec) {
        false
    } else if spec.starts_with("arn:") {
        same_key(arn, spec) || same_key(spec, arn)
    } else {
        arn.rsplit_once(":key/").is_some_and(|(_, id)| id == spec)
    }
}

impl AllowedKeys {
    /// The current key and the retired ones.
    pub fn new(current: impl Into<String>, retired: Vec<String>) -> Self {
        Self {
            current: current.into(),
            retired,
        }
    }

    /// The current key as configured.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// What the list says of `arn`, the key a message's header names.
    pub fn verdict(&self, arn: &str) -> KeyVerdict {
        let listed = std::iter::once(&self.current).chain(&self.retired);
        if listed.into_iter().any(|spec| names(spec, arn)) {
            KeyVerdict::Admitted
        } else if is_alias(&self.current) {
            KeyVerdict::ResolveAlias
        } else {
            KeyVerdict::Refused
        }
    }

    /// Whether `arn` is the current key once its alias resolved to `resolved` (a key ARN).
    pub fn resolved_current_names(resolved: &str, arn: &str) -> bool {
        names(resolved, arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const B: &str = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
    const MRK: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const MRK_REPLICA: &str =
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn only_the_listed_keys_open_a_message() {
        let keys = AllowedKeys::new(A, vec![]);
        assert_eq!(keys.verdict(A), KeyVerdict::Admitted);
        assert_eq!(keys.verdict(B), KeyVerdict::Refused);
        let with_retired = AllowedKeys::new(A, vec![B.to_owned()]);
        assert_eq!(with_retired.verdict(B), KeyVerdict::Admitted);
        // A bare key id names the key in any ARN that ends with it.
        let by_id = AllowedKeys::new("1234abcd-12ab-34cd-56ef-1234567890ab", vec![]);
        assert_eq!(by_id.verdict(A), KeyVerdict::Admitted);
        assert_eq!(by_id.verdict(B), KeyVerdict::Refused);
        // A single-Region key of the same id in another account or region is another key.
        let other_account = A.replace("111122223333", "444455556666");
        assert_eq!(keys.verdict(&other_account), KeyVerdict::Refused);
    }

    #[test]
    fn a_multi_region_key_is_one_key_in_every_region() {
        let keys = AllowedKeys::new(MRK_REPLICA, vec![]);
        assert_eq!(keys.verdict(MRK), KeyVerdict::Admitted);
        assert_eq!(keys.verdict(MRK_REPLICA), KeyVerdict::Admitted);
        let other_account = MRK.replace("111122223333", "444455556666");
        assert_eq!(keys.verdict(&other_account), KeyVerdict::Refused);
    }

    #[test]
    fn an_alias_is_resolved_by_kms_once() {
        for alias in [
            "alias/portal-backup",
            "arn:aws:kms:us-east-1:111122223333:alias/portal-backup",
        ] {
            let keys = AllowedKeys::new(alias, vec![B.to_owned()]);
            assert_eq!(
                keys.verdict(B),
                KeyVerdict::Admitted,
                "retired ones by name"
            );
            assert_eq!(keys.verdict(A), KeyVerdict::ResolveAlias);
        }
        assert!(AllowedKeys::resolved_current_names(A, A));
        assert!(!AllowedKeys::resolved_current_names(A, B));
    }
}
