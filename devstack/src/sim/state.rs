//! In-memory state of the Portal simulator: clients, share pairs, call counters, faults, knobs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use serde_json::{Map, Value, json};

pub(crate) use super::basics::{Curve, SimError, new_id};
use super::keys::Wallet;
use super::rate::{Api, Limit};
use super::time::rfc3339;
use super::webhook::WebhookTarget;
use super::{DEMO_API_KEY, DEMO_CLIENT_ID, DEMO_CUSTODIAN_API_KEY, SimOptions};

/// Key under which a curve appears in a curve-keyed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseForm {
    /// `SECP256K1` / `ED25519` (Portal's reference).
    Upper,
    /// `secp256k1` / `ed25519` (older schema).
    Lower,
    /// `secp256k1Share` / `ed25519Share` (the seed guide).
    Seed,
}

impl ResponseForm {
    /// Parses the admin API's name of a form.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "upper" => Some(Self::Upper),
            "lower" => Some(Self::Lower),
            "seed" => Some(Self::Seed),
            _ => None,
        }
    }

    /// JSON key of `curve` in this form.
    pub(crate) fn key(self, curve: Curve) -> &'static str {
        match (self, curve) {
            (Self::Upper, Curve::Secp256k1) => "SECP256K1",
            (Self::Upper, Curve::Ed25519) => "ED25519",
            (Self::Lower, Curve::Secp256k1) => "secp256k1",
            (Self::Lower, Curve::Ed25519) => "ed25519",
            (Self::Seed, Curve::Secp256k1) => "secp256k1Share",
            (Self::Seed, Curve::Ed25519) => "ed25519Share",
        }
    }
}

/// Builds a curve-keyed response `{KEY: {"share", "id"}, …}` from `(id, share)` per curve.
pub(crate) fn curve_keyed(form: ResponseForm, issued: &[Issued; 2]) -> Value {
    let mut map = Map::new();
    for curve in Curve::ALL {
        let item = &issued[curve.index()];
        map.insert(
            form.key(curve).to_owned(),
            json!({"share": item.share, "id": item.id}),
        );
    }
    Value::Object(map)
}

/// Whether a pair holds signing shares or backup shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A signing share pair (from generate or recover).
    Signing,
    /// A backup share pair (from backup).
    Backup,
}

/// The routes whose calls are counted and can be faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    /// `POST /v1/generate`.
    Generate,
    /// `POST /v1/backup`.
    Backup,
    /// `POST /v1/recover`.
    Recover,
    /// `PATCH|POST /api/v3/clients/me/backup-share-pairs/{id}`.
    StoreCipherText,
    /// `GET /api/v3/clients/me/backup-share-pairs/{id}/cipher-text`.
    GetCipherText,
    /// `PATCH /api/v3/clients/me/backup-share-pairs`.
    MarkStored,
    /// `GET /api/v3/clients/me`.
    Me,
    /// `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject`.
    EnableEject,
    /// `GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares`.
    EjectableShares,
    /// `PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject`.
    CompleteEject,
}

impl Route {
    /// Every route.
    pub(crate) const ALL: [Route; 10] = [
        Route::Generate,
        Route::Backup,
        Route::Recover,
        Route::StoreCipherText,
        Route::GetCipherText,
        Route::MarkStored,
        Route::Me,
        Route::EnableEject,
        Route::EjectableShares,
        Route::CompleteEject,
    ];

    /// The admin API's name of the route.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Generate => "generate",
            Route::Backup => "backup",
            Route::Recover => "recover",
            Route::StoreCipherText => "store-cipher-text",
            Route::GetCipherText => "get-cipher-text",
            Route::MarkStored => "mark-stored",
            Route::Me => "me",
            Route::EnableEject => "enable-eject",
            Route::EjectableShares => "ejectable-backup-shares",
            Route::CompleteEject => "complete-eject",
        }
    }

    /// Parses the admin API's name of a route.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The API whose rate limit the route counts against.
    pub(crate) fn api(self) -> Api {
        match self {
            Route::Generate | Route::Backup | Route::Recover => Api::Mpc,
            _ => Api::Client,
        }
    }
}

