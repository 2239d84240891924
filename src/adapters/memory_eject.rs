//! In-memory fakes of Portal-managed eject, beside `memory`'s: the fake Portal's eject endpoints
//! and a fixed custodian key.

use crate::adapters::memory::FakePortal;
use crate::domain::secret::{ClientApiKey, SecretString};
use crate::ports::eject::{
    CustodianKeySource, EjectPortal, EjectableShares, KeyRead, KeySourceError,
};
use crate::ports::portal::PortalError;

fn status(call: &'static str, status: u16) -> PortalError {
    PortalError::Status {
        call,
        status,
        error_id: None,
        retry_after: None,
    }
}

impl EjectPortal for FakePortal {
    async fn enable_eject(
        &self,
        custodian_key: &ClientApiKey,
        client_id: &str,
        wallet_id: &str,
    ) -> Result<String, PortalError> {
        self.log.push(format!(
            "portal.enable_eject {client_id} {wallet_id} {}",
            custodian_key.bearer_header().as_str()
        ));
        if !self.ejectable.lock().unwrap().contains_key(wallet_id) {
            return Err(status("enable-eject", 404));
        }
        Ok("2026-12-04T00:05:00Z".into())
    }

    async fn ejectable_shares(
        &self,
        _client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> Result<EjectableShares, PortalError> {
        self.log
            .push(format!("portal.ejectable_shares {wallet_id}"));
        let (custodian, client) = self
            .ejectable
            .lock()
            .unwrap()
            .get(wallet_id)
            .cloned()
            .ok_or_else(|| status("ejectable-backup-shares", 404))?;
        Ok(EjectableShares {
            custodian_backup_share: SecretString::new(custodian),
            encrypted_client_backup_share: client,
        })
    }

    async fn complete_eject(
        &self,
        _client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> Result<(), PortalError> {
        self.log.push(format!("portal.complete_eject {wallet_id}"));
        Ok(())
    }
}

/// A custodian key that is always there (or, `None`, never readable).
#[derive(Debug)]
pub(crate) struct FixedKey(pub Option<&'static str>);

impl CustodianKeySource for FixedKey {
    fn custodian_key(&self) -> KeyRead<'_> {
        Box::pin(async move {
            self.0
                .map(|k| ClientApiKey::new(k.to_owned()))
                .ok_or(KeySourceError {
                    secret: "arn:aws:secretsmanager:us-east-1:1:secret:custodian".into(),
                    transient: true,
                    detail: "throttled".into(),
                })
        })
    }
}
