//! What certificates, ACME challenges and accounts mean to both SQL
//! backends, so that each keeps only its plumbing (binding, fetching, its
//! transactions): every statement, written once in PostgreSQL's `$n`
//! placeholder style ([`sqlite`] rewrites them for SQLite), the one
//! conversion of a row into a [`CertRecord`] and back, the decisions
//! (limits, leases, which change bumps the revision), and the certificates
//! and challenges of a snapshot. The backends differ in how they bind and
//! fetch columns, not in what a row means or which names a tenant owns.

use std::borrow::Cow;
use std::collections::HashMap;

use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{AcmeChallenge, SnapshotCertificate};

use super::{
    CertLease, CertLimit, CertLimits, CertMaterial, CertRecord, CertSource, CertificateCounts,
    NewCertificate, OwnedHosts, StoreError, StoreResult,
};

/// A number as SQL keeps it: signed 64 bits. A `u64` above them is no
/// real time, size or id, so it is clamped rather than refused.
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored number back (the store only writes [`int`]s, never below 0).
pub(crate) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A statement of this module for SQLite, whose numbered placeholders are
/// `?n` where PostgreSQL's are `$n` (no statement here has another `$`).
pub(crate) fn sqlite(statement: &str) -> Cow<'_, str> {
    if statement.contains('$') {
        Cow::Owned(statement.replace('$', "?"))
    } else {
        Cow::Borrowed(statement)
    }
}

/// The columns, in this order, every certificate query selects.
pub(crate) const CERT_COLUMNS: &str = "id, tenant, app, hosts, source, chain_pem, sealed_key, \
     bundle_sha256, bundle_size, issuer, not_before_unix, not_after_unix, last_error, attempts, \
     next_attempt_unix, lease_until, renew_requested, created_unix, updated_unix";

/// Certificates matching `condition` (over `$n` parameters), by id.
pub(crate) fn select(condition: &str) -> String {
    format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {condition} ORDER BY id")
}

pub(crate) const BY_ID: &str = "id = $1";
pub(crate) const BY_APP: &str = "tenant = $1 AND app = $2";
pub(crate) const OF_APP: &str = "id = $1 AND tenant = $2 AND app = $3";
pub(crate) const EVERY: &str = "TRUE";

/// `$1`: a digest. The lowest id first (several certificates may share
/// one bundle), by the `certificates_by_bundle` index.
pub(crate) fn by_bundle() -> String {
    format!("{} LIMIT 1", select("bundle_sha256 = $1"))
}

/// What a claim at `$1` may take: an ACME certificate due by then and
/// under no lease (none, or one that ended). The one definition of
/// "claimable": [`due`] lists by it and [`CLAIM`] takes by it.
const CLAIMABLE: &str = "source = 'acme' AND next_attempt_unix <= $1 \
     AND (lease_until IS NULL OR lease_until <= $1)";

/// `$1`: now, `$2`: how many. By the `certificates_by_next_attempt` index.
pub(crate) fn due() -> String {
    format!(
        "SELECT {CERT_COLUMNS} FROM certificates WHERE {CLAIMABLE} \
         ORDER BY next_attempt_unix, id LIMIT $2"
    )
}

/// `$1`: now, `$2`: the id, `$3`: the lease's end. Returns the lease's
/// token; no row if the certificate is not claimable.
pub(crate) fn claim() -> String {
    format!(
        "UPDATE certificates SET lease_until = $3, lease_token = lease_token + 1, \
         renew_requested = FALSE WHERE id = $2 AND {CLAIMABLE} RETURNING lease_token"
    )
}

/// `$1`: now. The earliest due time of the ACME certificates under no
/// lease at `$1` (an ordered scan of the due-time index that stops at the
/// first).
pub(crate) const NEXT_DUE_FREE: &str = "SELECT next_attempt_unix FROM certificates \
     WHERE source = 'acme' AND next_attempt_unix IS NOT NULL \
     AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_unix LIMIT 1";
