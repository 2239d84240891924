//! 2-of-2 splits of a wallet's key in Portal's shapes, for the Portal simulator and tests (never
//! the Lambda): a key `d`, a line `d + a1·x`, two random Birkhoff x values, and both halves'
//! documents with the wallet's public key and both partial public keys; and Portal's published
//! eject example.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha3::{Digest, Keccak256};

use zeroize::Zeroizing;

use crate::curve::{Affine, Curve, Group};
use crate::decimal::to_decimal;
use crate::ed25519::Ed25519;
use crate::secp256k1::Secp256k1;

/// Where a split's randomness comes from: the system's generator in the simulator, [`Rng`] in
/// tests.
pub trait Source {
    /// 32 random bytes.
    fn bytes32(&mut self) -> [u8; 32];
}

impl Source for Rng {
    fn bytes32(&mut self) -> [u8; 32] {
        Rng::bytes32(self)
    }
}

/// A deterministic stream of 32-byte blocks (Keccak-256 of a label and a counter): random
/// enough for splits, and the same on every run.
pub struct Rng {
    label: Vec<u8>,
    counter: u64,
}

impl Rng {
    pub fn new(label: &str) -> Self {
        Self {
            label: label.as_bytes().to_vec(),
            counter: 0,
        }
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        self.counter += 1;
        let mut h = Keccak256::new();
        h.update(&self.label);
        h.update(self.counter.to_be_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        out
    }
}

/// A scalar as a big-endian integer.
pub fn be<G: Group>(s: &G::Scalar) -> [u8; 32] {
    let mut out = *G::key_bytes(s);
    if G::CURVE == Curve::Ed25519 {
        out.reverse();
    }
    out
}

/// A random nonzero scalar below the curve's order.
pub fn random_scalar<G: Group>(rng: &mut impl Source) -> G::Scalar {
    loop {
        let mut b = rng.bytes32();
        if G::CURVE == Curve::Ed25519 {
            b[0] &= 0x0f; // below 2^252 < ℓ
        }
        if let Some(s) = G::scalar(&b).filter(|s| !G::is_zero(s)) {
            return s;
        }
    }
}

fn dec(b: &[u8; 32]) -> String {
    to_decimal(b)
}

/// A client backup share in Portal's shape (the JSON; Portal sends its base64).
#[allow(clippy::too_many_arguments)]
pub fn client_share(
    client_id: &str,
    share: &str,
    pubkey: (&str, &str),
    x_c: &str,
    x_s: &str,
    partials: Option<((String, String), (String, String))>,
) -> Value {
    let mut v = json!({
        "clientId": client_id,
        "backupSharePairId": "pair-1",
        "signingSharePairId": "signing-1",
        "share": share,
        "ssid": "ssid-1",
        "pubkey": {"x": pubkey.0, "y": pubkey.1},
        "allY": {},
        "p": "", "q": "",
        "pederson": {},
        "bks": {"client": {"x": x_c, "rank": 0}, "server": {"x": x_s, "rank": 0}},
    });
    if let Some(((cx, cy), (sx, sy))) = partials {
        v["partialPubkey"] = json!({"client": {"x": cx, "y": cy}, "server": {"x": sx, "y": sy}});
    }
    v
}

/// A custodian backup share in Portal's flat shape.
pub fn custodian_share(
    client_id: &str,
    share: &str,
    pubkey: (&str, &str),
    x_c: &str,
    x_s: &str,
    partials: Option<((String, String), (String, String))>,
) -> Value {
    let mut v = json!({
        "clientId": client_id,
        "custodianId": "custodian-1",
        "x": pubkey.0, "y": pubkey.1,
        "clientBk": x_c, "serverBk": x_s,
        "share": share,
        "yClient_x": "", "yClient_y": "", "yServer_x": "", "yServer_y": "",
        "pailler_p": "", "pailler_q": "", "ssid": "ssid-1",
    });
    if let Some(((cx, cy), (sx, sy))) = partials {
        v["clientPartialPubKey_x"] = json!(cx);
        v["clientPartialPubKey_y"] = json!(cy);
        v["serverPartialPubKey_x"] = json!(sx);
        v["serverPartialPubKey_y"] = json!(sy);
    }
    v
}

/// Base64 of a share's JSON, as Portal sends a client backup share.
pub fn b64(v: &Value) -> String {
    STANDARD.encode(v.to_string())
}

/// Portal's published example (eject.js): the values of portal-api.md, with a client id (the
/// example leaves it empty; eject requires both halves to name the same one).
pub fn portal_example(curve: Curve) -> (Value, Value) {
    let (px, py, s_c, x_c, s_s, x_s) = match curve {
        Curve::Secp256k1 => (
            "95905857107301357381155516338362784207317010673073787675690511286760317802272",
            "84471157200556546968836560278865290072494471108462199268947632974788956557127",
            "20239155973571792266164364275964524242029729063304656485165418448115248082802",
            "86868548274168401139460440216870783092063038666835278534832349302396154314237",
            "35548699788994050550146262427737959890227338646889173786783560192790230768775",
            "18215211649252066570518778981645428771794111974791698622992184423457425369616",
        ),
        Curve::Ed25519 => (
            "4155079341668263211468645490523568285081269952458706525782542662765297681720",
            "33170931963135572976162508038363263257341896290508808710058213404228890998925",
            "209966714242237444698175757090286175213972386782216686905361352132244887465",
            "674076495015830984277819692722227700482715353628168867159273906537386870716",
            "3972754397714006467384117681683827603947104866080154044667201466825208338771",
            "4645588044633541551475641810441554672302500022056130044324874662839150929177",
        ),
    };
    let id = "portal-example-client";
    (
        client_share(id, s_c, (px, py), x_c, x_s, None),
        custodian_share(id, s_s, (px, py), x_c, x_s, None),
    )
}

/// A random 2-of-2 split of a random key `d`: shares on the line `d + a1·x` at two random x.
pub struct Split {
    /// The key, big-endian.
    pub d: [u8; 32],
    /// The client half (JSON).
    pub client: Value,
    /// The custodian half (JSON).
    pub custodian: Value,
}

pub fn split<G: Group>(rng: &mut impl Source, client_id: &str) -> Split {
    let d = random_scalar::<G>(rng);
    let a1 = random_scalar::<G>(rng);
    let x_c = random_scalar::<G>(rng);
    let mut x_s = random_scalar::<G>(rng);
    while be::<G>(&x_s) == be::<G>(&x_c) {
        x_s = random_scalar::<G>(rng);
    }
    let s_c = G::add(&d, &G::mul(&a1, &x_c));
    let s_s = G::add(&d, &G::mul(&a1, &x_s));
    let coords = |s: &G::Scalar| {
        let a = G::affine(&G::mul_base(s));
        (dec(&a.x), dec(&a.y))
    };
    let (px, py) = coords(&d);
    let partials = Some((coords(&s_c), coords(&s_s)));
    let (xc, xs) = (dec(&be::<G>(&x_c)), dec(&be::<G>(&x_s)));
    Split {
        d: be::<G>(&d),
        client: client_share(
            client_id,
            &dec(&be::<G>(&s_c)),
            (&px, &py),
            &xc,
            &xs,
            partials.clone(),
        ),
        custodian: custodian_share(
            client_id,
            &dec(&be::<G>(&s_s)),
            (&px, &py),
            &xc,
            &xs,
            partials,
        ),
    }
}

/// One 2-of-2 split of a wallet's key: public values and both scalars (big-endian; wiped when
/// dropped).
pub struct KeySplit {
    /// The curve.
    pub curve: Curve,
    /// The wallet's public key `d·G`.
    pub pubkey: Affine,
    /// The client's scalar `s_c = d + a1·x_c`.
    pub client: Zeroizing<[u8; 32]>,
    /// The server's (custodian's) scalar `s_s = d + a1·x_s`.
    pub server: Zeroizing<[u8; 32]>,
    /// The client's Birkhoff x.
    pub x_c: [u8; 32],
    /// The server's Birkhoff x.
    pub x_s: [u8; 32],
    /// `s_c·G`.
    pub p_c: Affine,
    /// `s_s·G`.
    pub p_s: Affine,
}

/// A fresh private key for `curve`: a random nonzero scalar below the order, big-endian.
pub fn new_key(curve: Curve, src: &mut impl Source) -> Zeroizing<[u8; 32]> {
    fn on<G: Group>(src: &mut impl Source) -> Zeroizing<[u8; 32]> {
        let d = Zeroizing::new(random_scalar::<G>(src));
        Zeroizing::new(be::<G>(&d))
    }
    match curve {
        Curve::Secp256k1 => on::<Secp256k1>(src),
        Curve::Ed25519 => on::<Ed25519>(src),
    }
}

/// A fresh split of the key `d` (big-endian); `None` when `d` is zero or not below the order.
pub fn split_key(curve: Curve, d: &[u8; 32], src: &mut impl Source) -> Option<KeySplit> {
    fn on<G: Group>(d: &[u8; 32], src: &mut impl Source) -> Option<KeySplit> {
        let d = Zeroizing::new(G::scalar(d).filter(|s| !G::is_zero(s))?);
        let a1 = Zeroizing::new(random_scalar::<G>(src));
        let x_c = random_scalar::<G>(src);
        let mut x_s = random_scalar::<G>(src);
        while be::<G>(&x_s) == be::<G>(&x_c) {
            x_s = random_scalar::<G>(src);
        }
        let s_c = Zeroizing::new(G::add(&d, &G::mul(&a1, &x_c)));
        let s_s = Zeroizing::new(G::add(&d, &G::mul(&a1, &x_s)));
        Some(KeySplit {
            curve: G::CURVE,
            pubkey: G::affine(&G::mul_base(&d)),
            client: Zeroizing::new(be::<G>(&s_c)),
            server: Zeroizing::new(be::<G>(&s_s)),
            x_c: be::<G>(&x_c),
            x_s: be::<G>(&x_s),
            p_c: G::affine(&G::mul_base(&s_c)),
            p_s: G::affine(&G::mul_base(&s_s)),
        })
    }
    match curve {
        Curve::Secp256k1 => on::<Secp256k1>(d, src),
        Curve::Ed25519 => on::<Ed25519>(d, src),
    }
}

/// `{"x", "y"}` in decimal.
fn xy(a: &Affine) -> Value {
    json!({"x": dec(&a.x), "y": dec(&a.y)})
}

impl KeySplit {
    /// The client backup share's JSON as Portal issues it (Portal sends its base64), with
    /// `ssid` and the Paillier and Pedersen values as random-looking decimal filler.
    pub fn client_backup_share(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
        signing_share_pair_id: &str,
        filler: &mut impl Source,
    ) -> Value {
        let mut f = || dec(&filler.bytes32());
        json!({
            "clientId": client_id,
            "backupSharePairId": backup_share_pair_id,
            "signingSharePairId": signing_share_pair_id,
            "share": dec(&self.client),
            "ssid": f(),
            "pubkey": xy(&self.pubkey),
            "partialPubkey": {"client": xy(&self.p_c), "server": xy(&self.p_s)},
            "allY": {"client": xy(&self.p_c), "server": xy(&self.p_s)},
            "p": f(), "q": f(),
            "pederson": {
                "client": {"n": f(), "s": f(), "t": f()},
                "server": {"n": f(), "s": f(), "t": f()},
            },
            "bks": {"client": {"x": dec(&self.x_c), "rank": 0}, "server": {"x": dec(&self.x_s), "rank": 0}},
        })
    }

