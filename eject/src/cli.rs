//! The command line, parsed by hand: five flags do not need a parser crate, and an offline
//! break-glass tool is better with fewer crates to trust.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use portal_backup_eject::curve::Curve;
use portal_backup_eject::run::{Destination, Request};

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: portal-backup-eject --curve SECP256K1|ED25519 --client-share PATH --custodian-share PATH \
(--out PATH | --print-key)

Combines a Portal client backup share and custodian backup share into the wallet's private key,
proves it against the wallet's public key, and writes it alone on one line to a new file of mode
0600 (--out; an existing file is refused). Prints the wallet's public key and address.

  --curve SECP256K1|ED25519   the wallet's curve
  --client-share PATH         the client backup share: its JSON, the base64 of it, or the
                              /v1/backup entry {\"share\", \"id\"} a stored backup opens to
  --custodian-share PATH      the custodian backup share: its JSON, or the base64 of it
  --out PATH                  the key file to create (mode 0600)
  --print-key                 print the key on standard output instead of writing a file
  -h, --help                  this text

Exit status: 0 the key was proven and handed over; 1 refused (nothing written); 2 usage.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// An eject.
    Eject(Request),
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
    let mut client = None;
    let mut custodian = None;
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
        let mut value = |name: &str| -> Result<OsString, UsageError> {
            match inline.clone() {
                Some(v) => Ok(OsString::from(v)),
                None => args
                    .next()
                    .ok_or_else(|| usage(format!("{name} needs a value"))),
            }
        };
        match flag.as_str() {
            "--curve" => {
                let v = value("--curve")?;
                let parsed = v
                    .to_str()
                    .and_then(Curve::parse)
                    .ok_or_else(|| usage("--curve must be SECP256K1 or ED25519"))?;
                set(&mut curve, parsed, "--curve")?;
            }
            "--client-share" => set(
                &mut client,
                PathBuf::from(value("--client-share")?),
                "--client-share",
            )?,
            "--custodian-share" => set(
                &mut custodian,
                PathBuf::from(value("--custodian-share")?),
                "--custodian-share",
            )?,
            "--out" => set(&mut out, PathBuf::from(value("--out")?), "--out")?,
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
    let client_share = client.ok_or_else(|| usage("--client-share is required"))?;
    let custodian_share = custodian.ok_or_else(|| usage("--custodian-share is required"))?;
    let out = match (out, print_key) {
        (Some(path), false) => Destination::File(path),
        (None, true) => Destination::Stdout,
        (Some(_), true) => return Err(usage("--out and --print-key exclude each other")),
        (None, false) => return Err(usage("--out is required (or --print-key)")),
    };
    Ok(Command::Eject(Request {
        curve,
        client_share,
        custodian_share,
        out,
    }))
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
            Command::Eject(Request {
                curve: Curve::Ed25519,
                client_share: "c.json".into(),
                custodian_share: "s.json".into(),
                out: Destination::File("k.txt".into()),
            })
        );
        let cmd = parse(args(
            "--print-key --curve SECP256K1 --client-share c --custodian-share s",
        ));
        assert!(matches!(
            cmd,
            Ok(Command::Eject(Request {
                out: Destination::Stdout,
                ..
            }))
        ));
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
        for e in [err(base), err("--curve P256")] {
            assert!(!e.contains('\n'));
        }
    }
}
