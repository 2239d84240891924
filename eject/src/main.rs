//! `portal-backup-eject`: the break-glass eject of a Portal MPC wallet (see docs/eject.md).
//! Every refusal is one line on standard error: exit 1 when the inputs are refused (nothing is
//! written), 2 when the command line is wrong. It never prints a share.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use portal_backup_eject::run::{Report, run};
use zeroize::Zeroizing;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Err(e) => {
            eprintln!("portal-backup-eject: {e}");
            ExitCode::from(2)
        }
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Eject(request)) => match run(&request) {
            Err(e) => {
                eprintln!("portal-backup-eject: {e}");
                ExitCode::from(1)
            }
            Ok(report) => print_report(report),
        },
    }
}

fn print_report(report: Report) -> ExitCode {
    let checked = match report.partials_checked.as_slice() {
        [] => "none carried partial public keys".to_owned(),
        roles => roles
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut text = Zeroizing::new(format!(
        "curve: {}\npublic key: {}\n{}\nproof: d·G equals the wallet's public key\npartial checks: {}\n",
        report.curve, report.public_key, report.address, checked
    ));
    if let Some(path) = &report.written_to {
        text.push_str(&format!("key: written to {} (mode 0600)\n", path.display()));
    }
    if let Some(key) = &report.key {
        text.push_str("private key: ");
        text.push_str(key);
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("portal-backup-eject: cannot write to standard output");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
