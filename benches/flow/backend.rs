//! The AWS side of the bench: rustack (the default; multi-threaded, as AWS's endpoints are to a
//! function) or moto (`BENCH_BACKEND=moto`; the tests' reference for behaviour, one Python
//! thread per server).

use devstack::keepalive::KeepAliveFront;

use crate::common::{Moto, Sim, function_env};

/// Which emulator serves DynamoDB and KMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rustack,
    Moto,
}

impl Kind {
    /// `BENCH_BACKEND`: `rustack` (default) or `moto`.
    pub fn from_env() -> Self {
        match std::env::var("BENCH_BACKEND").as_deref() {
            Ok("moto") => Kind::Moto,
            Ok("rustack") | Err(_) => Kind::Rustack,
            Ok(other) => panic!("BENCH_BACKEND={other}: rustack or moto"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Rustack => "rustack 0.12 (multi-threaded)",
            Kind::Moto => "moto (one thread per server)",
        }
    }
}

/// DynamoDB and KMS as the subjects see them.
pub struct Aws {
    pub kind: Kind,
    servers: Vec<Moto>,
    _fronts: Vec<KeepAliveFront>,
    pub dynamodb_url: String,
    pub kms_url: String,
    pub table: String,
    pub key_id: String,
}

impl Aws {
    pub async fn start(kind: Kind) -> Self {
        match kind {
            Kind::Rustack => {
                // One process serves both, on its own threads: no front, it keeps connections
                // alive itself.
                let server = Moto::rustack().await;
                Self {
                    kind,
                    dynamodb_url: server.endpoint.clone(),
                    kms_url: server.endpoint.clone(),
                    table: server.table.clone(),
                    key_id: server.key_id.clone(),
                    servers: vec![server],
                    _fronts: vec![],
                }
            }
            Kind::Moto => {
                // KMS and DynamoDB are separate services behind separate endpoints in AWS; in one
                // single-threaded moto each would wait for the other's calls. So KMS gets a moto
                // of its own, and each moto a keep-alive front (moto closes every connection).
                let (dynamodb, kms) = tokio::join!(Moto::start(), Moto::start());
                let dynamodb_front = KeepAliveFront::start(&dynamodb.endpoint).await;
                let kms_front = KeepAliveFront::start(&kms.endpoint).await;
                Self {
                    kind,
                    dynamodb_url: dynamodb_front.url.clone(),
                    kms_url: kms_front.url.clone(),
                    table: dynamodb.table.clone(),
                    key_id: kms.key_id.clone(),
                    servers: vec![dynamodb, kms],
                    _fronts: vec![dynamodb_front, kms_front],
                }
            }
        }
    }

    /// A function's environment: DynamoDB and KMS at their endpoints, the Portal simulator.
    pub fn env(&self, sim: &Sim) -> Vec<(String, String)> {
        let mut env = function_env(&self.servers[0], sim, "SELF_MANAGED");
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL" && k != "KMS_KEY_ID");
        env.extend([
            ("AWS_ENDPOINT_URL".into(), self.dynamodb_url.clone()),
            ("AWS_ENDPOINT_URL_KMS".into(), self.kms_url.clone()),
            ("KMS_KEY_ID".into(), self.key_id.clone()),
        ]);
        env
    }

    /// The server processes, named, for their CPU during a batch.
    pub fn processes(&self) -> Vec<(&'static str, Option<u32>)> {
        match self.kind {
            Kind::Rustack => vec![("rustack (DynamoDB and KMS)", self.servers[0].pid())],
            Kind::Moto => vec![
                ("moto DynamoDB (one thread)", self.servers[0].pid()),
                ("moto KMS (one thread)", self.servers[1].pid()),
            ],
        }
    }
}
