//! Runs the built `portal-backup` bootstrap under a local Lambda Runtime API and invokes it with
//! event files, as Lambda would (dev only).
//!
//! `local-invoke [--bootstrap PATH] [--timeout-secs N] EVENT.json…` — the function inherits this
//! process's environment (source `.stack/env` first). Each answer is printed as JSON on stdout;
//! the function's own logs go to stderr.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use portal_backup::runtime_api::{Answer, RuntimeApi, lambda_command};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("local-invoke: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args().skip(1);
    let mut bootstrap = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("portal-backup");
    let mut timeout = Duration::from_secs(60);
    let mut events = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bootstrap" => {
                bootstrap = PathBuf::from(args.next().ok_or("--bootstrap needs a path")?)
            }
            "--timeout-secs" => {
                let n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--timeout-secs needs a number")?;
                timeout = Duration::from_secs(n);
            }
            "-h" | "--help" => {
                println!("usage: local-invoke [--bootstrap PATH] [--timeout-secs N] EVENT.json...");
                return Ok(ExitCode::SUCCESS);
            }
            _ => events.push(PathBuf::from(arg)),
        }
    }
    if events.is_empty() {
        return Err("name at least one event file".into());
    }
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut child = lambda_command(&bootstrap, &api.endpoint())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bootstrap.display()))?;
    // The function logs JSON lines on stdout, as in Lambda; pass them to stderr.
    if let Some(out) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("  [function] {line}");
            }
        });
    }
    let mut failed = false;
    for path in events {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let payload: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
        let answer = api
            .invoke(&payload, timeout)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let (kind, value) = match answer {
            Answer::Response(v) => ("response", v),
            Answer::Error(v) => {
                failed = true;
                ("error", v)
            }
        };
        let shown = serde_json::json!({ "event": path.display().to_string(), kind: value });
        println!(
            "{}",
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        );
    }
    let _ = child.kill().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
