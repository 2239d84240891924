//! What the integration tests share: a moto server (or rustack, `Moto::rustack`), the Portal
//! simulator and the built function under a local Runtime API, each started by the test itself
//! and stopped when dropped.
#![allow(dead_code)]

pub mod checks;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_kms::config::Credentials;
use devstack::client::SimClient;
use devstack::runtime_api::{Answer, RuntimeApi, lambda_environment};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The sources the custody function answers in tests: Portal's documented webhook addresses, and
/// loopback (the local API Gateway calls from 127.0.0.1).
pub const WEBHOOK_SOURCES: &str =
    "127.0.0.0/8,35.203.150.117/32,104.155.171.139/32,35.185.20.23/32";

/// The project's single-threaded moto launcher (see `scripts/moto-server.py`).
fn moto_server() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto-server.py").to_owned()
}

/// rustack, as `scripts/lib.sh` installs it: `RUSTACK_BIN` (the test's build, which
/// `scripts/test` exports), else the bench's build in `.tools/bin`.
pub fn rustack_program() -> String {
    std::env::var("RUSTACK_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/rustack").to_owned())
}

/// The project's venv Python, for the independent decryptor.
pub fn venv_python() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn wait_for(port: u16, what: &str) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on port {port} within 15 s");
}

/// A moto server on its own port, with the two trust domains' keys and tables: the backup key and
/// table (client shares, checkpoints) and the custody key and table (custodian shares).
pub struct Moto {
    _child: Child,
    pub endpoint: String,
    pub sdk: SdkConfig,
    pub key_id: String,
    pub table: String,
    pub custody_key_id: String,
    pub custody_table: String,
}

impl Moto {
    /// Starts moto and provisions a key and a table as `scripts/stack` does.
    pub async fn start() -> Moto {
        let server = moto_server();
        // Port 0: moto binds a free port itself and prints it, so concurrent tests never race for
        // a port between choosing it and binding it.
        let mut child = Command::new(venv_python())
            .args([server.as_str(), "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {server} ({e}): run scripts/test, which installs moto into .venv"
                )
            });
        let stdout = child.stdout.take().expect("moto's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("moto announced its port within 30 s")
            .expect("read moto's stdout")
            .expect("moto printed its port");
        let port: u16 = line.trim().parse().expect("moto's port");
        // Keep reading, so that anything moto prints later never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        wait_for(port, "moto").await;
        Self::provision(child, format!("http://127.0.0.1:{port}")).await
    }

