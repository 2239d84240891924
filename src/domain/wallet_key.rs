//! What a backup half proves about its wallet's key from public values alone: its scalar times
//! `G` is its own partial public key, and the two partial public keys combine to the wallet's
//! public key (`portal_shares::check`). Never combines two halves: that is the eject tool's.
//!
//! A half that opens but fails this is a `KEY_MISMATCH`; one that carries no public values to
//! check against (or values that are not points) is unchecked, with the reason.

use portal_shares::check::partial_checks;
use portal_shares::curve::Curve as ShareCurve;
use portal_shares::public::wallet_public;
use portal_shares::share::{Role, parse};
use serde::{Deserialize, Serialize};

use crate::domain::model::Curve;

/// A wallet's public values: recorded in the clear beside each sealed half.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletPublic {
    /// The public key, hex: SECP256K1 uncompressed (`04…`), ED25519 the compressed point.
    pub public_key: String,
    /// The EVM address (SECP256K1) or Solana address (ED25519).
    pub address: String,
}

/// Which half of a wallet's key a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// The client backup share (`/v1/backup`'s `share`, or the sealed `{"share","id"}`).
    Client,
    /// The custodian backup share (the webhook's `share`).
    Custodian,
}

/// The outcome of the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Both checks hold.
    Proven,
    /// The values are well formed and do not make the wallet's key (why, naming fields only).
    Mismatch(String),
    /// Nothing to check against, or values that are not usable (why, naming fields only).
    Unchecked(String),
}

impl Verdict {
    /// The name recorded beside the half: `proven`, `mismatch` or `unchecked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Proven => "proven",
            Self::Mismatch(_) => "mismatch",
            Self::Unchecked(_) => "unchecked",
        }
    }
}

/// What one half says about its wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheck {
    /// The wallet's public values, when the half names a public key on its curve.
    pub public: Option<WalletPublic>,
    /// The checks' outcome.
    pub verdict: Verdict,
}

fn share_curve(curve: Curve) -> ShareCurve {
    match curve {
        Curve::Secp256k1 => ShareCurve::Secp256k1,
        Curve::Ed25519 => ShareCurve::Ed25519,
    }
}

/// Checks one half (`text`: the share as Portal sent it, or the sealed record) of a wallet on
/// `curve` against public values. The parsed scalar is wiped when this returns.
pub fn check_half(half: Half, curve: Curve, text: &[u8]) -> KeyCheck {
    let role = match half {
        Half::Client => Role::Client,
        Half::Custodian => Role::Custodian,
    };
    let curve = share_curve(curve);
    let parsed = match parse(role, curve, text) {
        Ok(h) => h,
        Err(e) => {
            return KeyCheck {
                public: None,
                verdict: Verdict::Unchecked(e.to_string()),
            };
        }
    };
    let public = wallet_public(curve, &parsed).ok().map(|p| WalletPublic {
        public_key: p.public_key,
        address: p.address.as_str().to_owned(),
    });
    let verdict = match partial_checks(curve, &parsed) {
        Ok(()) => Verdict::Proven,
        Err(e) if e.is_mismatch() => Verdict::Mismatch(e.to_string()),
        Err(e) => Verdict::Unchecked(e.to_string()),
    };
    KeyCheck { public, verdict }
}

/// Checks a custodian backup share, which does not name its curve: it is the curve its wallet
/// public key is a point of (a point of one curve is not one of the other). `None` for the
/// curve when the share names a public key of neither.
pub fn check_custodian(text: &[u8]) -> (Option<Curve>, KeyCheck) {
    let mut first = None;
    for curve in Curve::ALL {
        let check = check_half(Half::Custodian, curve, text);
        if check.public.is_some() {
            return (Some(curve), check);
        }
        first.get_or_insert(check);
    }
    let check = first.unwrap_or(KeyCheck {
        public: None,
        verdict: Verdict::Unchecked("no curve".into()),
    });
    (None, check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_shares::split::{Rng, b64, new_key, split_key};
    use serde_json::json;

    #[test]
    fn real_halves_prove_and_name_their_wallet() {
        let mut rng = Rng::new("wallet-key");
        for curve in Curve::ALL {
            let d = new_key(share_curve(curve), &mut rng);
            let k = split_key(share_curve(curve), &d, &mut rng).unwrap();
            let client = k.client_backup_share("c1", "bp1", "sp1", &mut rng);
            let custodian = k.custodian_backup_share("c1", "cu", &mut rng);
            let a = check_half(Half::Client, curve, b64(&client).as_bytes());
            let b = check_half(Half::Custodian, curve, custodian.to_string().as_bytes());
            assert_eq!(
                check_custodian(custodian.to_string().as_bytes()),
                (Some(curve), b.clone())
            );
            assert_eq!(a.verdict, Verdict::Proven);
            assert_eq!(b.verdict, Verdict::Proven);
            assert_eq!(a.public, b.public);
            let public = a.public.unwrap();
            match curve {
                Curve::Secp256k1 => assert!(public.address.starts_with("0x")),
                Curve::Ed25519 => assert_eq!(public.public_key.len(), 64),
            }
            // The sealed record form of the client half reads the same.
            let record = json!({"share": b64(&client), "id": "bp1"}).to_string();
            assert_eq!(
                check_half(Half::Client, curve, record.as_bytes()).verdict,
                Verdict::Proven
            );
            // A changed scalar that still parses is a mismatch; the message names no value.
            let mut changed = custodian.clone();
            changed["share"] = json!("12345");
            let c = check_half(Half::Custodian, curve, changed.to_string().as_bytes());
            let Verdict::Mismatch(why) = c.verdict else {
                panic!("not a mismatch: {c:?}")
            };
            assert!(!why.contains("12345"));
            assert!(c.public.is_some());
        }
    }

    #[test]
    fn halves_without_public_values_are_unchecked() {
        let bare = json!({"clientId": "c1", "backupSharePairId": "bp1", "share": "abc"});
        let c = check_half(Half::Client, Curve::Secp256k1, b64(&bare).as_bytes());
        assert_eq!(c.public, None);
        assert_eq!(c.verdict.as_str(), "unchecked");
        let c = check_half(Half::Custodian, Curve::Ed25519, b"not json");
        assert_eq!(c.verdict.as_str(), "unchecked");
    }
}