/// A share pair known to the simulator.
#[derive(Clone, Debug)]
pub(crate) struct Pair {
    /// Share pair id.
    pub id: String,
    /// Owning client.
    pub client_id: String,
    /// Curve of the pair.
    pub curve: Curve,
    /// Signing or backup.
    pub kind: Kind,
    /// `completed` or `incomplete`.
    pub status: &'static str,
    /// `CUSTOM` for backup pairs.
    pub backup_method: Option<&'static str>,
    /// Client cipher text stored with Portal, if any.
    pub client_cipher_text: Option<String>,
    /// For a backup pair: the signing pair it backs up.
    pub signing_share_pair_id: Option<String>,
    /// Creation time.
    pub created_at: SystemTime,
    /// The share the simulator issued for this pair (base64 JSON).
    pub share: String,
    /// The wallet (shared by all pairs of one wallet).
    pub wallet: Arc<Wallet>,
    /// For a backup pair: the custodian backup share of the same split (flat JSON text).
    pub custodian_share: Option<String>,
}

impl Pair {
    /// The pair as the admin API shows it.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "clientId": self.client_id,
            "curve": self.curve.as_str(),
            "kind": match self.kind { Kind::Signing => "signing", Kind::Backup => "backup" },
            "status": self.status,
            "backupMethod": self.backup_method,
            "clientCipherText": self.client_cipher_text,
            "signingSharePairId": self.signing_share_pair_id,
            "createdAt": rfc3339(self.created_at),
            "walletId": self.wallet.id,
            "publicKey": self.wallet.public.public_key,
            "address": self.wallet.public.address.as_str(),
        })
    }

    /// Builds a new signing pair of `wallet` holding `share`.
    fn signing(
        id: String,
        client_id: &str,
        wallet: Arc<Wallet>,
        created_at: SystemTime,
        share: String,
    ) -> Self {
        Self {
            id,
            client_id: client_id.to_owned(),
            curve: wallet.curve,
            kind: Kind::Signing,
            status: "completed",
            backup_method: None,
            client_cipher_text: None,
            signing_share_pair_id: None,
            created_at,
            share,
            wallet,
            custodian_share: None,
        }
    }

    /// Builds a new, incomplete backup pair for `signing`: both halves of a fresh split.
    fn backup(client_id: &str, signing: Pair, created_at: SystemTime) -> Result<Self, SimError> {
        let id = new_id()?;
        let (share, custodian) = signing.wallet.backup_shares(client_id, &id, &signing.id)?;
        Ok(Self {
            id,
            client_id: client_id.to_owned(),
            curve: signing.curve,
            kind: Kind::Backup,
            status: "incomplete",
            backup_method: Some("CUSTOM"),
            client_cipher_text: None,
            signing_share_pair_id: Some(signing.id),
            created_at,
            share,
            wallet: signing.wallet,
            custodian_share: Some(custodian),
        })
    }
}

/// `(id, share)` of a freshly issued pair.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    /// Share pair id.
    pub id: String,
    /// Base64 share.
    pub share: String,
}

/// A queued fault for one route.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    /// How many more calls this entry fails.
    pub remaining: u32,
    /// HTTP status to answer.
    pub status: u16,
    /// `Retry-After` header value, seconds.
    pub retry_after: Option<u64>,
    /// Never answer.
    pub hang: bool,
    /// Body to send instead of the default.
    pub body: Option<Value>,
}

/// Behaviour knobs set through `/_sim/config`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Delay added before answering every non-admin call.
    pub latency: Duration,
    /// Form of `/v1/backup` responses.
    pub response_form: ResponseForm,
    /// Whether `PATCH …/backup-share-pairs/{id}` is accepted.
    pub patch_allowed: bool,
    /// Whether `POST …/backup-share-pairs/{id}` is accepted.
    pub post_allowed: bool,
    /// Self-managed custody: where every client's custodian shares go (`/_sim/webhook`).
    pub webhook: Option<WebhookTarget>,
    /// A client's own webhook target, which wins over `webhook`.
    pub client_webhooks: HashMap<String, WebhookTarget>,
}