/// `$1`: now. When the earliest of those under a lease becomes claimable:
/// the later of its due time and its lease's end (a few rows at most, by
/// the lease index).
pub(crate) const NEXT_DUE_LEASED: &str = "SELECT MIN(CASE WHEN next_attempt_unix > lease_until \
     THEN next_attempt_unix ELSE lease_until END) FROM certificates \
     WHERE lease_until > $1 AND source = 'acme' AND next_attempt_unix IS NOT NULL";

/// The earlier of [`NEXT_DUE_FREE`]'s and [`NEXT_DUE_LEASED`]'s answers.
pub(crate) fn next_due(free: Option<i64>, leased: Option<i64>) -> Option<u64> {
    match (free, leased) {
        (Some(a), Some(b)) => Some(uint(a.min(b))),
        (a, b) => a.or(b).map(uint),
    }
}

/// [`CertMaterial::renewal_unix`] in SQL, the same integer arithmetic
/// (a negative lifetime counts as none): `certificate_counts` and
/// [`CertRecord::status`] agree, which the conformance suite checks at
/// the edges.
const RENEWAL: &str = "(not_before_unix + CASE WHEN not_after_unix > not_before_unix \
     THEN (not_after_unix - not_before_unix) / 3 * 2 ELSE 0 END)";

/// `$1`: now. [`CertRecord::status`] counted: pending, issued, failed,
/// expiring.
pub(crate) fn counts() -> String {
    format!(
        "SELECT \
         COUNT(CASE WHEN chain_pem IS NULL AND last_error IS NULL THEN 1 END), \
         COUNT(CASE WHEN chain_pem IS NOT NULL AND $1 < {RENEWAL} THEN 1 END), \
         COUNT(CASE WHEN chain_pem IS NULL AND last_error IS NOT NULL THEN 1 END), \
         COUNT(CASE WHEN chain_pem IS NOT NULL AND $1 >= {RENEWAL} THEN 1 END) \
         FROM certificates"
    )
}

pub(crate) fn certificate_counts(
    pending: i64,
    issued: i64,
    failed: i64,
    expiring: i64,
) -> CertificateCounts {
    CertificateCounts {
        pending: uint(pending),
        issued: uint(issued),
        failed: uint(failed),
        expiring: uint(expiring),
    }
}

/// `$1`: the tenant, `$2`: the app. What [`CertLimits`] counts, in
/// [`Held`]'s order.
pub(crate) const LIMIT_COUNTS: &str = "SELECT COUNT(CASE WHEN app = $2 THEN 1 END), COUNT(*), \
     COUNT(CASE WHEN source = 'acme' AND chain_pem IS NULL THEN 1 END) \
     FROM certificates WHERE tenant = $1";

/// What a tenant holds, counted in the transaction that would add one
/// more.
pub(crate) struct Held {
    pub app: i64,
    pub tenant: i64,
    /// ACME certificates without material (pending or failed).
    pub pending_acme: i64,
}

/// `CertificateLimit` if adding `new` to the app would exceed `limits`.
pub(crate) fn check_limits(
    limits: &CertLimits,
    held: &Held,
    tenant: &TenantId,
    app: &AppName,
    new: &NewCertificate,
) -> StoreResult<()> {
    let refuse =
        |limit, owner: String, max| Err(StoreError::CertificateLimit { limit, owner, max });
    if uint(held.app) >= limits.per_app {
        return refuse(CertLimit::PerApp, format!("app {app}"), limits.per_app);
    }
    if uint(held.tenant) >= limits.per_tenant {
        return refuse(
            CertLimit::PerTenant,
            format!("tenant {tenant}"),
            limits.per_tenant,
        );
    }
    let pending = new.source == CertSource::Acme && new.material.is_none();
    if pending && uint(held.pending_acme) >= limits.pending_acme_per_tenant {
        return refuse(
            CertLimit::PendingAcmePerTenant,
            format!("tenant {tenant}"),
            limits.pending_acme_per_tenant,
        );
    }
    Ok(())
}

/// Hands out the next certificate id.
pub(crate) const NEXT_ID: &str =
    "UPDATE certificate_counter SET value = value + 1 WHERE id = 1 RETURNING value";
