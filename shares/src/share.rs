//! The two halves of a wallet's key as Portal issues them: the client backup share (base64 of
//! JSON, or the JSON) and the custodian backup share (flat JSON, or base64 of it), both read into
//! one [`Half`]. Errors name the field and the problem, never a value.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::curve::{Affine, Curve};
use crate::doc::{Doc, decode};
use crate::fields::{
    client_id, curve, decimal, either, field, flat_point, lookup, nested_point, optional_string,
    string,
};
pub use crate::role::Role;
pub use crate::share_error::{Problem, ShareError};

/// The Birkhoff x values of both parties, big-endian (rank 0: Lagrange interpolation at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bks {
    /// The client's x (`bks.client.x`, `clientBk`).
    pub client: [u8; 32],
    /// The server's x (`bks.server.x`, `serverBk`): the custodian half's.
    pub server: [u8; 32],
}

/// Both parties' partial public keys, where the half carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partials {
    /// The client's: `s_c·G`.
    pub client: Option<Affine>,
    /// The server's (custodian's): `s_s·G`.
    pub server: Option<Affine>,
}

/// One half of a wallet's key, whichever shape it came in.
pub struct Half {
    /// Which half this is.
    pub role: Role,
    /// Portal's client id.
    pub client_id: String,
    /// The curve, when the half names one (a `curve` field, or the `/v1/backup` entry it came in).
    pub curve: Option<Curve>,
    /// The backup share pair id, when the half names one.
    pub backup_share_pair_id: Option<String>,
    /// The share: a scalar, big-endian; wiped when dropped.
    pub scalar: Zeroizing<[u8; 32]>,
    /// Both Birkhoff x values.
    pub bks: Bks,
    /// The wallet's public key.
    pub pubkey: Affine,
    /// The partial public keys.
    pub partials: Partials,
}

impl Half {
    /// This half's own Birkhoff x.
    pub fn own_x(&self) -> &[u8; 32] {
        match self.role {
            Role::Client => &self.bks.client,
            Role::Custodian => &self.bks.server,
        }
    }

    /// This half's own partial public key, if it carries it.
    pub fn own_partial(&self) -> Option<&Affine> {
        match self.role {
            Role::Client => self.partials.client.as_ref(),
            Role::Custodian => self.partials.server.as_ref(),
        }
    }
}

impl fmt::Debug for Half {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Half")
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("curve", &self.curve)
            .field("scalar", &"<redacted>")
            .finish_non_exhaustive()
    }
}

const MAX_DEPTH: usize = 4;
const CLIENT_PARTIAL: (&str, &str) = ("partialPubkey.client.x", "partialPubkey.client.y");
const SERVER_PARTIAL: (&str, &str) = ("partialPubkey.server.x", "partialPubkey.server.y");

/// Reads a half from a share file's plaintext. `curve` picks the entry of a whole `/v1/backup`
/// answer. Accepted: the share's JSON or its base64; for the client half also the `/v1/backup`
/// entry `{"share", "id"}` (what a stored backup holds) and the whole answer; for the custodian
/// half also the `ejectable-backup-shares` answer (`custodianBackupShare`).
pub fn parse(role: Role, curve: Curve, text: &[u8]) -> Result<Half, ShareError> {
    parse_at(role, curve, text, 0)
}