    /// Starts rustack (`.tools/bin/rustack`, installed by `scripts/test` and `scripts/bench`): an
    /// AWS-like, multi-threaded emulator of DynamoDB, KMS and SQS, in place of moto, provisioned
    /// alike. moto stays the reference for behaviour; rustack is how AWS's concurrency looks.
    pub async fn rustack() -> Moto {
        let program = rustack_program();
        let port = free_port();
        let child = Command::new(&program)
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SERVICES", "dynamodb,kms,sqs")
            .env("LOG_LEVEL", "error")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}): run scripts/test, which installs rustack into .tools")
            });
        wait_for(port, "rustack").await;
        Self::provision(child, format!("http://127.0.0.1:{port}")).await
    }

    /// Creates the two keys and the two tables on a fresh server.
    async fn provision(child: Child, endpoint: String) -> Moto {
        let sdk = sdk_config(&endpoint).await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let create_key = || async {
            kms.create_key()
                .send()
                .await
                .expect("create key")
                .key_metadata
                .expect("metadata")
                .arn
                .expect("arn")
        };
        let (key_id, custody_key_id) = (create_key().await, create_key().await);
        let (table, custody_table) = ("portal-backup-test", "portal-backup-custody-test");
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        create_table(&ddb, table).await;
        create_table(&ddb, custody_table).await;
        Moto {
            _child: child,
            endpoint,
            sdk,
            key_id,
            table: table.to_owned(),
            custody_key_id,
            custody_table: custody_table.to_owned(),
        }
    }

    pub fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk)
    }

    /// A new KMS key on this server (beside the stack's two): its ARN.
    pub async fn new_key(&self) -> String {
        self.kms()
            .create_key()
            .send()
            .await
            .expect("create key")
            .key_metadata
            .expect("metadata")
            .arn
            .expect("arn")
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// An item of the table by its keys (consistent read), if any.
    pub async fn item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        self.dynamodb()
            .get_item()
            .table_name(&self.table)
            .key("pk", S(pk.to_owned()))
            .key("sk", S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }

    /// A stored share item (consistent read), if any.
    pub async fn share_item(
        &self,
        client: &str,
        pair_id: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.item(&format!("CLIENT#{client}"), &format!("SHARE#{pair_id}"))
            .await
    }

    /// The moto server's process id (for the benchmark's CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self._child.id()
    }

    /// Environment for the backup function (or any process) that talks to this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.push(("KMS_KEY_ID".into(), self.key_id.clone()));
        env.push(("BACKUP_TABLE_NAME".into(), self.table.clone()));
        env
    }

    /// Environment for the custody function: its own key and table, nothing of the backup's.
    /// The webhook secret is the caller's to add.
    pub fn custody_env(&self) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.push(("FUNCTION_ROLE".into(), "custody".into()));
        env.push(("CUSTODY_KMS_KEY_ID".into(), self.custody_key_id.clone()));
        env.push(("CUSTODY_TABLE_NAME".into(), self.custody_table.clone()));
        // Portal's documented addresses, and loopback for the local API Gateway.
        env.push(("WEBHOOK_SOURCE_CIDRS".into(), WEBHOOK_SOURCES.into()));
        // The backup table's public attributes, for the custody drill's comparison.
        env.push(("PUBLIC_VALUES_TABLE_NAME".into(), self.table.clone()));
        env
    }

    fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Every item of `table` (a scan: the tables of a test hold a few dozen).
    pub async fn items(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb()
            .scan()
            .table_name(table)
            .send()
            .await
            .expect("Scan")
            .items
            .unwrap_or_default()
    }
}

/// SDK configuration for a local endpoint with static test credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

/// The table layout the function expects (and template.yaml declares): string `pk` and `sk`.
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attr")
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("key")
    };
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
}

/// The Portal simulator on its own port, driven by devstack's typed client.
pub struct Sim {
    pub url: String,
    pub http: reqwest::Client,
    pub client: SimClient,
}

impl Sim {
    /// The simulator in this process, on a thread of its own (see `devstack::sim::spawn`).
    pub async fn start() -> Sim {
        let addr = devstack::sim::spawn(devstack::sim::SimOptions::default())
            .expect("start the Portal simulator");
        let url = format!("http://{addr}");
        let client = SimClient::new(&url);
        Sim {
            http: client.http().clone(),
            url,
            client,
        }
    }

    pub async fn admin(&self, path: &str, body: Value) {
        self.client.admin(path, &body).await.expect("admin call");
    }

    /// Fails the next `count` calls of `route` with `status`.
    pub async fn fault(&self, route: &str, count: u32, status: u16) {
        self.client
            .fault(route, count, status)
            .await
            .expect("fault");
    }

    pub async fn register(&self, api_key: &str, client_id: &str) {
        self.client
            .register(api_key, client_id)
            .await
            .expect("register");
    }

    pub async fn state(&self) -> Value {
        self.client.state().await.expect("state")
    }

    pub async fn pair(&self, id: &str) -> Value {
        self.client.pair(id).await.expect("pair")
    }

    pub async fn calls(&self, route: &str) -> u64 {
        self.client.calls(route).await.expect("calls")
    }

    /// A fresh generate response (signing shares) for a registered client.
    pub async fn generate(&self, api_key: &str) -> Value {
        self.client.generate(api_key).await.expect("generate")
    }

    /// A registered client with its generate response: (client id, api key, generate response).
    pub async fn new_client(&self, n: usize) -> (String, String, Value) {
        let (client, key) = (format!("client-{n}"), format!("key-{n}-{}", free_port()));
        self.register(&key, &client).await;
        let generate = self.generate(&key).await;
        (client, key, generate)
    }
}