pub(crate) const COUNTER: &str = "SELECT value FROM certificate_counter WHERE id = 1";
pub(crate) const SET_COUNTER: &str = "UPDATE certificate_counter SET value = $1 WHERE id = 1";

/// A new certificate as stored: no error, no attempt, no lease.
pub(crate) fn new_record(
    id: u64,
    tenant: &TenantId,
    app: &AppName,
    new: NewCertificate,
    now_unix: u64,
) -> CertRecord {
    CertRecord {
        id,
        tenant: tenant.clone(),
        app: app.clone(),
        hosts: new.hosts,
        source: new.source,
        material: new.material,
        last_error: None,
        attempts: 0,
        next_attempt_unix: new.next_attempt_unix,
        lease_until_unix: None,
        renew_requested: false,
        created_unix: now_unix,
        updated_unix: now_unix,
    }
}

/// Whether adding `cert` changes what nodes see: only material does.
pub(crate) fn add_bumps(cert: &CertRecord) -> bool {
    cert.material.is_some()
}

/// Whether deleting `cert`, which had `challenges` challenges, changes
/// what nodes see (a certificate they served or answered for).
pub(crate) fn delete_bumps(cert: &CertRecord, challenges: u64) -> bool {
    cert.material.is_some() || challenges > 0
}

/// Whether a failure that cleared `challenges` challenges changes what
/// nodes see (its material, if any, stays served).
pub(crate) fn failure_bumps(challenges: u64) -> bool {
    challenges > 0
}

/// Writes a whole row, all of [`CERT_COLUMNS`] in order (the lease token
/// starts at 0).
pub(crate) fn insert() -> String {
    let placeholders: Vec<String> = (1..=19).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO certificates ({CERT_COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    )
}

/// A record as [`insert`]'s values, in [`CERT_COLUMNS`]' order.
pub(crate) struct CertValues<'a> {
    pub id: i64,
    pub tenant: &'a str,
    pub app: &'a str,
    pub hosts: String,
    pub source: &'static str,
    pub material: MaterialColumns<'a>,
    pub last_error: Option<&'a str>,
    pub attempts: i64,
    pub next_attempt_unix: Option<i64>,
    pub lease_until: Option<i64>,
    pub renew_requested: bool,
    pub created_unix: i64,
    pub updated_unix: i64,
}

impl<'a> CertValues<'a> {
    pub(crate) fn of(cert: &'a CertRecord) -> StoreResult<Self> {
        Ok(Self {
            id: int(cert.id),
            tenant: cert.tenant.as_str(),
            app: cert.app.as_str(),
            hosts: hosts_to_json(&cert.hosts)?,
            source: cert.source.as_str(),
            material: MaterialColumns::of(cert.material.as_ref()),
            last_error: cert.last_error.as_deref(),
            attempts: i64::from(cert.attempts),
            next_attempt_unix: cert.next_attempt_unix.map(int),
            lease_until: cert.lease_until_unix.map(int),
            renew_requested: cert.renew_requested,
            created_unix: int(cert.created_unix),
            updated_unix: int(cert.updated_unix),
        })
    }
}

/// [`CERT_COLUMNS`] as read, before any check.
pub(crate) struct CertColumns {
    pub id: i64,
    pub tenant: String,
    pub app: String,
    /// JSON array of host patterns.
    pub hosts: String,
    pub source: String,
    pub chain_pem: Option<String>,
    pub sealed_key: Option<Vec<u8>>,
    pub bundle_sha256: Option<String>,
    pub bundle_size: Option<i64>,
    pub issuer: Option<String>,
    pub not_before_unix: Option<i64>,
    pub not_after_unix: Option<i64>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_unix: Option<i64>,
    pub lease_until: Option<i64>,
    pub renew_requested: bool,
    pub created_unix: i64,
    pub updated_unix: i64,
}

fn invalid(id: i64, what: &str) -> StoreError {
    StoreError::Backend(format!("stored certificate {id} is invalid: {what}"))
}

pub(crate) fn not_found(id: u64) -> StoreError {
    StoreError::NotFound(format!("certificate {id}"))
}

