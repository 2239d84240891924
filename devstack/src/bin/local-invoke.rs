//! Runs the built `portal-backup` bootstrap under a local Lambda Runtime API and invokes it with
//! event files, as Lambda would (dev only).
//!
//! `local-invoke [--bootstrap PATH] [--timeout-secs N] EVENT.json…` invokes with each event;
//! `local-invoke --queue URL` drains an SQS queue through the function as Lambda's SQS trigger
//! does (receive, invoke, delete the successes; failures reappear and, past `maxReceiveCount`,
//! move to the DLQ); `local-invoke --gateway ADDR` serves a local API Gateway on ADDR in front of
//! the function (HTTP API 2.0 events), as the local stack does for Portal's webhooks. The function
//! inherits this process's environment (source `.stack/env`
//! first). Answers are printed as JSON on stdout; the function's own logs go to stderr.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devstack::poller::{Queues, poll_once};
use devstack::runtime_api::{Answer, RuntimeApi, lambda_command};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How many of the function's last log lines are shown when it dies.
const RECENT_LINES: usize = 20;

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
    let mut queue = None;
    let mut gateway: Option<std::net::SocketAddr> = None;
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
            "--queue" => queue = Some(args.next().ok_or("--queue needs a queue URL")?),
            "--gateway" => {
                let addr = args.next().ok_or("--gateway needs an address")?;
                gateway = Some(
                    addr.parse()
                        .map_err(|_| format!("--gateway {addr}: not HOST:PORT"))?,
                );
            }
            "-h" | "--help" => {
                println!(
                    "usage: local-invoke [--bootstrap PATH] [--timeout-secs N] (EVENT.json... | --queue URL | --gateway HOST:PORT)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            _ => events.push(PathBuf::from(arg)),
        }
    }
    if events.is_empty() && queue.is_none() && gateway.is_none() {
        return Err("name at least one event file, --queue URL or --gateway HOST:PORT".into());
    }
    let api = Arc::new(RuntimeApi::start().await.map_err(|e| e.to_string())?);
    let mut child = lambda_command(&bootstrap, &api.endpoint())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bootstrap.display()))?;
    // The function logs JSON lines on stdout, as in Lambda; pass them to stderr, keeping the
    // last few to show if the function dies.
    let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_LINES)));
    let reader = child.stdout.take().map(|out| {
        let recent = recent.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("  [function] {line}");
                if let Ok(mut recent) = recent.lock() {
                    if recent.len() == RECENT_LINES {
                        recent.pop_front();
                    }
                    recent.push_back(line);
                }
            }
        })
    });
    // Stop as soon as the function exits: no invocation could be answered any more.
    let result = tokio::select! {
        result = serve(api.clone(), queue, gateway, events, timeout) => result,
        status = child.wait() => {
            // Let the reader take the function's last lines before they are shown.
            if let Some(reader) = reader {
                let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
            }
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            let shown: Vec<String> = recent.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
            eprintln!("local-invoke: the function exited ({status}) before answering; its last log lines:");
            for line in shown {
                eprintln!("  {line}");
            }
            Err("the function is not running (did you `source .stack/env`?)".to_owned())
        }
    };
    let _ = child.kill().await;
    result
}

/// Runs the gateway, drains the queue or invokes with each event, as the arguments ask.
async fn serve(
    api: Arc<RuntimeApi>,
    queue: Option<String>,
    gateway: Option<std::net::SocketAddr>,
    events: Vec<PathBuf>,
    timeout: Duration,
) -> Result<ExitCode, String> {
    if let Some(addr) = gateway {
        let behind = api.clone();
        let bound = devstack::apigw::start_on(addr, move |event: serde_json::Value| {
            let api = behind.clone();
            async move { api.invoke(&event, timeout).await.ok() }
        })
        .await
        .map_err(|e| format!("--gateway {addr}: {e}"))?;
        eprintln!("local API Gateway on http://{bound}, in front of the function; Ctrl-C stops it");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    if let Some(url) = queue {
        drain(&api, &url, timeout).await?;
    }
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
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Polls the queue until it is empty, printing one line per batch and the DLQ's depth at the end.
async fn drain(api: &RuntimeApi, url: &str, timeout: Duration) -> Result<(), String> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let q = Queues::open(&sdk, url)
        .await
        .map_err(|e| format!("queue {url}: {e}"))?;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        if q.depth(&q.url).await.map_err(|e| e.to_string())? == 0 {
            break;
        }
        let poll = poll_once(&q, 10, |event| async move {
            api.invoke(&event, timeout).await.ok()
        })
        .await
        .map_err(|e| e.to_string())?;
        if poll.received > 0 {
            let line = serde_json::json!({"batch": {"received": poll.received, "deleted": poll.deleted,
                "failedBackToQueue": poll.failed, "invocationFailed": poll.invocation_failed}});
            println!("{line}");
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // A receive is what moves an exhausted message to the DLQ; one more makes the count settle.
    let _ = poll_once(&q, 10, |event| async move {
        api.invoke(&event, timeout).await.ok()
    })
    .await;
    let dead = q.depth(&q.dlq_url).await.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({"queueDrained": true, "messagesInDlq": dead})
    );
    Ok(())
}
