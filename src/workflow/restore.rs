//! Restore, verify and list: what an operator needs from stored backups on the day a wallet must
//! be recovered. Reached by a direct invoke whose payload names an `action`.
//!
//! - `list`: every backup of a client, from its checkpoint records: state and timestamps only.
//! - `verify`: the latest completed backup, read from where it was stored, decrypted, and checked
//!   against its pair ids; answers ok or the problem per curve, never a share (a backup drill).
//! - `restore`: the same, answering the `backupResponse` string that Portal's `/v1/recover` takes.

use serde::{Serialize, Serializer};

use crate::domain::checkpoint::{SealedRecord, Status};
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::model::BackupMode;
use crate::domain::request::InputError;
use crate::domain::secret::{ClientApiKey, SecretString, wipe_json};
use crate::ports::catalogue::{Catalogue, Listed};
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;
use crate::workflow::error::{BackupError, Cause, Mismatch, Step};

/// What an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// List a client's backups.
    List,
    /// Prove the latest completed backup restores, without exposing it.
    Verify,
    /// Return the latest completed backup as `/v1/recover`'s `backupResponse`.
    Restore,
}

/// A validated action request.
#[derive(Debug)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
    /// Portal client id.
    pub client_id: String,
    /// Needed only to read Portal-managed ciphertexts back from Portal.
    pub api_key: Option<ClientApiKey>,
}

/// The fields of an action request.
const ACTION_FIELDS: [&str; 3] = ["action", "clientId", "clientApiKey"];

impl ActionRequest {
    /// Parses `{"action", "clientId", "clientApiKey"?}`; errors name the field, never a value.
    pub fn parse(payload: &[u8]) -> Result<Self, InputError> {
        let bad = |field: &str, problem: &str| InputError {
            field: field.chars().take(64).collect(),
            problem: problem.into(),
        };
        let mut doc: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| bad("body", "is not valid JSON"))?;
        let result = (|| {
            let map = doc
                .as_object()
                .ok_or_else(|| bad("body", "must be a JSON object"))?;
            if let Some(unknown) = map.keys().find(|k| !ACTION_FIELDS.contains(&k.as_str())) {
                return Err(bad(unknown, "is not a field of an action request"));
            }
            let text = |name: &str| match map.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(v)) => Ok(Some(v.clone())),
                Some(_) => Err(bad(name, "must be a string")),
            };
            let action = match text("action")?.as_deref() {
                Some("list") => Action::List,
                Some("verify") => Action::Verify,
                Some("restore") => Action::Restore,
                Some(_) => return Err(bad("action", "must be list, verify, restore or rotate")),
                None => return Err(bad("action", "is required")),
            };
            let client_id = text("clientId")?.ok_or_else(|| bad("clientId", "is required"))?;
            if !crate::domain::request::valid_client_id(&client_id) {
                return Err(bad("clientId", crate::domain::request::CLIENT_ID_RULE));
            }
            Ok(Self {
                action,
                client_id,
                api_key: text("clientApiKey")?.map(ClientApiKey::new),
            })
        })();
        wipe_json(&mut doc);
        result
    }
}

/// A backup in a listing (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The backup's idempotency key.
    pub key: String,
    /// `IN_PROGRESS`, `BACKED_UP`, `STORED` or `COMPLETED`.
    pub status: &'static str,
    /// Where its ciphertexts are.
    pub backup_mode: &'static str,
    /// Backup share pair ids (SECP256K1, ED25519), once Portal created them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_share_pair_ids: Option<[String; 2]>,
    /// Signing share pair ids (SECP256K1, ED25519).
    pub signing_share_pair_ids: [String; 2],
    /// Epoch milliseconds.
    pub created_at: u64,
    /// Epoch milliseconds.
    pub updated_at: u64,
    /// Epoch milliseconds, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
}

/// What an action answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ActionAnswer {
    /// `list`.
    List {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// Newest first.
        backups: Vec<Summary>,
    },
    /// `verify`: ok or the problem, per curve.
    Verify {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup checked.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// Whether both curves restore.
        ok: bool,
        /// `"ok"` or what is wrong, keyed by curve.
        curves: std::collections::BTreeMap<&'static str, String>,
    },
    /// `restore`: the string `/v1/recover` takes as `backupResponse`.
    Restore {
        /// The client.
        #[serde(rename = "clientId")]
        client_id: String,
        /// The backup restored.
        #[serde(rename = "backupSharePairIds")]
        backup_share_pair_ids: [String; 2],
        /// `{"SECP256K1": {"share", "id"}, "ED25519": {"share", "id"}}` as a JSON string.
        #[serde(rename = "backupResponse", serialize_with = "expose")]
        backup_response: SecretString,
    },
}