    /// The custodian backup share's flat JSON as Portal's webhook and `ejectable-backup-shares`
    /// carry it.
    pub fn custodian_backup_share(
        &self,
        client_id: &str,
        custodian_id: &str,
        filler: &mut impl Source,
    ) -> Value {
        let mut f = || dec(&filler.bytes32());
        json!({
            "clientId": client_id,
            "custodianId": custodian_id,
            "x": dec(&self.pubkey.x), "y": dec(&self.pubkey.y),
            "clientBk": dec(&self.x_c), "serverBk": dec(&self.x_s),
            "share": dec(&self.server),
            "clientPartialPubKey_x": dec(&self.p_c.x), "clientPartialPubKey_y": dec(&self.p_c.y),
            "serverPartialPubKey_x": dec(&self.p_s.x), "serverPartialPubKey_y": dec(&self.p_s.y),
            "yClient_x": dec(&self.p_c.x), "yClient_y": dec(&self.p_c.y),
            "yServer_x": dec(&self.p_s.x), "yServer_y": dec(&self.p_s.y),
            "pailler_p": f(), "pailler_q": f(),
            "ssid": f(),
            "pedersenClient_n": f(), "pedersenClient_s": f(), "pedersenClient_t": f(),
            "pedersenServer_n": f(), "pedersenServer_s": f(), "pedersenServer_t": f(),
        })
    }
}
