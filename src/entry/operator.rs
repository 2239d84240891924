//! Operator routes on the IAM-authenticated API: the `list`, `verify`, `restore` and `recover` actions of
//! `restore.rs` over HTTP, for operators who sign requests with SigV4 rather than invoke the
//! function directly.
//!
//! - `GET  /clients/{clientId}/backups`: list
//! - `POST /clients/{clientId}/backups/verify`: verify (body optional: `{"clientApiKey"}`)
//! - `POST /clients/{clientId}/backups/restore`: restore, sealed (body optional: `{"clientApiKey"}`)
//! - `POST /clients/{clientId}/backups/recover`: recover (body: `{"clientApiKey"}`)
//!
//! The body may carry only `clientApiKey`, which Portal-managed backups need to read their
//! ciphertexts back from Portal; the client and the action come from the path.

use http::{Method, header};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::http::{HttpAnswer, error_answer};
use crate::domain::request::InputError;
use crate::domain::secret::wipe_json;
use crate::ports::catalogue::Catalogue;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::store::BackupStore;
use crate::workflow::error::BackupError;
use crate::workflow::restore::{Action, ActionRequest, RestoreService};

/// An operator route, read from the path: the client (still percent-encoded) and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRoute<'a> {
    /// The client, as it appears in the path.
    pub client_id: &'a str,
    /// What the route does.
    pub action: Action,
}

/// Recognises `…/clients/{clientId}/backups[/verify|/restore|/recover]` (any stage prefix).
pub fn route(path: &str) -> Option<OperatorRoute<'_>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = segments.iter().rposition(|s| *s == "clients")?;
    let action = match &segments[at + 1..] {
        [_, "backups"] => Action::List,
        [_, "backups", "verify"] => Action::Verify,
        [_, "backups", "restore"] => Action::Restore,
        [_, "backups", "recover"] => Action::Recover,
        _ => return None,
    };
    Some(OperatorRoute {
        client_id: segments[at + 1],
        action,
    })
}

fn bad(field: &str, problem: &str) -> BackupError {
    InputError {
        field: field.into(),
        problem: problem.into(),
    }
    .into()
}

/// Serves one operator route; `body` is already decoded from base64 where it was encoded.
pub async fn serve<P, E, S>(
    service: &RestoreService<P, E, S>,
    method: &Method,
    op: OperatorRoute<'_>,
    body: &[u8],
    caller: Option<&str>,
) -> HttpAnswer
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Catalogue,
{
    let allowed = if op.action == Action::List {
        Method::GET
    } else {
        Method::POST
    };
    if *method != allowed {
        let mut answer = HttpAnswer::error(
            405,
            "METHOD_NOT_ALLOWED",
            format!("use {allowed} on this route"),
        );
        answer.headers.push((header::ALLOW, allowed.to_string()));
        return answer;
    }
    let request = match request(&op, body) {
        Ok(r) => r,
        Err(e) => {
            super::log_failure(&e);
            return error_answer(&e);
        }
    };
    match super::direct::act_audited(
        service,
        &request,
        super::direct::Audit { via: "api", caller },
    )
    .await
    {
        Ok(answer) => HttpAnswer {
            status: 200,
            body: serde_json::to_value(&answer).unwrap_or_default(),
            headers: Vec::new(),
        },
        Err(e) => {
            super::log_failure(&e);
            error_answer(&e)
        }
    }
}

/// Builds the action request from the path and the optional `{"clientApiKey"}` body, with the
/// same validation as a direct invoke's.
fn request(op: &OperatorRoute<'_>, body: &[u8]) -> Result<ActionRequest, BackupError> {
    let client_id = percent_encoding::percent_decode_str(op.client_id)
        .decode_utf8()
        .map_err(|_| bad("clientId", "is not UTF-8 once percent-decoded"))?;
    let mut doc = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| bad("body", "is not valid JSON"))?
    };
    let result = (|| {
        let map = doc
            .as_object_mut()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        if let Some(unknown) = map
            .keys()
            .find(|k| *k != "clientApiKey" && *k != "idempotencyKey")
        {
            let field: String = unknown.chars().take(64).collect();
            return Err(bad(
                &field,
                "is not a field of this route's body (the client and action are in the path)",
            ));
        }
        map.insert("action".into(), op.action.as_str().into());
        map.insert("clientId".into(), client_id.as_ref().into());
        let bytes = Zeroizing::new(serde_json::to_vec(&doc).unwrap_or_default());
        Ok(ActionRequest::parse(&bytes)?)
    })();
    wipe_json(&mut doc);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_the_path_with_any_stage_prefix() {
        let r = |p| route(p).map(|r| (r.client_id, r.action));
        assert_eq!(r("/clients/c1/backups"), Some(("c1", Action::List)));
        assert_eq!(r("/prod/clients/c1/backups/"), Some(("c1", Action::List)));
        assert_eq!(
            r("/clients/c%201/backups/verify"),
            Some(("c%201", Action::Verify))
        );
        assert_eq!(
            r("/v1/clients/c1/backups/restore"),
            Some(("c1", Action::Restore))
        );
        assert_eq!(
            r("/clients/c1/backups/recover"),
            Some(("c1", Action::Recover))
        );
        for other in [
            "/backups",
            "/clients/c1",
            "/clients//backups",
            "/clients/c1/backups/drop",
            "/clients/c1/backups/verify/x",
            "/webhook/backup",
        ] {
            let found = r(other);
            assert!(
                found.is_none() || found == Some(("", Action::List)),
                "{other}"
            );
        }
    }

    #[test]
    fn bodies_carry_only_the_api_key_and_errors_name_no_values() {
        let op = OperatorRoute {
            client_id: "c%2F1",
            action: Action::Restore,
        };
        let r = request(&op, br#"{"clientApiKey":"sk_live_9"}"#).unwrap();
        assert_eq!(r.client_id, "c/1");
        assert_eq!(r.action, Action::Restore);
        assert!(r.api_key.is_some());
        assert!(request(&op, b"  ").unwrap().api_key.is_none());
        for body in [
            &br#"{"clientApiKey":"sk_live_9","action":"list"}"#[..],
            br#"{"clientId":"sk_live_9"}"#,
            br#"{"clientApiKey":7}"#,
            br#"["sk_live_9"]"#,
            b"sk_live_9",
        ] {
            let e = request(&op, body).unwrap_err();
            assert!(!e.to_string().contains("sk_live_9"), "{e}");
            assert_eq!(e.step, crate::workflow::error::Step::Input);
        }
        let empty = OperatorRoute {
            client_id: "",
            action: Action::List,
        };
        assert_eq!(request(&empty, b"").unwrap_err().field(), Some("clientId"));
    }
}