impl CertColumns {
    pub(crate) fn into_record(self) -> StoreResult<CertRecord> {
        let id = self.id;
        let material = match (
            self.chain_pem,
            self.sealed_key,
            self.bundle_sha256,
            self.bundle_size,
            self.issuer,
            self.not_before_unix,
            self.not_after_unix,
        ) {
            (
                Some(chain_pem),
                Some(sealed_key),
                Some(bundle_sha256),
                Some(bundle_size),
                Some(issuer),
                Some(not_before),
                Some(not_after),
            ) => Some(CertMaterial {
                chain_pem,
                sealed_key,
                bundle_sha256,
                bundle_size: uint(bundle_size),
                issuer,
                not_before_unix: uint(not_before),
                not_after_unix: uint(not_after),
            }),
            (None, None, None, None, None, None, None) => None,
            _ => return Err(invalid(id, "part of its material is missing")),
        };
        Ok(CertRecord {
            id: uint(id),
            tenant: self
                .tenant
                .try_into()
                .map_err(|e: String| invalid(id, &e))?,
            app: self.app.try_into().map_err(|e: String| invalid(id, &e))?,
            hosts: hosts_from_json(&self.hosts).map_err(|e| invalid(id, &e))?,
            source: CertSource::parse(&self.source)
                .ok_or_else(|| invalid(id, &format!("source {:?}", self.source)))?,
            material,
            last_error: self.last_error,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_unix: self.next_attempt_unix.map(uint),
            lease_until_unix: self.lease_until.map(uint),
            renew_requested: self.renew_requested,
            created_unix: uint(self.created_unix),
            updated_unix: uint(self.updated_unix),
        })
    }
}

pub(crate) fn hosts_to_json(hosts: &[HostPattern]) -> StoreResult<String> {
    serde_json::to_string(hosts).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) fn hosts_from_json(text: &str) -> Result<Vec<HostPattern>, String> {
    serde_json::from_str(text).map_err(|e| format!("hosts: {e}"))
}

/// The material as column values (all `None` without material), in
/// [`CERT_COLUMNS`]' order from `chain_pem` to `not_after_unix`.
pub(crate) struct MaterialColumns<'a> {
    pub chain_pem: Option<&'a str>,
    pub sealed_key: Option<&'a [u8]>,
    pub bundle_sha256: Option<&'a str>,
    pub bundle_size: Option<i64>,
    pub issuer: Option<&'a str>,
    pub not_before_unix: Option<i64>,
    pub not_after_unix: Option<i64>,
}

impl<'a> MaterialColumns<'a> {
    pub(crate) fn of(material: Option<&'a CertMaterial>) -> Self {
        Self {
            chain_pem: material.map(|m| m.chain_pem.as_str()),
            sealed_key: material.map(|m| m.sealed_key.as_slice()),
            bundle_sha256: material.map(|m| m.bundle_sha256.as_str()),
            bundle_size: material.map(|m| int(m.bundle_size)),
            issuer: material.map(|m| m.issuer.as_str()),
            not_before_unix: material.map(|m| int(m.not_before_unix)),
            not_after_unix: material.map(|m| int(m.not_after_unix)),
        }
    }
}

/// `$1`: the id. A certificate's lease, as [`LeaseState`] reads it.
pub(crate) const LEASE_STATE: &str = "SELECT lease_token, lease_until, next_attempt_unix, \
     renew_requested FROM certificates WHERE id = $1";

/// A certificate's lease as stored, read in the transaction that records
/// a result under it.
pub(crate) struct LeaseState {
    pub token: i64,
    pub lease_until: Option<i64>,
    pub next_attempt_unix: Option<i64>,
    pub renew_requested: bool,
}

impl LeaseState {
    /// `LeaseLost` unless `lease` is the latest claim and not ended by a
    /// recorded result. Its time is not checked: a lease past its end that
    /// no other claim took over still holds (nobody else ordered).
    pub(crate) fn check_held(&self, lease: &CertLease) -> StoreResult<()> {
        if uint(self.token) == lease.token && self.lease_until.is_some() {
            Ok(())
        } else {
            Err(StoreError::LeaseLost { id: lease.id })
        }
    }