impl Config {
    fn new(options: &SimOptions) -> Self {
        Self {
            latency: options.latency,
            response_form: ResponseForm::Upper,
            patch_allowed: true,
            post_allowed: true,
            webhook: None,
            client_webhooks: HashMap::new(),
        }
    }
}

/// Everything the simulator remembers.
#[derive(Debug)]
pub(crate) struct Inner {
    /// apiKey → clientId.
    pub clients: HashMap<String, String>,
    /// Share pairs in creation order.
    pub pairs: Vec<Pair>,
    /// Calls per route name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Queued faults per route.
    pub faults: HashMap<Route, VecDeque<Fault>>,
    /// Current knobs.
    pub config: Config,
    /// Custodian shares delivered to a webhook: (client id, backup share pair id, share).
    pub custodian_sent: Vec<(String, String, String)>,
    /// Custodian API keys (the custodian acts for every client).
    pub custodians: HashSet<String>,
    /// Eject per wallet id: until when it is enabled, and whether it was completed.
    pub ejects: HashMap<String, Eject>,
    /// Portal's rate limits: the Enclave MPC API, then the client API.
    pub limits: [Limit; 2],
    options: SimOptions,
}

/// A wallet's eject, once the custodian enabled it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Eject {
    /// Until when the wallet's backup shares may be fetched.
    pub until: SystemTime,
    /// Whether the client completed the eject.
    pub completed: bool,
}

impl Inner {
    /// Fresh state for `options` (with the demo client if enabled).
    pub(crate) fn new(options: SimOptions) -> Self {
        let mut inner = Self {
            clients: HashMap::new(),
            pairs: Vec::new(),
            calls: BTreeMap::new(),
            faults: HashMap::new(),
            config: Config::new(&options),
            custodian_sent: Vec::new(),
            custodians: HashSet::new(),
            ejects: HashMap::new(),
            limits: Default::default(),
            options,
        };
        if inner.options.demo {
            inner
                .clients
                .insert(DEMO_API_KEY.to_owned(), DEMO_CLIENT_ID.to_owned());
            inner.custodians.insert(DEMO_CUSTODIAN_API_KEY.to_owned());
        }
        inner.reset();
        inner
    }

    /// Clears pairs, calls, faults and knobs; keeps clients; re-seeds the demo pairs.
    pub(crate) fn reset(&mut self) {
        self.pairs.clear();
        self.faults.clear();
        self.custodian_sent.clear();
        self.ejects.clear();
        self.limits = Default::default();
        self.config = Config::new(&self.options);
        self.calls = Route::ALL.into_iter().map(|r| (r.name(), 0)).collect();
        if self.options.demo {
            self.pairs.extend(demo_pairs());
        }
    }

    /// Counts a call of `route` and returns the latency to apply, or, over its API's rate
    /// limit, the seconds to send as `Retry-After`.
    pub(crate) fn arrive(&mut self, route: Route) -> Result<Duration, u64> {
        *self.calls.entry(route.name()).or_insert(0) += 1;
        self.limit_mut(route.api()).admit(Instant::now())?;
        Ok(self.config.latency)
    }

    /// The rate limit of `api`.
    pub(crate) fn limit_mut(&mut self, api: Api) -> &mut Limit {
        match api {
            Api::Mpc => &mut self.limits[0],
            Api::Client => &mut self.limits[1],
        }
    }

    /// Counts one event under `name` (webhook calls, which have no route of their own).
    pub(crate) fn count(&mut self, name: &'static str) {
        *self.calls.entry(name).or_insert(0) += 1;
    }

    /// The webhook target for `client_id`, if custody is self-managed.
    pub(crate) fn webhook_for(&self, client_id: &str) -> Option<WebhookTarget> {
        self.config
            .client_webhooks
            .get(client_id)
            .or(self.config.webhook.as_ref())
            .cloned()
    }

    /// The custodian backup share of a backup pair (flat JSON text), if it is one.
    pub(crate) fn custodian_share(&self, backup_pair_id: &str) -> Option<String> {
        self.pair(backup_pair_id)?.custodian_share.clone()
    }

