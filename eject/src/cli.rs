//! The command line, parsed by hand: a dozen flags do not need a parser crate, and a
//! break-glass tool is better with fewer crates to trust.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use portal_backup_eject::curve::Curve;
use portal_backup_eject::run::{Destination, HalfSource, Request};
use portal_backup_eject::stored::Stored;

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: portal-backup-eject --curve SECP256K1|ED25519
         ((--client-share PATH | --backup-table NAME)
          (--custodian-share PATH | --custody-table NAME) | --eject-answer PATH)
         [--client-id ID --backup-share-pair-id ID] [--client-profile NAME]
         [--custodian-profile NAME] [--region REGION] (--out PATH | --print-key)

Combines a Portal client backup share and custodian backup share into the wallet's private key,
proves it against the wallet's public key, and writes it alone on one line to a new file of mode
0600 (--out; an existing file is refused). Prints the wallet's public key and address.

  --curve SECP256K1|ED25519   the wallet's curve
  --client-share PATH         the client backup share: its JSON, the base64 of it, the
                              /v1/backup entry {\"share\", \"id\"} a stored backup opens to, or
                              the stored AWS Encryption SDK message (bytes or base64)
  --custodian-share PATH      the custodian backup share: its JSON, the base64 of it, or the
                              stored message
  --backup-table NAME         read the client half from the backup table instead
  --custody-table NAME        read the custodian half from the custody table instead
  --eject-answer PATH         both halves from the operator function's answer to a
                              Portal-managed eject (its JSON, as the action answered it)
  --client-id ID              Portal's client id      } a stored half opens only under its
  --backup-share-pair-id ID   the backup share pair   } exact context: both are required
  --client-profile NAME       the AWS profile that opens the client half (default: the
                              environment's credentials)
  --custodian-profile NAME    the AWS profile that opens the custodian half
  --region REGION             the AWS region of the tables and keys
  --out PATH                  the key file to create (mode 0600)
  --print-key                 print the key on standard output instead of writing a file
  -h, --help                  this text

Exit status: 0 the key was proven and handed over; 1 refused (nothing written); 2 usage.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// An eject.
    Eject(Box<Request>),
    /// The usage text.
    Help,
}

/// A command line that does not say what to do. One line.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program's name. Flags take their value as the next argument
/// or after `=`; each may be given once. `-h` or `--help` anywhere asks for the usage text.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut curve = None;
    let mut client_file = None;
    let mut custodian_file = None;
    let mut backup_table = None;
    let mut custody_table = None;
    let mut eject_answer: Option<PathBuf> = None;
    let mut stored = Stored::default();
    let mut out = None;
    let mut print_key = false;
    let args: Vec<OsString> = args.into_iter().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|_| usage("an argument is not valid UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            let v = match inline.clone() {
                Some(v) => OsString::from(v),
                None => args
                    .next()
                    .ok_or_else(|| usage(format!("{name} needs a value")))?,
            };
            v.into_string()
                .map_err(|_| usage(format!("{name}: not valid UTF-8")))
        };
        let name = flag.as_str();
        match name {
            "--curve" => {
                let parsed = Curve::parse(&value(name)?)
                    .ok_or_else(|| usage("--curve must be SECP256K1 or ED25519"))?;
                set(&mut curve, parsed, name)?;
            }
            "--client-share" => set(&mut client_file, PathBuf::from(value(name)?), name)?,
            "--custodian-share" => set(&mut custodian_file, PathBuf::from(value(name)?), name)?,
            "--backup-table" => set(&mut backup_table, value(name)?, name)?,
            "--custody-table" => set(&mut custody_table, value(name)?, name)?,
            "--eject-answer" => set(&mut eject_answer, PathBuf::from(value(name)?), name)?,
            "--client-id" => set(&mut stored.client_id, value(name)?, name)?,
            "--backup-share-pair-id" => set(&mut stored.backup_share_pair_id, value(name)?, name)?,
            "--client-profile" => set(&mut stored.client_profile, value(name)?, name)?,
            "--custodian-profile" => set(&mut stored.custodian_profile, value(name)?, name)?,
            "--region" => set(&mut stored.region, value(name)?, name)?,
            "--out" => set(&mut out, PathBuf::from(value(name)?), name)?,
            "--print-key" if inline.is_none() => {
                if print_key {
                    return Err(usage("--print-key is given twice"));
                }
                print_key = true;
            }
            "--print-key" => return Err(usage("--print-key takes no value")),
            other if other.starts_with('-') => {
                return Err(usage(format!("unknown option {other}")));
            }
            _ => return Err(usage("unexpected argument: every input is given by a flag")),
        }
    }
    let curve = curve.ok_or_else(|| usage("--curve is required"))?;
    let (client_share, custodian_share) = match eject_answer {
        Some(path) => {
            if client_file.is_some()
                || backup_table.is_some()
                || custodian_file.is_some()
                || custody_table.is_some()
            {
                return Err(usage(
                    "--eject-answer gives both halves: no other share or table",
                ));
            }
            (
                HalfSource::EjectAnswer(path.clone()),
                HalfSource::EjectAnswer(path),
            )
        }
        None => (
            source(
                client_file,
                backup_table,
                "--client-share",
                "--backup-table",
            )?,
            source(
                custodian_file,
                custody_table,
                "--custodian-share",
                "--custody-table",
            )?,
        ),
    };
    let reads_a_table = matches!(client_share, HalfSource::Table(_))
        || matches!(custodian_share, HalfSource::Table(_));
    if reads_a_table && (stored.client_id.is_none() || stored.backup_share_pair_id.is_none()) {
        return Err(usage(
            "reading a table needs --client-id and --backup-share-pair-id",
        ));
    }
    let out = match (out, print_key) {
        (Some(path), false) => Destination::File(path),
        (None, true) => Destination::Stdout,
        (Some(_), true) => return Err(usage("--out and --print-key exclude each other")),
        (None, false) => return Err(usage("--out is required (or --print-key)")),
    };
    Ok(Command::Eject(Box::new(Request {
        curve,
        client_share,
        custodian_share,
        stored,
        out,
    })))
}

