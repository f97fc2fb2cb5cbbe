//! ACME (RFC 8555) on the control plane: obtains and renews the
//! certificates tenants ask for (`POST /v1/apps/{app}/certificates/acme`),
//! with instant-acme as the client and HTTP-01 as the challenge.
//!
//! The work lives in the store, not in memory: an ACME certificate's
//! `next_attempt_unix` says when to act (the first order, a retry after a
//! failure, or the renewal at two thirds of the lifetime). Each control
//! plane replica runs a worker; a worker finds the due certificates by an
//! index ([`MetaStore::due_certificates`]) and takes each under a lease
//! ([`MetaStore::claim_certificate`]), so of several replicas one orders,
//! and a replica that dies mid-order leaves the lease to expire. A result
//! is stored only under the lease it was ordered with: one whose lease
//! another replica took over is dropped. A forced renewal never breaks a
//! lease; the first claim after the lease acts on it.
//!
//! An order: the challenges' key authorizations go into the store (and so
//! into the next snapshot: every node answers them, whichever one the CA
//! reaches); the worker waits until the active nodes applied that
//! revision, tells the CA the challenges are ready, finalizes with a fresh
//! key, and stores the chain with the key sealed. A failure is stored on
//! the certificate (`edgectl certs list` shows it) and retried with
//! exponential backoff, without end: an expiring certificate is still
//! served while its renewal is retried.
//!
//! The account key is created once per directory URL, sealed with the
//! key-encryption key, and shared by every replica through the store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use edge_common::names::HostPattern;
use edge_common::sync::AcmeChallenge;
use futures::StreamExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tokio::sync::Notify;

use crate::api::ApiState;
use crate::seal::acme_account_aad;
use crate::settings::AcmeConfig;
use crate::store::{
    CertLease, CertRecord, MAX_DUE_LISTED, MetaStore, StoreError, now_unix, tenant_hosts,
};

/// How often due certificates are looked for when nothing wakes the
/// worker (a request for a certificate or a forced renewal does, and a
/// pass sleeps only until the next certificate is due).
const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// How long a worker holds a certificate it is ordering: longer than an
/// order takes ([`ORDER_TIMEOUT`]), so two replicas never order at once.
const LEASE: Duration = Duration::from_secs(600);
/// Orders in flight at once on one replica.
const ORDERS_AT_ONCE: usize = 4;
/// One whole order: account, challenges, validation, finalization.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for the active nodes to serve a challenge before the
/// CA is told to validate it anyway (a slow node may then miss it; the
/// others answer).
const CHALLENGE_PROPAGATION: Duration = Duration::from_secs(30);
/// Nodes heard from within this are waited for.
const ACTIVE_NODE: Duration = Duration::from_secs(120);
/// Retry delays: 1 minute, doubling, at most 6 hours; never given up.
const FIRST_RETRY: Duration = Duration::from_secs(60);
const LONGEST_RETRY: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the ACME account cannot be opened: {0}")]
    Account(String),
    #[error("{0}")]
    Order(String),
}

/// Runs the worker until the state is dropped (the control plane stops).
/// `wake` is [`ApiState::acme_wake`]: the API notifies it when a
/// certificate is requested or a renewal forced.
pub fn spawn(settings: AcmeConfig, state: Weak<ApiState>, wake: Arc<Notify>) {
    tokio::spawn(run(settings, state, wake));
}

async fn run(settings: AcmeConfig, state: Weak<ApiState>, wake: Arc<Notify>) {
    let client = AcmeClient {
        settings,
        account: tokio::sync::Mutex::new(None),
    };
    let mut wait = Duration::ZERO;
    loop {
        // A notification while a pass runs is kept (one permit), so a
        // request made meanwhile is looked at right after.
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(state) = state.upgrade() else { return };
        wait = match pass(&state, &client).await {
            Ok(next_due) => next_due
                .map(|due| Duration::from_secs(due.saturating_sub(now_unix())))
                .unwrap_or(POLL_INTERVAL)
                .clamp(Duration::from_secs(1), POLL_INTERVAL),
            Err(e) => {
                tracing::warn!(error = %e, "ACME: cannot read the certificates; trying again");
                Duration::from_secs(10)
            }
        };
    }
}

