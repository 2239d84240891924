//! The domain's small value types: curves, backup modes, ids, and the curve-keyed shape Portal
//! uses for generate, backup and recover responses.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// An MPC curve Portal keeps a share pair for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Curve {
    /// secp256k1 (EVM, Bitcoin).
    Secp256k1,
    /// ed25519 (Solana, …).
    Ed25519,
}

impl Curve {
    /// Both curves, in the order Portal lists them.
    pub const ALL: [Curve; 2] = [Curve::Secp256k1, Curve::Ed25519];

    /// The reference's name, used on the wire, in encryption contexts and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "SECP256K1",
            Curve::Ed25519 => "ED25519",
        }
    }

    /// Parses the reference's name.
    pub fn parse(name: &str) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Every key under which Portal's documents put this curve's entry (see docs/portal-api.md).
    fn keys(self, seed_form: bool) -> &'static [&'static str] {
        match (self, seed_form) {
            (Curve::Secp256k1, false) => &["SECP256K1", "secp256k1"],
            (Curve::Ed25519, false) => &["ED25519", "ed25519"],
            (Curve::Secp256k1, true) => &["SECP256K1", "secp256k1", "secp256k1Share"],
            (Curve::Ed25519, true) => &["ED25519", "ed25519", "ed25519Share"],
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the client backup share's ciphertext is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupMode {
    /// In this deployment's DynamoDB table.
    SelfManaged,
    /// With Portal, through the client API.
    PortalManaged,
}

impl BackupMode {
    /// The name used in messages, configuration and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::SelfManaged => "SELF_MANAGED",
            BackupMode::PortalManaged => "PORTAL_MANAGED",
        }
    }
}

impl FromStr for BackupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SELF_MANAGED" => Ok(BackupMode::SelfManaged),
            "PORTAL_MANAGED" => Ok(BackupMode::PortalManaged),
            _ => Err("must be \"SELF_MANAGED\" or \"PORTAL_MANAGED\"".to_owned()),
        }
    }
}

impl fmt::Display for BackupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest id accepted from input or from Portal.
pub const MAX_ID_LEN: usize = 128;

/// Checks an id that will be placed in a URL path or a table key: 1–128 of `[A-Za-z0-9_-]`.
///
/// Portal's ids are cuids; anything else is refused rather than escaped, so no input can reach a
/// different path or key.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err("must be 1 to 128 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("may hold only letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Whether `key` names a curve in a curve-keyed Portal document.
pub fn is_curve_key(key: &str, seed_form: bool) -> bool {
    Curve::ALL.iter().any(|c| c.keys(seed_form).contains(&key))
}

/// Finds each curve's entry in a curve-keyed Portal document, accepting every documented form.
///
/// `seed_form` also accepts the seed guide's `secp256k1Share`/`ed25519Share` keys (backup
/// responses only). Errors name the curve and say what is wrong, never a value.
pub fn curve_entries(map: &Map<String, Value>, seed_form: bool) -> Result<[&Value; 2], String> {
    let mut found: [Option<&Value>; 2] = [None, None];
    for (slot, curve) in found.iter_mut().zip(Curve::ALL) {
        let mut hits = curve.keys(seed_form).iter().filter_map(|k| map.get(*k));
        *slot = hits.next();
        if hits.next().is_some() {
            return Err(format!("{curve} appears under more than one key"));
        }
    }
    match found {
        [Some(a), Some(b)] => Ok([a, b]),
        [None, _] => Err(format!("{} is missing", Curve::Secp256k1)),
        [_, None] => Err(format!("{} is missing", Curve::Ed25519)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_restricted_to_path_safe_characters() {
        assert!(check_id("cm0r6nkek00ej10dwwx8wdjmf").is_ok());
        assert!(check_id("a_b-C").is_ok());
        for bad in ["", "a/b", "../x", "a b", "é", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn curve_entries_accept_every_documented_form() {
        for doc in [
            json!({"SECP256K1": 1, "ED25519": 2}),
            json!({"secp256k1": 1, "ed25519": 2}),
            json!({"secp256k1Share": 1, "ed25519Share": 2}),
        ] {
            let map = doc.as_object().unwrap();
            let [a, b] = curve_entries(map, true).unwrap();
            assert_eq!((a, b), (&json!(1), &json!(2)));
        }
        let seed = json!({"secp256k1Share": 1, "ed25519Share": 2});
        assert!(curve_entries(seed.as_object().unwrap(), false).is_err());
    }

    #[test]
    fn curve_entries_refuse_missing_or_ambiguous_curves() {
        let one = json!({"SECP256K1": 1});
        assert_eq!(
            curve_entries(one.as_object().unwrap(), true).unwrap_err(),
            "ED25519 is missing"
        );
        let two = json!({"SECP256K1": 1, "secp256k1": 1, "ED25519": 2});
        assert!(curve_entries(two.as_object().unwrap(), true).is_err());
    }
}
