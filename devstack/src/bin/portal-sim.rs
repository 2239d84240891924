//! `portal-sim`: runs the Portal API simulator (see `devstack::sim`) on a local port.
//!
//! Usage: `portal-sim [--addr 127.0.0.1:0] [--latency-ms N] [--no-demo] [--print-demo-generate]`.
//! After binding it prints exactly one line to stdout, `portal-sim listening on http://ADDR`,
//! then logs one line per request (method, path, status) to stderr.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use devstack::sim::{self, SimOptions};

const USAGE: &str =
    "usage: portal-sim [--addr 127.0.0.1:0] [--latency-ms N] [--no-demo] [--print-demo-generate]";

/// Parsed command line.
struct Args {
    addr: SocketAddr,
    options: SimOptions,
    print_demo_generate: bool,
}

/// Parses the command line (without the program name).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        options: SimOptions::default(),
        print_demo_generate: false,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "--addr" => {
                let text = value("an address such as 127.0.0.1:5060")?;
                parsed.addr = text
                    .parse()
                    .map_err(|e| format!("invalid --addr {text:?}: {e}"))?;
            }
            "--latency-ms" => {
                let text = value("a number of milliseconds")?;
                let ms: u64 = text
                    .parse()
                    .map_err(|e| format!("invalid --latency-ms {text:?}: {e}"))?;
                parsed.options.latency = Duration::from_millis(ms);
            }
            "--no-demo" => parsed.options.demo = false,
            "--print-demo-generate" => parsed.print_demo_generate = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("portal-sim: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    if args.print_demo_generate {
        println!("{}", sim::demo_generate_response());
        return ExitCode::SUCCESS;
    }

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();

    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("portal-sim: cannot bind {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            eprintln!("portal-sim: cannot read the bound address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "portal-sim listening on http://{local}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("portal-sim: cannot write to stdout");
        return ExitCode::FAILURE;
    }
    drop(stdout);

    match sim::serve(listener, args.options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portal-sim: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_flags() {
        let args = parse(&["--addr", "127.0.0.1:5060", "--latency-ms=25", "--no-demo"]).unwrap();
        assert_eq!(args.addr, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(args.options.latency, Duration::from_millis(25));
        assert!(!args.options.demo);
        assert!(!args.print_demo_generate);

        let args = parse(&[]).unwrap();
        assert_eq!(args.addr.port(), 0);
        assert!(args.options.demo);
        assert!(
            parse(&["--print-demo-generate"])
                .unwrap()
                .print_demo_generate
        );
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(&["--addr"]).is_err());
        assert!(parse(&["--latency-ms", "soon"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }
}