    /// Forgets pairs whose backup failed (Portal keeps no pair of a failed `/v1/backup`).
    pub(crate) fn drop_pairs(&mut self, ids: &[String]) {
        self.pairs.retain(|p| !ids.contains(&p.id));
    }

    /// Takes the next queued fault of `route`, if any.
    pub(crate) fn take_fault(&mut self, route: Route) -> Option<Fault> {
        let queue = self.faults.get_mut(&route)?;
        let front = queue.front_mut()?;
        let fault = front.clone();
        front.remaining = front.remaining.saturating_sub(1);
        if front.remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// The pair with id `id`, if any.
    pub(crate) fn pair(&self, id: &str) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.id == id)
    }

    /// The pair with id `id`, if it is a backup pair of `client_id`.
    pub(crate) fn backup_pair_mut(&mut self, client_id: &str, id: &str) -> Option<&mut Pair> {
        self.pairs
            .iter_mut()
            .find(|p| p.id == id && p.kind == Kind::Backup && p.client_id == client_id)
    }

    /// Creates one signing pair per curve (fresh wallets if `wallets` is `None`).
    pub(crate) fn issue_signing(
        &mut self,
        client_id: &str,
        wallets: Option<[Arc<Wallet>; 2]>,
    ) -> Result<[Issued; 2], SimError> {
        let wallets = match wallets {
            Some(w) => w,
            None => [Wallet::new(Curve::Secp256k1)?, Wallet::new(Curve::Ed25519)?],
        };
        let now = SystemTime::now();
        let mut new = Vec::with_capacity(2);
        for wallet in wallets {
            let id = new_id()?;
            let share = wallet.signing_share(client_id, &id)?;
            new.push(Pair::signing(id, client_id, wallet, now, share));
        }
        let issued = [0, 1].map(|i| Issued {
            id: new[i].id.clone(),
            share: new[i].share.clone(),
        });
        self.pairs.extend(new);
        Ok(issued)
    }

    /// Creates one backup pair per signing pair (ordered by curve).
    pub(crate) fn issue_backup(
        &mut self,
        client_id: &str,
        signing: [Pair; 2],
    ) -> Result<[Issued; 2], SimError> {
        let now = SystemTime::now();
        let [secp, ed] = signing;
        let new = [
            Pair::backup(client_id, secp, now)?,
            Pair::backup(client_id, ed, now)?,
        ];
        let issued = new.clone().map(|p| Issued {
            id: p.id,
            share: p.share,
        });
        self.pairs.extend(new);
        Ok(issued)
    }
}

/// Fixed creation time of the demo pairs (2024-01-01T00:00:00Z).
const DEMO_CREATED_AT_SECS: u64 = 1_704_067_200;

/// The demo client's signing pair ids, one per curve.
const DEMO_PAIR_IDS: [(&str, Curve); 2] = [
    ("cmdemosecp256k1signing000", Curve::Secp256k1),
    ("cmdemoed25519signing0000", Curve::Ed25519),
];

/// The demo client's signing pairs: fixed wallets and shares, the same on every run.
fn demo_pairs() -> Vec<Pair> {
    let created_at = UNIX_EPOCH + Duration::from_secs(DEMO_CREATED_AT_SECS);
    DEMO_PAIR_IDS
        .iter()
        .filter_map(|&(id, curve)| {
            let wallet = Wallet::demo(
                &format!("cmdemowallet{}", curve.as_str().to_ascii_lowercase()),
                curve,
            )?;
            let share = wallet.demo_signing_share(DEMO_CLIENT_ID, id)?;
            Some(Pair::signing(
                id.to_owned(),
                DEMO_CLIENT_ID,
                wallet,
                created_at,
                share,
            ))
        })
        .collect()
}

/// The demo client's generate response (upper-case form).
pub(crate) fn demo_generate() -> Value {
    let pairs = demo_pairs();
    let mut map = Map::new();
    for pair in pairs {
        map.insert(
            pair.curve.as_str().to_owned(),
            json!({"share": pair.share, "id": pair.id}),
        );
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests;