    /// The next attempt after a result that asks for `next`: a renewal
    /// forced during the lease (which set the due time to when it was
    /// asked) keeps that earlier time, so the next claim acts on it.
    pub(crate) fn next_attempt_after(&self, next: Option<u64>) -> Option<u64> {
        let requested = self.next_attempt_unix.filter(|_| self.renew_requested);
        match (next, requested) {
            (Some(next), Some(requested)) => Some(next.min(uint(requested))),
            (next, requested) => next.or(requested.map(uint)),
        }
    }
}

/// `$1`: id, `$2`..`$8`: [`MaterialColumns`], `$9`: the next attempt,
/// `$10`: now. Ends the lease.
pub(crate) const RECORD_ISSUED: &str = "UPDATE certificates SET chain_pem = $2, sealed_key = $3, \
     bundle_sha256 = $4, bundle_size = $5, issuer = $6, not_before_unix = $7, \
     not_after_unix = $8, last_error = NULL, attempts = 0, next_attempt_unix = $9, \
     lease_until = NULL, updated_unix = $10 WHERE id = $1";
/// `$1`: id, `$2`: the error, `$3`: the next attempt, `$4`: now. Ends the
/// lease.
pub(crate) const RECORD_FAILURE: &str = "UPDATE certificates SET last_error = $2, \
     attempts = attempts + 1, next_attempt_unix = $3, lease_until = NULL, updated_unix = $4 \
     WHERE id = $1";
/// `$1`: id, `$2`: when, `$3`: now. Leaves any lease alone; an upload has
/// nothing to renew.
pub(crate) const SCHEDULE: &str = "UPDATE certificates SET next_attempt_unix = $2, \
     renew_requested = TRUE, updated_unix = $3 WHERE id = $1 AND source = 'acme'";
/// `$1`: id, `$2`: the sealed key it must still have, `$3`: the new one.
pub(crate) const RESEAL: &str =
    "UPDATE certificates SET sealed_key = $3 WHERE id = $1 AND sealed_key = $2";
pub(crate) const DELETE: &str = "DELETE FROM certificates WHERE id = $1";
/// `$1`: tenant, `$2`: app. The app's certificates' challenges, then its
/// certificates.
pub(crate) const DELETE_APP_CHALLENGES: &str = "DELETE FROM acme_challenges WHERE certificate IN \
     (SELECT id FROM certificates WHERE tenant = $1 AND app = $2)";
pub(crate) const DELETE_APP_CERTIFICATES: &str =
    "DELETE FROM certificates WHERE tenant = $1 AND app = $2";

/// `$1`: tenant, `$2`: app, `$3`: redirect, `$4`: HSTS, `$5`: revision.
pub(crate) const SET_APP_HTTPS: &str = "UPDATE apps SET https_redirect = $3, hsts = $4, \
     updated_revision = $5 WHERE tenant = $1 AND name = $2";

/// `$1`: certificate, `$2`: position, `$3`: host, `$4`: token, `$5`: key
/// authorization.
pub(crate) const INSERT_CHALLENGE: &str = "INSERT INTO acme_challenges \
     (certificate, position, host, token, key_authorization) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const CLEAR_CHALLENGES: &str = "DELETE FROM acme_challenges WHERE certificate = $1";
/// Every challenge as (certificate, host, token, key authorization), in
/// each certificate's order (a dump).
pub(crate) const ALL_CHALLENGES: &str = "SELECT certificate, host, token, key_authorization \
     FROM acme_challenges ORDER BY certificate, position";

pub(crate) const ACCOUNT: &str = "SELECT sealed FROM acme_accounts WHERE directory = $1";
pub(crate) const PUT_ACCOUNT_REPLACE: &str = "INSERT INTO acme_accounts (directory, sealed) \
     VALUES ($1, $2) ON CONFLICT (directory) DO UPDATE SET sealed = excluded.sealed";
pub(crate) const PUT_ACCOUNT_KEEP: &str = "INSERT INTO acme_accounts (directory, sealed) \
     VALUES ($1, $2) ON CONFLICT (directory) DO NOTHING";
pub(crate) const ACCOUNTS: &str = "SELECT directory, sealed FROM acme_accounts ORDER BY directory";

