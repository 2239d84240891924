//! One eject, start to end: read both halves, check each against public values where it carries
//! them, combine and prove the key, hand it over. Nothing is written unless the key is proven.

use std::path::PathBuf;

use thiserror::Error;
use zeroize::Zeroizing;

use portal_shares::check::partial_checks;
use portal_shares::curve::Curve;
use portal_shares::share::{Half, Role, ShareError, parse};

use crate::combine::{CombineError, combine};
use crate::input::{InputError, Source};
use crate::output::{Address, OutputError, address, key_text, public_key_hex, write_key_file};
use crate::stored::Stored;

/// Where the key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A new file, mode 0600.
    File(PathBuf),
    /// Standard output: only when asked for by name (`--print-key`).
    Stdout,
}

/// Where a half comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HalfSource {
    /// A file: the plaintext share, or a stored message.
    File(PathBuf),
    /// The table the function stored it in (the backup table for the client half, the custody
    /// table for the custodian half).
    Table(String),
    /// The operator function's answer to a Portal-managed `eject` (both halves, sealed).
    EjectAnswer(PathBuf),
}

/// What to eject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The wallet's curve.
    pub curve: Curve,
    /// The client backup share.
    pub client_share: HalfSource,
    /// The custodian backup share.
    pub custodian_share: HalfSource,
    /// Which backup stored halves belong to, and whose credentials open them.
    pub stored: Stored,
    /// Where the key goes.
    pub out: Destination,
}

/// What an eject did: public values, and the key only when it goes to standard output.
pub struct Report {
    /// The wallet's curve.
    pub curve: Curve,
    /// The wallet's public key, hex.
    pub public_key: String,
    /// The wallet's address.
    pub address: Address,
    /// The halves checked against their partial public keys (halves without them are not).
    pub partials_checked: Vec<Role>,
    /// The key file written.
    pub written_to: Option<PathBuf>,
    /// The key, for standard output; wiped when dropped.
    pub key: Option<Zeroizing<String>>,
}

/// Why an eject refused. One line; never a share.
#[derive(Debug, Error)]
pub enum Refusal {
    /// A share file gave no plaintext.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A half did not parse.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The halves did not combine to the wallet's key.
    #[error(transparent)]
    Combine(#[from] CombineError),
    /// The key file was not written.
    #[error(transparent)]
    Output(#[from] OutputError),
}

fn load(role: Role, curve: Curve, from: &HalfSource, stored: &Stored) -> Result<Half, Refusal> {
    let plaintext = match from {
        HalfSource::File(path) => match Source::read(role, path)? {
            Source::Plaintext(bytes) => bytes,
            Source::EsdkMessage(message) => crate::stored::open(role, curve, &message, stored)?,
            Source::Pbe1 => return Err(InputError::Pbe1NotSupported(role).into()),
        },
        HalfSource::Table(table) => {
            let message = crate::stored::fetch(role, table, stored)?;
            crate::stored::open(role, curve, &message, stored)?
        }
        HalfSource::EjectAnswer(path) => crate::stored::from_answer(role, curve, path, stored)?,
    };
    Ok(parse(role, curve, &plaintext)?)
}

/// Runs one eject.
pub fn run(request: &Request) -> Result<Report, Refusal> {
    let curve = request.curve;
    let client = load(Role::Client, curve, &request.client_share, &request.stored)?;
    let custodian = load(
        Role::Custodian,
        curve,
        &request.custodian_share,
        &request.stored,
    )?;
    let mut partials_checked = Vec::new();
    for half in [&client, &custodian] {
        if half.partials.client.is_some() || half.partials.server.is_some() {
            partial_checks(curve, half).map_err(CombineError::from)?;
            partials_checked.push(half.role);
        }
    }
    let ejected = combine(curve, &client, &custodian)?;
    drop((client, custodian));
    let key = key_text(&ejected);
    let mut report = Report {
        curve,
        public_key: public_key_hex(&ejected),
        address: address(&ejected),
        partials_checked,
        written_to: None,
        key: None,
    };
    match &request.out {
        Destination::File(path) => {
            write_key_file(path, &key)?;
            report.written_to = Some(path.clone());
        }
        Destination::Stdout => report.key = Some(key),
    }
    Ok(report)
}