/// Acts on the due ACME certificates (at most [`MAX_DUE_LISTED`] a pass),
/// [`ORDERS_AT_ONCE`] at a time, so one CA that stalls an order for its
/// whole timeout does not hold back every other tenant's renewal; returns
/// when the next one is due.
async fn pass(state: &Arc<ApiState>, client: &AcmeClient) -> Result<Option<u64>, StoreError> {
    observe_certificates(state).await?;
    let due = state
        .store
        .due_certificates(now_unix(), MAX_DUE_LISTED)
        .await?;
    let acted = !due.is_empty();
    futures::stream::iter(due)
        .for_each_concurrent(ORDERS_AT_ONCE, |cert| async move {
            if let Err(e) = attempt(state, client, &cert).await {
                // This certificate's turn only: the others go on, and the
                // lease's end brings it back.
                tracing::warn!(cert = cert.id, tenant = %cert.tenant, app = %cert.app, error = %e, "ACME: cannot record the attempt");
            }
        })
        .await;
    if acted {
        observe_certificates(state).await?;
    }
    state.store.next_certificate_due(now_unix()).await
}

/// Orders one due certificate if this replica wins its lease, and records
/// the result.
async fn attempt(
    state: &Arc<ApiState>,
    client: &AcmeClient,
    cert: &CertRecord,
) -> Result<(), StoreError> {
    let now = now_unix();
    let Some(lease) = state
        .store
        .claim_certificate(cert.id, now, now + LEASE.as_secs())
        .await?
    else {
        return Ok(()); // another replica took it
    };
    tracing::info!(cert = cert.id, tenant = %cert.tenant, app = %cert.app, renewal = cert.material.is_some(), "ACME: ordering a certificate");
    let outcome = tokio::time::timeout(ORDER_TIMEOUT, client.obtain(state, cert, &lease))
        .await
        .unwrap_or_else(|_| {
            Err(AcmeError::Order(format!(
                "the order took longer than {} s",
                ORDER_TIMEOUT.as_secs()
            )))
        });
    let recorded = match outcome {
        Ok(()) => {
            state.metrics.acme_order("issued");
            Ok(())
        }
        Err(AcmeError::Store(e)) if lost(&e) => Err(e),
        Err(e) => {
            state.metrics.acme_order("failed");
            let retry_at = now_unix() + retry_delay(cert.attempts + 1).as_secs();
            tracing::warn!(cert = cert.id, tenant = %cert.tenant, app = %cert.app, error = %e, retry_at, "ACME: the order failed");
            match state
                .store
                .record_certificate_failure(&lease, &e.to_string(), retry_at)
                .await
            {
                Ok(revision) => {
                    state.hub.notify(revision);
                    Ok(())
                }
                Err(e) if lost(&e) => Err(e),
                Err(e) => return Err(e),
            }
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(cert = cert.id, tenant = %cert.tenant, app = %cert.app, error = %e, "ACME: the result is dropped");
    }
    Ok(())
}

/// Whether a result was refused because the work is no longer this
/// replica's: its lease was taken over, or the certificate deleted.
fn lost(e: &StoreError) -> bool {
    matches!(e, StoreError::LeaseLost { .. } | StoreError::NotFound(_))
}

async fn observe_certificates(state: &ApiState) -> Result<(), StoreError> {
    let counts = state.store.certificate_counts(now_unix()).await?;
    state.metrics.observe_certificates(&counts);
    Ok(())
}

/// The wait before attempt `attempt + 1` after `attempt` failures.
fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LONGEST_RETRY)
}

struct AcmeClient {
    settings: AcmeConfig,
    /// Made (or read from the store) by the first order, then shared.
    account: tokio::sync::Mutex<Option<Account>>,
}