/// The one place a restored backup leaves as text: the restore answer, to its IAM caller.
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// The latest completed backup of a listing, with its sealed shares.
pub fn latest_completed(listed: &[Listed]) -> Option<(&Listed, &[SealedRecord; 2])> {
    listed
        .iter()
        .filter(|l| l.progress.status == Status::Completed)
        .filter_map(|l| Some((l, l.progress.shares.as_ref()?)))
        .max_by_key(|(l, _)| (l.completed_at.unwrap_or(0), l.updated_at))
}

/// List, verify and restore over the ports: a service of its own beside the backup workflow,
/// reading what it wrote.
#[derive(Debug, Clone)]
pub struct RestoreService<P, E, S> {
    portal: P,
    envelope: E,
    store: S,
}

impl<P, E, S> RestoreService<P, E, S> {
    /// Wires restore to its adapters.
    pub fn new(portal: P, envelope: E, store: S) -> Self {
        Self {
            portal,
            envelope,
            store,
        }
    }

    fn table(&self) -> &S {
        &self.store
    }

    fn portal(&self) -> &P {
        &self.portal
    }

    fn envelope(&self) -> &E {
        &self.envelope
    }
}

impl<P: Portal, E: Envelope, S: BackupStore + Catalogue> RestoreService<P, E, S> {
    /// Runs an operator action.
    pub async fn act(&self, req: &ActionRequest) -> Result<ActionAnswer, BackupError> {
        let store = self.table();
        let mut listed = store
            .list(&req.client_id)
            .await
            .map_err(|e| BackupError::new(Step::Checkpoint, e))?;
        if req.action == Action::List {
            listed.sort_by_key(|l| std::cmp::Reverse(l.created_at));
            return Ok(ActionAnswer::List {
                client_id: req.client_id.clone(),
                backups: listed.iter().map(summary).collect(),
            });
        }
        let (latest, [a, b]) = latest_completed(&listed).ok_or_else(|| {
            BackupError::new(
                Step::Verify,
                Cause::NoBackup(format!(
                    "client {} has no completed backup: list its backups to see their states",
                    req.client_id
                )),
            )
        })?;
        let ids = [a.id.clone(), b.id.clone()];
        let mode = latest.progress.backup_mode;
        let (ra, rb) = futures::future::join(
            self.open_stored(req, mode, a),
            self.open_stored(req, mode, b),
        )
        .await;
        match req.action {
            Action::Verify => {
                let verdict = |r: &Result<SecretString, BackupError>| match r {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                };
                let curves = [(a.curve, verdict(&ra)), (b.curve, verdict(&rb))]
                    .into_iter()
                    .map(|(c, v)| (c.as_str(), v))
                    .collect();
                Ok(ActionAnswer::Verify {
                    client_id: req.client_id.clone(),
                    backup_share_pair_ids: ids,
                    ok: ra.is_ok() && rb.is_ok(),
                    curves,
                })
            }
            _ => {
                let (pa, pb) = (ra?, rb?);
                // Each plaintext is already `{"share","id"}`: splice them, no re-encoding copy.
                let mut out = String::with_capacity(pa.expose().len() + pb.expose().len() + 32);
                out.push_str("{\"");
                out.push_str(a.curve.as_str());
                out.push_str("\":");
                out.push_str(pa.expose());
                out.push_str(",\"");
                out.push_str(b.curve.as_str());
                out.push_str("\":");
                out.push_str(pb.expose());
                out.push('}');
                Ok(ActionAnswer::Restore {
                    client_id: req.client_id.clone(),
                    backup_share_pair_ids: ids,
                    backup_response: SecretString::new(out),
                })
            }
        }
    }

