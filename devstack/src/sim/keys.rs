//! Wallets with real keys: for each new wallet and curve the simulator draws a private key, and
//! every share it issues is one half of a fresh 2-of-2 split of that key at two random Birkhoff
//! `x` values, in Portal's shapes (decimal strings, the wallet's `pubkey`, both partial public
//! keys, `bks`), so that Portal's eject arithmetic recovers the key. The wallet's public key and
//! address are kept to compare with.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portal_shares::curve::Curve as ShareCurve;
use portal_shares::public::{WalletPublic, public_of_affine};
use portal_shares::split::{KeySplit, Rng, Source, new_key, split_key};
use serde_json::Value;
use zeroize::Zeroizing;

use super::basics::{Curve, SimError, new_id};

/// The custodian id the simulator's custodian shares name.
pub(crate) const CUSTODIAN_ID: &str = "sim-custodian";

/// The system's random generator; a failure is remembered and turned into [`SimError::Random`].
struct SystemRandom {
    failed: bool,
}

impl Source for SystemRandom {
    fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut out).is_err() {
            self.failed = true;
        }
        out
    }
}

/// Runs `f` with the system's generator.
fn with_random<T>(f: impl FnOnce(&mut SystemRandom) -> Option<T>) -> Result<T, SimError> {
    let mut src = SystemRandom { failed: false };
    let out = f(&mut src);
    match out {
        Some(v) if !src.failed => Ok(v),
        _ => Err(SimError::Random),
    }
}

fn share_curve(curve: Curve) -> ShareCurve {
    match curve {
        Curve::Secp256k1 => ShareCurve::Secp256k1,
        Curve::Ed25519 => ShareCurve::Ed25519,
    }
}

/// A wallet: its id, curve, private key and public values.
pub(crate) struct Wallet {
    /// Portal's wallet id (`GET /api/v3/clients/me` `wallets[].id`).
    pub id: String,
    /// The curve.
    pub curve: Curve,
    /// The private key, big-endian; wiped when dropped.
    key: Zeroizing<[u8; 32]>,
    /// The public key and address.
    pub public: WalletPublic,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("id", &self.id)
            .field("curve", &self.curve)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// A new wallet with a fresh key.
    pub(crate) fn new(curve: Curve) -> Result<Arc<Self>, SimError> {
        let id = new_id()?;
        let key = with_random(|src| Some(new_key(share_curve(curve), src)))?;
        Self::from_key(id, curve, key).ok_or(SimError::Random)
    }

    /// The demo client's wallet: the same key on every run.
    pub(crate) fn demo(id: &str, curve: Curve) -> Option<Arc<Self>> {
        let mut rng = Rng::new(&format!("portal-sim demo wallet {}", curve.as_str()));
        let key = new_key(share_curve(curve), &mut rng);
        Self::from_key(id.to_owned(), curve, key)
    }

    fn from_key(id: String, curve: Curve, key: Zeroizing<[u8; 32]>) -> Option<Arc<Self>> {
        let pubkey = portal_shares::check::scalar_times_g(share_curve(curve), &key)?;
        let public = public_of_affine(share_curve(curve), &pubkey)?;
        Some(Arc::new(Self {
            id,
            curve,
            key,
            public,
        }))
    }

    fn split(&self, src: &mut impl Source) -> Option<KeySplit> {
        split_key(share_curve(self.curve), &self.key, src)
    }

    /// A signing share (base64 JSON): the client's half of a fresh split.
    pub(crate) fn signing_share(
        &self,
        client_id: &str,
        signing_pair_id: &str,
    ) -> Result<String, SimError> {
        with_random(|src| {
            let split = self.split(src)?;
            Some(signing_doc(&split, client_id, signing_pair_id, src))
        })
    }

    /// The demo wallet's signing share: the same on every run.
    pub(crate) fn demo_signing_share(
        &self,
        client_id: &str,
        signing_pair_id: &str,
    ) -> Option<String> {
        let mut rng = Rng::new(&format!("portal-sim demo signing {}", self.curve.as_str()));
        let split = self.split(&mut rng)?;
        Some(signing_doc(&split, client_id, signing_pair_id, &mut rng))
    }

    /// A backup: the client backup share (base64 JSON, as `/v1/backup` answers it) and the
    /// custodian backup share (flat JSON text, as the webhook and eject carry it), two halves of
    /// one fresh split.
    pub(crate) fn backup_shares(
        &self,
        client_id: &str,
        backup_pair_id: &str,
        signing_pair_id: &str,
    ) -> Result<(String, String), SimError> {
        with_random(|src| {
            let split = self.split(src)?;
            let client = split.client_backup_share(client_id, backup_pair_id, signing_pair_id, src);
            let custodian = split.custodian_backup_share(client_id, CUSTODIAN_ID, src);
            Some((encode(&client), custodian.to_string()))
        })
    }
}

fn signing_doc(
    split: &KeySplit,
    client_id: &str,
    signing_pair_id: &str,
    src: &mut impl Source,
) -> String {
    let mut doc = split.client_backup_share(client_id, "", signing_pair_id, src);
    // A signing share names no backup pair, and spells its public key `{X, Y}`.
    if let Value::Object(map) = &mut doc {
        map.remove("backupSharePairId");
        if let Some(pubkey) = map.remove("pubkey") {
            map.insert(
                "pubkey".to_owned(),
                serde_json::json!({"X": pubkey["x"], "Y": pubkey["y"]}),
            );
        }
    }
    encode(&doc)
}

fn encode(doc: &Value) -> String {
    STANDARD.encode(doc.to_string())
}