/// The built `portal-backup` bootstrap under a local Runtime API, with its logs captured.
pub struct Function {
    api: RuntimeApi,
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl Function {
    pub async fn start(env: &[(String, String)]) -> Function {
        Self::start_program(env!("CARGO_BIN_EXE_portal-backup"), &[], env).await
    }

    /// Starts any Lambda bootstrap (`program args…`) under its own Runtime API: the benchmark's
    /// peer functions run exactly as this one does.
    pub async fn start_program(program: &str, args: &[&str], env: &[(String, String)]) -> Function {
        let api = RuntimeApi::start().await.expect("runtime api");
        // Only what Lambda would set, plus the test's own settings: nothing leaks in from the shell.
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(lambda_environment(&api.endpoint()))
            .env("RUST_LOG", "trace")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bootstrap");
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Function { api, child, logs }
    }

    pub async fn invoke(&self, payload: &Value) -> Answer {
        match self.api.invoke(payload, Duration::from_secs(60)).await {
            Ok(answer) => answer,
            Err(e) => panic!(
                "the function did not answer ({e}); its output:\n{}",
                self.logs()
            ),
        }
    }

    /// Invokes with `payload` and returns the function's response; panics, with its output, if
    /// the invocation failed (`what` names it).
    pub async fn respond(&self, payload: &Value, what: &str) -> Value {
        match self.invoke(payload).await {
            Answer::Response(v) => v,
            _ => panic!("{what} failed: {}", self.logs()),
        }
    }

    /// Invokes with a deadline of `deadline` from now; `None` if no answer came in that time.
    pub async fn invoke_within(&self, payload: &Value, deadline: Duration) -> Option<Answer> {
        self.api.invoke(payload, deadline).await.ok()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// When the function first asked for an invocation (its init was then complete).
    pub fn first_poll(&self) -> Option<std::time::Instant> {
        self.api.first_poll()
    }

    /// Kills the process now (SIGKILL), from anywhere, as a crash or a Lambda timeout would.
    pub fn kill_now(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }

    /// Kills the process, as a crash or a Lambda timeout would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}

/// Backup function environment for a stack of moto and the simulator. Input in the clear is
/// allowed here (the tests of sealed input set `REQUIRE_SEALED_INPUT=true`, the default).
pub fn function_env(moto: &Moto, sim: &Sim, mode: &str) -> Vec<(String, String)> {
    let mut env = moto.env();
    env.push(("BACKUP_MODE".into(), mode.into()));
    env.push(("REQUIRE_SEALED_INPUT".into(), "false".into()));
    env.push(("PORTAL_MPC_URL".into(), sim.url.clone()));
    env.push(("PORTAL_API_URL".into(), sim.url.clone()));
    env
}

/// The operator function's environment: the backup function's, as `FUNCTION_ROLE=operator` (the
/// same table and key under a role of its own; operator actions only).
pub fn operator_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "FUNCTION_ROLE")
        .cloned()
        .collect();
    env.push(("FUNCTION_ROLE".into(), "operator".into()));
    env
}

/// An SQS event with one record per (message id, body).
pub fn sqs_event(records: &[(String, String)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                   "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                   "md5OfBody": "", "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:portal-backup", "awsRegion": "us-east-1"})
        })
        .collect();
    json!({ "Records": records })
}

/// A message body for a client.
pub fn message(client: &str, key: &str, generate: &Value, mode: Option<&str>) -> String {
    let mut body = json!({"clientId": client, "clientApiKey": key, "generateResponse": generate});
    if let Some(mode) = mode {
        body["backupMode"] = json!(mode);
    }
    body.to_string()
}