    /// Reads one ciphertext from where `mode` stored it, opens it under its context and checks
    /// that it is the `{"share","id"}` of its pair.
    async fn open_stored(
        &self,
        req: &ActionRequest,
        mode: BackupMode,
        record: &SealedRecord,
    ) -> Result<SecretString, BackupError> {
        let step = |c: Cause| BackupError::new(Step::Verify, c);
        let stored = match mode {
            BackupMode::SelfManaged => self
                .table()
                .cipher_text(&req.client_id, &record.id)
                .await
                .map_err(|e| step(e.into()))?
                .ok_or_else(|| {
                    step(Cause::Mismatch(Mismatch::MissingFromTable(
                        record.id.clone(),
                    )))
                })?,
            BackupMode::PortalManaged => {
                let key = req.api_key.as_ref().ok_or_else(|| {
                    BackupError::new(
                        Step::Input,
                        InputError {
                            field: "clientApiKey".into(),
                            problem: "is required to read a Portal-managed backup".into(),
                        },
                    )
                })?;
                self.portal()
                    .cipher_text(key, &record.id)
                    .await
                    .map_err(|e| step(e.into()))?
            }
        };
        let context = EncryptionContext::backup_share(&req.client_id, &record.id, record.curve);
        let opened = self
            .envelope()
            .open(&context, &stored)
            .await
            .map_err(|e| step(e.into()))?;
        if !crate::domain::share::names_pair(opened.expose(), &record.id) {
            return Err(step(Cause::Mismatch(Mismatch::NotThatPairsShare(
                record.id.clone(),
            ))));
        }
        let text = String::from_utf8(opened.expose().to_vec())
            .map_err(|_| step(Cause::Mismatch(Mismatch::NotUtf8(record.id.clone()))))?;
        Ok(SecretString::new(text))
    }
}

fn summary(l: &Listed) -> Summary {
    Summary {
        key: l.key.clone(),
        status: l.progress.status.as_str(),
        backup_mode: l.progress.backup_mode.as_str(),
        backup_share_pair_ids: l
            .progress
            .shares
            .as_ref()
            .map(|[a, b]| [a.id.clone(), b.id.clone()]),
        signing_share_pair_ids: l.progress.signing_share_pair_ids.clone(),
        created_at: l.created_at,
        updated_at: l.updated_at,
        completed_at: l.completed_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkpoint::Progress;
    use crate::domain::model::Curve;

    fn listed(key: &str, status: Status, completed_at: Option<u64>) -> Listed {
        let record = |curve: Curve, id: &str| SealedRecord {
            curve,
            id: id.into(),
            cipher_text: "pbe1.x".into(),
        };
        Listed {
            key: key.into(),
            progress: Progress {
                status,
                backup_mode: BackupMode::SelfManaged,
                signing_share_pair_ids: ["s1".into(), "s2".into()],
                shares: (status != Status::InProgress).then(|| {
                    [
                        record(Curve::Secp256k1, &format!("{key}-a")),
                        record(Curve::Ed25519, &format!("{key}-b")),
                    ]
                }),
            },
            created_at: 1,
            updated_at: completed_at.unwrap_or(5),
            completed_at,
        }
    }

    #[test]
    fn the_latest_completed_backup_is_restored_never_an_unfinished_one() {
        let all = [
            listed("old", Status::Completed, Some(10)),
            listed("new", Status::Completed, Some(20)),
            listed("newest-unfinished", Status::Stored, None),
            listed("fresh", Status::InProgress, None),
        ];
        assert_eq!(
            latest_completed(&all).map(|(l, _)| l.key.as_str()),
            Some("new")
        );
        assert!(latest_completed(&all[2..]).is_none());
    }

    #[test]
    fn action_requests_are_strict_and_errors_name_no_values() {
        let ok = ActionRequest::parse(br#"{"action":"verify","clientId":"c1"}"#).unwrap();
        assert_eq!(ok.action, Action::Verify);
        assert!(ok.api_key.is_none());
        for bad in [
            &br#"{"action":"sk_live_9","clientId":"c1"}"#[..],
            br#"{"action":"list","clientId":"sk_live_9\u0000"}"#,
            br#"{"action":"list","clientId":"c1","clientApiKey":{"k":"sk_live_9"}}"#,
            br#"{"action":"list"}"#,
            br#"{"action":"list","clientId":""}"#,
            br#"{"action":"list","clientId":"c1","extra":"sk_live_9"}"#,
            br#"not json"#,
        ] {
            let e = ActionRequest::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("sk_live_9"), "{e}");
        }
    }

    #[test]
    fn a_restore_answer_carries_the_backup_response_and_nothing_else_secret() {
        let answer = ActionAnswer::Restore {
            client_id: "c1".into(),
            backup_share_pair_ids: ["a".into(), "b".into()],
            backup_response: SecretString::new(r#"{"SECP256K1":{"share":"s","id":"a"}}"#.into()),
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json["backupResponse"],
            r#"{"SECP256K1":{"share":"s","id":"a"}}"#
        );
        let debug = format!("{answer:?}");
        assert!(!debug.contains("SECP256K1"), "{debug}");
        assert!(!debug.contains(r#""share""#), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }
}