pub(crate) fn account_vanished(directory: &str) -> StoreError {
    StoreError::Backend(format!("the ACME account of {directory} vanished"))
}

/// Every (tenant, host) of the `hosts` table, for [`owned_by_tenant`].
pub(crate) const SNAPSHOT_HOSTS: &str = "SELECT tenant, host FROM hosts";

/// Every tenant's hostnames for [`OwnedHosts`] lookups, from `(tenant,
/// host)` rows of the `hosts` table.
pub(crate) fn owned_by_tenant(
    rows: impl IntoIterator<Item = (String, String)>,
) -> StoreResult<HashMap<String, OwnedHosts>> {
    let mut owned: HashMap<String, OwnedHosts> = HashMap::new();
    for (tenant, host) in rows {
        let host = HostPattern::try_from(host)
            .map_err(|e| StoreError::Backend(format!("stored value is invalid: {e}")))?;
        owned.entry(tenant).or_default().insert(host);
    }
    Ok(owned)
}

/// A certificate with material, as [`SNAPSHOT_CERTS`] reads it.
pub(crate) struct SnapshotCertColumns {
    pub id: i64,
    pub tenant: String,
    pub app: String,
    pub hosts: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub not_after_unix: i64,
}

/// The certificates with material, in [`SnapshotCertColumns`]' order.
pub(crate) const SNAPSHOT_CERTS: &str = "SELECT id, tenant, app, hosts, bundle_sha256, \
     bundle_size, not_after_unix FROM certificates WHERE chain_pem IS NOT NULL ORDER BY id";

/// Every challenge with its certificate's tenant: (tenant, host, token,
/// key authorization), by certificate then token.
pub(crate) const SNAPSHOT_CHALLENGES: &str = "SELECT c.tenant, a.host, a.token, \
     a.key_authorization FROM acme_challenges a JOIN certificates c ON c.id = a.certificate \
     ORDER BY a.certificate, a.token, a.position";

/// What nodes serve: each certificate (rows in id order) with only the
/// hosts its tenant still owns, and without those left with none.
pub(crate) fn snapshot_certificates(
    rows: Vec<SnapshotCertColumns>,
    owned: &HashMap<String, OwnedHosts>,
) -> StoreResult<Vec<SnapshotCertificate>> {
    let none = OwnedHosts::new();
    let mut certificates = Vec::with_capacity(rows.len());
    for row in rows {
        let hosts = hosts_from_json(&row.hosts).map_err(|e| invalid(row.id, &e))?;
        let hosts = owned.get(&row.tenant).unwrap_or(&none).filter(&hosts);
        if hosts.is_empty() {
            continue;
        }
        certificates.push(SnapshotCertificate {
            id: uint(row.id),
            tenant: row
                .tenant
                .try_into()
                .map_err(|e: String| invalid(row.id, &e))?,
            app: row
                .app
                .try_into()
                .map_err(|e: String| invalid(row.id, &e))?,
            hosts,
            bundle_sha256: row.bundle_sha256,
            bundle_size: uint(row.bundle_size),
            not_after_unix: uint(row.not_after_unix),
        });
    }
    Ok(certificates)
}