/// A half's source: its file or its table, exactly one.
fn source(
    file: Option<PathBuf>,
    table: Option<String>,
    file_flag: &str,
    table_flag: &str,
) -> Result<HalfSource, UsageError> {
    match (file, table) {
        (Some(path), None) => Ok(HalfSource::File(path)),
        (None, Some(table)) => Ok(HalfSource::Table(table)),
        (Some(_), Some(_)) => Err(usage(format!(
            "{file_flag} and {table_flag} exclude each other"
        ))),
        (None, None) => Err(usage(format!("{file_flag} (or {table_flag}) is required"))),
    }
}

fn set<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), UsageError> {
    if slot.replace(value).is_some() {
        return Err(usage(format!("{name} is given twice")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn err(line: &str) -> String {
        parse(args(line)).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_command_line() {
        let cmd = parse(args(
            "--curve ed25519 --client-share c.json --custodian-share=s.json --out k.txt",
        ))
        .unwrap();
        assert_eq!(
            cmd,
            Command::Eject(Box::new(Request {
                curve: Curve::Ed25519,
                client_share: HalfSource::File("c.json".into()),
                custodian_share: HalfSource::File("s.json".into()),
                stored: Stored::default(),
                out: Destination::File("k.txt".into()),
            }))
        );
        let cmd = parse(args(
            "--curve SECP256K1 --backup-table b --custody-table=u --client-id c1 \
             --backup-share-pair-id p1 --client-profile alice --custodian-profile bob \
             --region eu-west-1 --out k",
        ))
        .unwrap();
        let Command::Eject(request) = cmd else {
            panic!("an eject")
        };
        assert_eq!(request.client_share, HalfSource::Table("b".into()));
        assert_eq!(request.custodian_share, HalfSource::Table("u".into()));
        assert_eq!(
            request.stored,
            Stored {
                client_id: Some("c1".into()),
                backup_share_pair_id: Some("p1".into()),
                client_profile: Some("alice".into()),
                custodian_profile: Some("bob".into()),
                region: Some("eu-west-1".into()),
            }
        );
        let cmd = parse(args(
            "--print-key --curve SECP256K1 --client-share c --custodian-share s",
        ));
        let Ok(Command::Eject(request)) = cmd else {
            panic!("an eject")
        };
        assert_eq!(request.out, Destination::Stdout);
        assert_eq!(parse(args("--curve x --help")).unwrap(), Command::Help);
    }

    #[test]
    fn refuses_bad_command_lines_in_one_line() {
        let base = "--curve SECP256K1 --client-share c --custodian-share s";
        assert_eq!(
            err("--curve P256"),
            "--curve must be SECP256K1 or ED25519 (see --help)"
        );
        assert_eq!(err(base), "--out is required (or --print-key) (see --help)");
        assert_eq!(
            err(&format!("{base} --out k --print-key")),
            "--out and --print-key exclude each other (see --help)"
        );
        assert_eq!(
            err(&format!("{base} --out k --out j")),
            "--out is given twice (see --help)"
        );
        assert_eq!(
            err(&format!("{base} --out")),
            "--out needs a value (see --help)"
        );
        assert_eq!(
            err(&format!("{base} --force")),
            "unknown option --force (see --help)"
        );
        assert_eq!(
            err(&format!("{base} --out k extra")),
            "unexpected argument: every input is given by a flag (see --help)"
        );
        assert_eq!(err("--client-share c"), "--curve is required (see --help)");
        assert_eq!(
            err("--curve SECP256K1 --eject-answer a.json --client-share c --out k"),
            "--eject-answer gives both halves: no other share or table (see --help)"
        );
        assert_eq!(
            err("--curve SECP256K1 --client-share c --backup-table b --custodian-share s --out k"),
            "--client-share and --backup-table exclude each other (see --help)"
        );
        assert_eq!(
            err("--curve SECP256K1 --client-share c --out k"),
            "--custodian-share (or --custody-table) is required (see --help)"
        );
        assert_eq!(
            err("--curve SECP256K1 --client-share c --custody-table u --out k"),
            "reading a table needs --client-id and --backup-share-pair-id (see --help)"
        );
        for e in [err(base), err("--curve P256")] {
            assert!(!e.contains('\n'));
        }
    }
}