impl AcmeClient {
    /// One order for `cert`, stored when issued if `lease` still holds.
    async fn obtain(
        &self,
        state: &Arc<ApiState>,
        cert: &CertRecord,
        lease: &CertLease,
    ) -> Result<(), AcmeError> {
        check_still_owned(state, cert).await?;
        let account = self.account(state).await?;
        let identifiers = cert
            .hosts
            .iter()
            .map(|host| match host {
                HostPattern::Exact(name) => Ok(Identifier::Dns(name.clone())),
                other => Err(AcmeError::Order(format!(
                    "{other}: HTTP-01 validates exact names only"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;

        // The key authorizations go to every node first.
        let mut challenges = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Order(format!(
                        "the CA says authorization of {} is {other:?}",
                        authorization.identifier()
                    )));
                }
            }
            let host = authorization.identifier().to_string();
            let challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| {
                    AcmeError::Order(format!("the CA offers no HTTP-01 challenge for {host}"))
                })?;
            challenges.push(AcmeChallenge {
                host,
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_string(),
            });
        }
        if !challenges.is_empty() {
            let revision = state
                .store
                .set_acme_challenges(cert.id, &challenges)
                .await?;
            state.hub.notify(revision);
            wait_for_nodes(state.store.as_ref(), revision).await?;
        }

        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let host = authorization.identifier().to_string();
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| {
                        AcmeError::Order(format!("the CA offers no HTTP-01 challenge for {host}"))
                    })?;
            challenge.set_ready().await?;
        }

        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retries).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order(why_invalid(&mut order, status).await));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retries).await?;
        let material =
            crate::certs::material(&chain_pem, &key_pem, &state.kek, &cert.tenant, &cert.app)
                .map_err(|e| {
                    AcmeError::Order(format!("the CA's certificate is not usable: {e}"))
                })?;
        let renew_at = material.renewal_unix();
        let revision = state
            .store
            .record_certificate_issued(lease, material, Some(renew_at))
            .await?;
        state.hub.notify(revision);
        tracing::info!(cert = cert.id, tenant = %cert.tenant, app = %cert.app, renew_at, "ACME: certificate issued");
        Ok(())
    }

    /// The account for the directory: from the store, else created (and
    /// stored unless another replica stored one first, which is then used).
    async fn account(&self, state: &ApiState) -> Result<Account, AcmeError> {
        // Held across the first creation, so concurrent orders make one.
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let directory = &self.settings.directory;
        let aad = acme_account_aad(directory);
        let open = |sealed: &[u8]| -> Result<AccountCredentials, AcmeError> {
            let json = state
                .kek
                .open(sealed, &aad)
                .map_err(|e| AcmeError::Account(e.to_string()))?;
            // Serde's message could quote the credentials: position only.
            serde_json::from_slice(&json).map_err(|e| {
                AcmeError::Account(format!(
                    "the stored credentials do not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })
        };
        let account = match state.store.acme_account(directory).await? {
            Some(sealed) => self.builder()?.from_credentials(open(&sealed)?).await?,
            None => {
                let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| AcmeError::Account(e.to_string()))?;
                let sealed = state
                    .kek
                    .seal(&json, &aad)
                    .map_err(|e| AcmeError::Account(e.to_string()))?;
                let stored = state
                    .store
                    .put_acme_account(directory, &sealed, false)
                    .await?;
                if stored == sealed {
                    tracing::info!(directory, account = account.id(), "ACME: account created");
                    account
                } else {
                    self.builder()?.from_credentials(open(&stored)?).await?
                }
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, AcmeError> {
        Ok(match &self.settings.ca_root {
            Some(root) => Account::builder_with_root(root)?,
            None => Account::builder()?,
        })
    }
}

/// A host may have moved to another app or tenant since the request: the
/// CA is never asked for a name the tenant no longer owns (its challenge
/// would be answered all the same).
async fn check_still_owned(state: &ApiState, cert: &CertRecord) -> Result<(), AcmeError> {
    let owned = tenant_hosts(state.store.as_ref(), &cert.tenant).await?;
    for host in &cert.hosts {
        if !owned.owns(host) {
            return Err(AcmeError::Order(format!(
                "{host} is no longer a hostname of this tenant's apps"
            )));
        }
    }
    Ok(())
}

/// Waits until every node heard from lately applied `revision` (so serves
/// the challenges), up to [`CHALLENGE_PROPAGATION`].
async fn wait_for_nodes(store: &dyn MetaStore, revision: u64) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + CHALLENGE_PROPAGATION;
    loop {
        let now = now_unix();
        let behind: Vec<String> = store
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.last_seen_unix + ACTIVE_NODE.as_secs() >= now)
            .filter(|n| n.applied_revision.is_none_or(|applied| applied < revision))
            .map(|n| n.node)
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?behind,
                revision,
                "ACME: nodes have not applied the challenges yet; validating anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Why an order did not become ready, from the CA's problem documents.
async fn why_invalid(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    if let Some(problem) = &order.state().error {
        reasons.push(problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let host = authorization.identifier().to_string();
        if let Ok(state) = authorization.refresh().await {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    reasons.push(format!("{host}: {problem}"));
                }
            }
        }
    }
    if reasons.is_empty() {
        format!("the order is {status:?}")
    } else {
        format!("the order is {status:?}: {}", reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_six_hours_and_never_stop() {
        assert_eq!(retry_delay(1), Duration::from_secs(60));
        assert_eq!(retry_delay(2), Duration::from_secs(120));
        assert_eq!(retry_delay(5), Duration::from_secs(960));
        assert_eq!(retry_delay(30), LONGEST_RETRY);
        assert_eq!(retry_delay(u32::MAX), LONGEST_RETRY);
    }
}