fn parse_at(role: Role, curve: Curve, text: &[u8], depth: usize) -> Result<Half, ShareError> {
    if depth > MAX_DEPTH {
        return Err(ShareError::TooDeep(role));
    }
    let doc: Doc = decode(text).ok_or(ShareError::NotJson(role))?;
    let obj = match doc.value() {
        Value::String(inner) => return parse_at(role, curve, inner.as_bytes(), depth + 1),
        Value::Object(obj) => obj,
        _ => return Err(ShareError::NotShare(role)),
    };
    let has = |key: &str| obj.contains_key(key);
    match role {
        Role::Client if has("clientBk") || has("serverBk") => Err(ShareError::Swapped(role)),
        Role::Custodian if has("bks") || has("partialPubkey") => Err(ShareError::Swapped(role)),
        Role::Client if obj.contains_key("clientId") => client(obj),
        Role::Client if obj.contains_key("share") && obj.contains_key("id") => {
            let share = string(obj, role, "share")?;
            let half = parse_at(role, curve, share.as_bytes(), depth + 1)?;
            let id = string(obj, role, "id")?;
            match &half.backup_share_pair_id {
                Some(pair) if pair != id => Err(field(role, "id", Problem::PairIdMismatch)),
                _ => Ok(half),
            }
        }
        Role::Client => {
            let entry = obj
                .iter()
                .find(|(k, _)| Curve::parse(k) == Some(curve))
                .map(|(_, v)| v);
            match entry {
                Some(entry @ Value::Object(_)) => {
                    let text = Zeroizing::new(entry.to_string());
                    let mut half = parse_at(role, curve, text.as_bytes(), depth + 1)?;
                    half.curve = half.curve.or(Some(curve));
                    Ok(half)
                }
                Some(_) => Err(ShareError::NotShare(role)),
                None if obj.keys().any(|k| Curve::parse(k).is_some()) => {
                    Err(ShareError::NoCurveEntry { role, curve })
                }
                None => Err(ShareError::NotShare(role)),
            }
        }
        Role::Custodian if obj.contains_key("custodianBackupShare") => {
            let inner = string(obj, role, "custodianBackupShare")?;
            parse_at(role, curve, inner.as_bytes(), depth + 1)
        }
        Role::Custodian if obj.contains_key("clientId") || obj.contains_key("share") => {
            custodian(obj)
        }
        Role::Custodian => Err(ShareError::NotShare(role)),
    }
}

fn client(obj: &Map<String, Value>) -> Result<Half, ShareError> {
    let role = Role::Client;
    let rank_zero = |path: &[&str], name| match lookup(obj, path) {
        None => Ok(()),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(()),
        Some(Value::String(s)) if s == "0" => Ok(()),
        Some(_) => Err(field(role, name, Problem::RankNotZero)),
    };
    rank_zero(&["bks", "client", "rank"], "bks.client.rank")?;
    rank_zero(&["bks", "server", "rank"], "bks.server.rank")?;
    Ok(Half {
        role,
        client_id: client_id(obj, role)?,
        curve: curve(obj, role)?,
        backup_share_pair_id: optional_string(obj, role, "backupSharePairId")?,
        scalar: decimal(obj, role, &["share"], "share")?,
        bks: Bks {
            client: *decimal(obj, role, &["bks", "client", "x"], "bks.client.x")?,
            server: *decimal(obj, role, &["bks", "server", "x"], "bks.server.x")?,
        },
        pubkey: Affine {
            x: *either(obj, role, &["pubkey", "x"], &["pubkey", "X"], "pubkey.x")?,
            y: *either(obj, role, &["pubkey", "y"], &["pubkey", "Y"], "pubkey.y")?,
        },
        partials: Partials {
            client: nested_point(obj, role, "client", CLIENT_PARTIAL)?,
            server: nested_point(obj, role, "server", SERVER_PARTIAL)?,
        },
    })
}

fn custodian(obj: &Map<String, Value>) -> Result<Half, ShareError> {
    let role = Role::Custodian;
    Ok(Half {
        role,
        client_id: client_id(obj, role)?,
        curve: curve(obj, role)?,
        backup_share_pair_id: optional_string(obj, role, "backupSharePairId")?,
        scalar: decimal(obj, role, &["share"], "share")?,
        bks: Bks {
            client: *decimal(obj, role, &["clientBk"], "clientBk")?,
            server: *decimal(obj, role, &["serverBk"], "serverBk")?,
        },
        pubkey: Affine {
            x: *decimal(obj, role, &["x"], "x")?,
            y: *decimal(obj, role, &["y"], "y")?,
        },
        partials: Partials {
            client: flat_point(obj, role, "clientPartialPubKey_x", "clientPartialPubKey_y")?,
            server: flat_point(obj, role, "serverPartialPubKey_x", "serverPartialPubKey_y")?,
        },
    })
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