/// The pending challenges nodes answer, from `(tenant, challenge)` rows in
/// (certificate, token) order: only for names the certificate's tenant
/// still owns, so no node answers for a name that changed hands during an
/// order.
pub(crate) fn snapshot_challenges(
    rows: Vec<(String, AcmeChallenge)>,
    owned: &HashMap<String, OwnedHosts>,
) -> Vec<AcmeChallenge> {
    rows.into_iter()
        .filter(|(tenant, challenge)| {
            let host = HostPattern::try_from(challenge.host.clone());
            match (owned.get(tenant), host) {
                (Some(owned), Ok(host)) => owned.owns(&host),
                _ => false,
            }
        })
        .map(|(_, challenge)| challenge)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement's `$` starts a placeholder, so [`sqlite`]'s rewrite
    /// changes nothing else.
    #[test]
    fn statements_use_dollar_only_for_placeholders() {
        let statements = [
            select(BY_ID),
            select(BY_APP),
            select(OF_APP),
            select(EVERY),
            by_bundle(),
            due(),
            claim(),
            counts(),
            insert(),
            NEXT_DUE_FREE.into(),
            NEXT_DUE_LEASED.into(),
            LIMIT_COUNTS.into(),
            NEXT_ID.into(),
            COUNTER.into(),
            SET_COUNTER.into(),
            LEASE_STATE.into(),
            RECORD_ISSUED.into(),
            RECORD_FAILURE.into(),
            SCHEDULE.into(),
            RESEAL.into(),
            DELETE.into(),
            DELETE_APP_CHALLENGES.into(),
            DELETE_APP_CERTIFICATES.into(),
            SET_APP_HTTPS.into(),
            INSERT_CHALLENGE.into(),
            CLEAR_CHALLENGES.into(),
            ALL_CHALLENGES.into(),
            ACCOUNT.into(),
            PUT_ACCOUNT_REPLACE.into(),
            PUT_ACCOUNT_KEEP.into(),
            ACCOUNTS.into(),
            SNAPSHOT_HOSTS.into(),
            SNAPSHOT_CERTS.into(),
            SNAPSHOT_CHALLENGES.into(),
        ];
        for statement in &statements {
            let mut rest = statement.as_str();
            while let Some(at) = rest.find('$') {
                rest = &rest[at + 1..];
                assert!(
                    rest.starts_with(|c: char| c.is_ascii_digit()),
                    "{statement}"
                );
            }
            assert!(!sqlite(statement).contains('$'));
        }
        assert_eq!(sqlite("id = $1 AND x = $12"), "id = ?1 AND x = ?12");
        assert_eq!(insert().matches('$').count(), 19);
        assert_eq!(CERT_COLUMNS.split(',').count(), 19);
    }

    fn state(token: i64, lease_until: Option<i64>, next: Option<i64>, renew: bool) -> LeaseState {
        LeaseState {
            token,
            lease_until,
            next_attempt_unix: next,
            renew_requested: renew,
        }
    }

    #[test]
    fn a_result_is_recorded_only_under_the_latest_unended_claim() {
        let lease = CertLease {
            id: 7,
            token: 3,
            until_unix: 100,
        };
        assert!(
            state(3, Some(100), Some(1), false)
                .check_held(&lease)
                .is_ok()
        );
        assert!(
            state(3, Some(100), Some(1), false)
                .check_held(&CertLease {
                    until_unix: 5,
                    ..lease
                })
                .is_ok(),
            "the token decides, not the time"
        );
        for (lost, why) in [
            (state(4, Some(200), Some(1), false), "claimed again"),
            (state(3, None, Some(1), false), "recorded already"),
            (state(2, Some(100), Some(1), false), "an older token"),
        ] {
            assert!(
                matches!(
                    lost.check_held(&lease),
                    Err(StoreError::LeaseLost { id: 7 })
                ),
                "{why}"
            );
        }
    }

    #[test]
    fn a_renewal_forced_during_a_lease_outlives_its_result() {
        assert_eq!(
            state(1, Some(9), Some(50), false).next_attempt_after(Some(900)),
            Some(900),
            "no request: the result's time"
        );
        assert_eq!(
            state(1, Some(9), Some(50), true).next_attempt_after(Some(900)),
            Some(50),
            "asked for at 50: due then"
        );
        assert_eq!(
            state(1, Some(9), Some(950), true).next_attempt_after(Some(900)),
            Some(900),
            "the earlier of the two"
        );
        assert_eq!(
            state(1, Some(9), Some(50), true).next_attempt_after(None),
            Some(50)
        );
        assert_eq!(
            state(1, Some(9), Some(50), false).next_attempt_after(None),
            None
        );
    }

    #[test]
    fn the_next_due_time_is_the_earlier_answer() {
        assert_eq!(next_due(None, None), None);
        assert_eq!(next_due(Some(5), None), Some(5));
        assert_eq!(next_due(None, Some(7)), Some(7));
        assert_eq!(next_due(Some(9), Some(7)), Some(7));
    }
}