/// Decrypts with an independent Python implementation: the Python AWS Encryption SDK for an ESDK
/// message, boto3 + cryptography for a `pbe1` string (`pbtool.py decrypt`).
pub fn python_decrypt(
    endpoint: &str,
    ciphertext: &str,
    context: &Value,
) -> Result<Vec<u8>, String> {
    let out = std::process::Command::new(venv_python())
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pbtool.py"),
            "decrypt",
            "--endpoint",
            endpoint,
            "--context",
            &context.to_string(),
            ciphertext,
        ])
        .output()
        .expect("run python decryptor");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The failed ids of an SQS answer, sorted.
pub fn failed_ids(answer: &Answer) -> Vec<String> {
    let Answer::Response(v) = answer else {
        panic!("function error: {answer:?}")
    };
    let mut ids: Vec<String> = v["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// The payload a producer seals when the API key must not travel in the clear:
/// `{"clientApiKey", "generateResponse"}`, sealed for `client` with moto's key.
pub fn sealed_with_key(moto: &Moto, client: &str, key: &str, generate: &Value) -> String {
    python_seal(
        &moto.endpoint,
        &moto.key_id,
        client,
        &json!({"clientApiKey": key, "generateResponse": generate}),
    )
}

/// Seals a generate response for `client` with the Python producer helper (`pbtool.py seal`), as
/// an AWS Encryption SDK message.
pub fn python_seal(endpoint: &str, key_id: &str, client: &str, generate: &Value) -> String {
    python_seal_as(endpoint, key_id, client, generate, "aws-esdk")
}

/// As `python_seal`, in `format` (`aws-esdk` or `pbe1`).
pub fn python_seal_as(
    endpoint: &str,
    key_id: &str,
    client: &str,
    generate: &Value,
    format: &str,
) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(venv_python())
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pbtool.py"),
            "seal",
            "--endpoint",
            endpoint,
            "--key-id",
            key_id,
            "--client-id",
            client,
            "--format",
            format,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python sealer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(generate.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("sealer output");
    assert!(out.status.success(), "pbtool.py seal failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Portal's webhooks as the simulator reaches them: the custody function (its own key and table)
/// behind a local API Gateway, its secret in moto's Secrets Manager, and the simulator's
/// self-managed custody pointed at it.
pub struct Webhooks {
    pub function: Arc<Function>,
    /// The gateway's base URL (`http://127.0.0.1:port`).
    pub gateway: String,
    /// The secret's ARN.
    pub secret_arn: String,
    pub secret: String,
}

impl Webhooks {
    /// Creates the secret, starts the custody function with its own environment plus
    /// `WEBHOOK_SECRET_ARN`, and points the simulator at it with the same secret.
    pub async fn start(moto: &Moto, sim: &Sim) -> Webhooks {
        let secret = format!("whsec-{}-0123456789abcdefghijklmnopqrstuv", free_port());
        let secret_arn = aws_sdk_secretsmanager::Client::new(&moto.sdk)
            .create_secret()
            .name(format!("portal-backup-webhook-{}", free_port()))
            .secret_string(&secret)
            .send()
            .await
            .expect("create secret")
            .arn
            .expect("arn");
        let mut env = moto.custody_env();
        env.push(("WEBHOOK_SECRET_ARN".into(), secret_arn.clone()));
        // Read again every second, so a test sees a rotation at once.
        env.push(("WEBHOOK_SECRET_REFRESH_SECONDS".into(), "1".into()));
        let function = Arc::new(Function::start(&env).await);
        let behind = function.clone();
        let addr = devstack::apigw::start(move |event: Value| {
            let f = behind.clone();
            async move { f.invoke_within(&event, Duration::from_secs(29)).await }
        })
        .await
        .expect("api gateway");
        let hooks = Webhooks {
            function,
            gateway: format!("http://{addr}"),
            secret_arn,
            secret,
        };
        hooks.point(sim, &hooks.secret.clone()).await;
        hooks
    }

    /// Points the simulator's self-managed custody at the gateway, sending `secret`.
    pub async fn point(&self, sim: &Sim, secret: &str) {
        let url = format!("{}/webhook", self.gateway);
        sim.admin("webhook", json!({"url": url, "secret": secret}))
            .await;
    }
}
