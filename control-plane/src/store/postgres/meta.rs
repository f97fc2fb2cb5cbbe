//! [`MetaStore`] on PostgreSQL: each method one transaction (see the
//! parent module for how they are isolated and retried), statement for
//! statement the SQLite backend's.

use std::collections::BTreeMap;

use async_trait::async_trait;
use edge_common::AppLimits;
use edge_common::api::SetTenantLimits;
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::outbound::AppOutbound;
use edge_common::sync::{
    AcmeChallenge, AppHttps, ApplyOutcome, ArtifactRef, NodeReport, Purge, PurgeTarget, Snapshot,
};

use super::{
    Kind, PgMetaStore, app_exists, app_origin, bump_revision, certs, component_app,
    current_revision, epoch, int, json, load_app, load_version, outbound, parse, purge_columns,
    snapshot_apps, snapshot_origins, snapshot_purges, tenant_found, tenant_storage, to_json, u,
    version_row,
};
use crate::store::{
    AppOrigin, AppRecord, CertLease, CertLimits, CertMaterial, CertRecord, CertificateCounts,
    DeploymentRecord, MAX_PURGES_KEPT, MetaStore, NewCertificate, NewVersion, NodeRecord,
    PurgeRate, QuotaExceeded, StoreDump, StoreError, StoreResult, TenantRecord, TenantStorage,
    VersionRecord, now_unix, purge_rate_check,
};
use crate::store::{AppSecrets, SecretRecord, SecretWrite};
use crate::store::{LogPage, LogStart, LogSweep, LogTail, NewLogLine};
use edge_common::sync::TailedApp;

#[async_trait]
impl MetaStore for PgMetaStore {
    async fn revision(&self) -> StoreResult<u64> {
        transaction!(self, Kind::Read, |tx| current_revision(&tx).await?)
    }

    async fn epoch(&self) -> StoreResult<String> {
        transaction!(self, Kind::Read, |tx| epoch(&tx).await?)
    }

    async fn create_tenant(&self, id: &TenantId) -> StoreResult<TenantRecord> {
        transaction!(self, Kind::Write, |tx| {
            let created_unix = now_unix();
            let inserted = tx
                .execute(
                    "INSERT INTO tenants (id, created_unix) VALUES ($1, $2)
                     ON CONFLICT (id) DO NOTHING",
                    &[&id.as_str(), &int(created_unix)],
                )
                .await?;
            if inserted == 0 {
                return Err(StoreError::Exists(format!("tenant {id}")).into());
            }
            TenantRecord {
                id: id.clone(),
                created_unix,
            }
        })
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        transaction!(self, Kind::Read, |tx| {
            tx.query("SELECT id, created_unix FROM tenants ORDER BY id", &[])
                .await?
                .into_iter()
                .map(|row| {
                    Ok(TenantRecord {
                        id: parse(row.try_get(0)?)?,
                        created_unix: u(row.try_get(1)?),
                    })
                })
                .collect::<super::TxResult<Vec<_>>>()?
        })
    }

    async fn tenant_exists(&self, id: &TenantId) -> StoreResult<bool> {
        transaction!(self, Kind::Read, |tx| tenant_found(&tx, id).await?)
    }

    async fn tenant_storage(&self, id: &TenantId) -> StoreResult<TenantStorage> {
        transaction!(self, Kind::Read, |tx| tenant_storage(&tx, id).await?)
    }

    async fn set_tenant_quota(
        &self,
        id: &TenantId,
        quota_bytes: Option<u64>,
    ) -> StoreResult<TenantStorage> {
        // SQL integers are signed: a larger quota is as good as none.
        let quota = quota_bytes.map(int);
        transaction!(self, Kind::Write, |tx| {
            let updated = tx
                .execute(
                    "UPDATE tenants SET storage_quota_bytes = $2 WHERE id = $1",
                    &[&id.as_str(), &quota],
                )
                .await?;
            if updated == 0 {
                return Err(StoreError::NotFound(format!("tenant {id}")).into());
            }
            tenant_storage(&tx, id).await?
        })
    }

    async fn create_app(
        &self,
        tenant: &TenantId,
        name: &AppName,
        hosts: &[HostPattern],
        limits: &AppLimits,
        origin: Option<&AppOrigin>,
    ) -> StoreResult<AppRecord> {
        let limits = to_json(limits)?;
        let (url, forward_override_headers) = match origin {
            Some(o) => (Some(o.url.as_str()), o.forward_override_headers),
            None => (None, false),
        };
        transaction!(self, Kind::Write, |tx| {
            if !tenant_found(&tx, tenant).await? {
                return Err(StoreError::NotFound(format!("tenant {tenant}")).into());
            }
            if app_exists(&tx, tenant, name).await.is_ok() {
                return Err(StoreError::Exists(format!("app {name}")).into());
            }
            // No hostname of another tenant may overlap (exact under a
            // wildcard, nested wildcards). SERIALIZABLE makes this read
            // and the inserts below one step: a replica inserting an
            // overlapping name meanwhile makes one of the two abort.
            let others = tx
                .query(
                    "SELECT host FROM hosts WHERE tenant <> $1",
                    &[&tenant.as_str()],
                )
                .await?;
            for row in others {
                let other: HostPattern = parse(row.try_get(0)?)?;
                if let Some(host) = hosts.iter().find(|h| h.overlaps(&other)) {
                    return Err(StoreError::HostTaken(host.to_string()).into());
                }
            }
            for (position, host) in hosts.iter().enumerate() {
                let inserted = tx
                    .execute(
                        "INSERT INTO hosts (host, tenant, app, position) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (host) DO NOTHING",
                        &[
                            &host.to_string(),
                            &tenant.as_str(),
                            &name.as_str(),
                            &(position as i64),
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    // Returning drops the transaction unsaved: nothing of
                    // this app is kept.
                    return Err(StoreError::HostTaken(host.to_string()).into());
                }
            }
            // An origin app is served from this revision on.
            let revision = bump_revision(&tx).await?;
            tx.execute(
                "INSERT INTO apps (tenant, name, active_version, origin, forward_override_headers,
                                   config, limits, created_unix, updated_revision)
                 VALUES ($1, $2, NULL, $3, $4, '{}', $5, $6, $7)",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &url,
                    &forward_override_headers,
                    &limits,
                    &int(now_unix()),
                    &int(revision),
                ],
            )
            .await?;
            load_app(&tx, tenant, name).await?
        })
    }

    async fn list_apps(&self, tenant: &TenantId) -> StoreResult<Vec<AppRecord>> {
        transaction!(self, Kind::Read, |tx| {
            let names = tx
                .query(
                    "SELECT name FROM apps WHERE tenant = $1 ORDER BY name",
                    &[&tenant.as_str()],
                )
                .await?;
            let mut apps = Vec::with_capacity(names.len());
            for row in names {
                apps.push(load_app(&tx, tenant, &parse(row.try_get(0)?)?).await?);
            }
            apps
        })
    }

    async fn get_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppRecord> {
        transaction!(self, Kind::Read, |tx| load_app(&tx, tenant, name).await?)
    }

    async fn delete_app(&self, tenant: &TenantId, name: &AppName) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| {
            app_exists(&tx, tenant, name).await?;
            certs::delete_of_app(&tx, tenant, name).await?;
            super::secrets::delete_of_app(&tx, tenant, name).await?;
            outbound::delete_of_app(&tx, tenant, name).await?;
            super::kv::delete_of_app(&tx, tenant, name).await?;
            for sql in [
                "DELETE FROM apps WHERE tenant = $1 AND name = $2",
                "DELETE FROM hosts WHERE tenant = $1 AND app = $2",
                "DELETE FROM versions WHERE tenant = $1 AND app = $2",
                "DELETE FROM deployments WHERE tenant = $1 AND app = $2",
            ] {
                tx.execute(sql, &[&tenant.as_str(), &name.as_str()]).await?;
            }
            bump_revision(&tx).await?
        })
    }

    async fn set_origin(
        &self,
        tenant: &TenantId,
        name: &AppName,
        url: &str,
        forward_override_headers: Option<bool>,
    ) -> StoreResult<(AppOrigin, u64)> {
        transaction!(self, Kind::Write, |tx| {
            if app_origin(&tx, tenant, name).await?.is_none() {
                return Err(StoreError::NotOriginApp(name.to_string()).into());
            }
            let revision = bump_revision(&tx).await?;
            // NULL keeps the stored option.
            tx.execute(
                "UPDATE apps SET origin = $3,
                    forward_override_headers = COALESCE($4, forward_override_headers),
                    updated_revision = $5
                 WHERE tenant = $1 AND name = $2",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &url,
                    &forward_override_headers,
                    &int(revision),
                ],
            )
            .await?;
            let origin = load_app(&tx, tenant, name)
                .await?
                .origin
                .ok_or_else(|| StoreError::Backend(format!("app {name}: its origin vanished")))?;
            (origin, revision)
        })
    }

    async fn add_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: &NewVersion,
        default_quota_bytes: u64,
    ) -> StoreResult<VersionRecord> {
        transaction!(self, Kind::Write, |tx| {
            component_app(&tx, tenant, name).await?;
            // In the insert's SERIALIZABLE transaction: concurrent uploads
            // of one tenant, on any replica, are counted one after the
            // other (one aborts and is run again).
            let storage = tenant_storage(&tx, tenant).await?;
            QuotaExceeded::check(
                tenant,
                storage.quota_bytes.unwrap_or(default_quota_bytes),
                storage.used_bytes,
                version.source_size,
            )?;
            let next: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE tenant = $1 AND app = $2",
                    &[&tenant.as_str(), &name.as_str()],
                )
                .await?
                .try_get(0)?;
            let created_unix = now_unix();
            tx.execute(
                "INSERT INTO versions (tenant, app, version, source_sha256, source_size,
                                       artifact_sha256, artifact_size, engine, created_unix)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &next,
                    &version.source_sha256,
                    &int(version.source_size),
                    &version.artifact.sha256,
                    &int(version.artifact.size),
                    &version.artifact.engine,
                    &int(created_unix),
                ],
            )
            .await?;
            VersionRecord {
                version: u(next),
                source_sha256: version.source_sha256.clone(),
                source_size: version.source_size,
                artifact: version.artifact.clone(),
                created_unix,
            }
        })
    }

    async fn list_versions(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<VersionRecord>> {
        transaction!(self, Kind::Read, |tx| {
            app_exists(&tx, tenant, name).await?;
            tx.query(
                "SELECT source_sha256, source_size, artifact_sha256, artifact_size, engine,
                        created_unix, version
                 FROM versions WHERE tenant = $1 AND app = $2 ORDER BY version",
                &[&tenant.as_str(), &name.as_str()],
            )
            .await?
            .iter()
            .map(|row| version_row(u(row.try_get(6)?), row))
            .collect::<super::TxResult<Vec<_>>>()?
        })
    }

    async fn delete_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<()> {
        transaction!(self, Kind::Write, |tx| {
            let app = load_app(&tx, tenant, name).await?;
            if app.active_version == Some(version) {
                return Err(StoreError::Exists(format!(
                    "version {version} of app {name} is active; it"
                ))
                .into());
            }
            let deleted = tx
                .execute(
                    "DELETE FROM versions WHERE tenant = $1 AND app = $2 AND version = $3",
                    &[&tenant.as_str(), &name.as_str(), &int(version)],
                )
                .await?;
            if deleted == 0 {
                return Err(
                    StoreError::NotFound(format!("version {version} of app {name}")).into(),
                );
            }
        })
    }

    async fn activate_version(
        &self,
        tenant: &TenantId,
        name: &AppName,
        version: u64,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| {
            component_app(&tx, tenant, name).await?;
            if load_version(&tx, tenant, name, version).await?.is_none() {
                return Err(
                    StoreError::NotFound(format!("version {version} of app {name}")).into(),
                );
            }
            let revision = bump_revision(&tx).await?;
            tx.execute(
                "UPDATE apps SET active_version = $3, updated_revision = $4
                 WHERE tenant = $1 AND name = $2",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &int(version),
                    &int(revision),
                ],
            )
            .await?;
            tx.execute(
                "INSERT INTO deployments (tenant, app, version, revision, created_unix)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &int(version),
                    &int(revision),
                    &int(now_unix()),
                ],
            )
            .await?;
            revision
        })
    }

    async fn deployments(
        &self,
        tenant: &TenantId,
        name: &AppName,
    ) -> StoreResult<Vec<DeploymentRecord>> {
        transaction!(self, Kind::Read, |tx| {
            app_exists(&tx, tenant, name).await?;
            tx.query(
                "SELECT version, revision, created_unix FROM deployments
                 WHERE tenant = $1 AND app = $2 ORDER BY id",
                &[&tenant.as_str(), &name.as_str()],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(DeploymentRecord {
                    version: u(row.try_get(0)?),
                    revision: u(row.try_get(1)?),
                    created_unix: u(row.try_get(2)?),
                })
            })
            .collect::<super::TxResult<Vec<_>>>()?
        })
    }

    async fn update_config(
        &self,
        tenant: &TenantId,
        name: &AppName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| {
            let mut config = load_app(&tx, tenant, name).await?.config;
            for (key, value) in changes {
                match value {
                    Some(value) => config.insert(key.clone(), value.clone()),
                    None => config.remove(key),
                };
            }
            let revision = bump_revision(&tx).await?;
            tx.execute(
                "UPDATE apps SET config = $3, updated_revision = $4 WHERE tenant = $1 AND name = $2",
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &to_json(&config)?,
                    &int(revision),
                ],
            )
            .await?;
            revision
        })
    }

    async fn set_limits(
        &self,
        tenant: &TenantId,
        name: &AppName,
        limits: &AppLimits,
    ) -> StoreResult<u64> {
        let limits = to_json(limits)?;
        transaction!(self, Kind::Write, |tx| {
            app_exists(&tx, tenant, name).await?;
            let revision = bump_revision(&tx).await?;
            tx.execute(
                "UPDATE apps SET limits = $3, updated_revision = $4 WHERE tenant = $1 AND name = $2",
                &[&tenant.as_str(), &name.as_str(), &limits, &int(revision)],
            )
            .await?;
            revision
        })
    }

    async fn add_purge(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
    ) -> StoreResult<(Purge, u64)> {
        self.add_purge_limited(tenant, name, target, soft, None)
            .await
    }

    async fn add_purge_within(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: PurgeRate,
    ) -> StoreResult<(Purge, u64)> {
        self.add_purge_limited(tenant, name, target, soft, Some(rate))
            .await
    }

    async fn snapshot(&self) -> StoreResult<Snapshot> {
        transaction!(self, Kind::Read, |tx| {
            let (certificates, acme_challenges) = certs::snapshot(&tx).await?;
            Snapshot {
                epoch: epoch(&tx).await?,
                revision: current_revision(&tx).await?,
                created_unix: now_unix(),
                apps: snapshot_apps(&tx).await?,
                origins: snapshot_origins(&tx).await?,
                purges: snapshot_purges(&tx).await?,
                certificates,
                acme_challenges,
                tails: super::logs::snapshot_tails(&tx, now_unix()).await?,
            }
        })
    }

    async fn find_artifact(
        &self,
        source_sha256: &str,
        engine: &str,
    ) -> StoreResult<Option<ArtifactRef>> {
        transaction!(self, Kind::Read, |tx| {
            match tx
                .query_opt(
                    "SELECT artifact_sha256, size FROM artifacts
                     WHERE source_sha256 = $1 AND engine = $2",
                    &[&source_sha256, &engine],
                )
                .await?
            {
                Some(row) => Some(ArtifactRef {
                    sha256: row.try_get(0)?,
                    size: u(row.try_get(1)?),
                    engine: engine.to_string(),
                }),
                None => None,
            }
        })
    }

    async fn record_artifact(
        &self,
        source_sha256: &str,
        artifact: &ArtifactRef,
    ) -> StoreResult<()> {
        transaction!(self, Kind::Write, |tx| {
            tx.execute(
                "INSERT INTO artifacts (source_sha256, engine, artifact_sha256, size)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source_sha256, engine) DO UPDATE
                 SET artifact_sha256 = excluded.artifact_sha256, size = excluded.size",
                &[
                    &source_sha256,
                    &artifact.engine,
                    &artifact.sha256,
                    &int(artifact.size),
                ],
            )
            .await?;
        })
    }

    async fn is_artifact(&self, sha256: &str) -> StoreResult<bool> {
        transaction!(self, Kind::Read, |tx| {
            // A version's artifact counts even if its compile record was
            // forgotten (garbage collection may drop the record of an
            // artifact an upload is about to reuse).
            tx.query_opt(
                "SELECT 1 FROM artifacts WHERE artifact_sha256 = $1
                 UNION ALL SELECT 1 FROM versions WHERE artifact_sha256 = $1 LIMIT 1",
                &[&sha256],
            )
            .await?
            .is_some()
        })
    }

    async fn unreferenced_blobs(&self, candidates: &[String]) -> StoreResult<Vec<String>> {
        transaction!(self, Kind::Write, |tx| {
            let mut unreferenced = Vec::new();
            for sha in candidates {
                let referenced = tx
                    .query_opt(
                        "SELECT 1 FROM versions WHERE source_sha256 = $1
                         UNION ALL SELECT 1 FROM versions WHERE artifact_sha256 = $1 LIMIT 1",
                        &[sha],
                    )
                    .await?
                    .is_some();
                if !referenced {
                    tx.execute(
                        "DELETE FROM artifacts WHERE source_sha256 = $1 OR artifact_sha256 = $1",
                        &[sha],
                    )
                    .await?;
                    unreferenced.push(sha.clone());
                }
            }
            unreferenced
        })
    }

    async fn record_node_report(
        &self,
        node: &str,
        report: &NodeReport,
        now_unix: u64,
    ) -> StoreResult<()> {
        let revision = int(report.revision);
        let app_errors = to_json(&report.app_errors)?;
        transaction!(self, Kind::Write, |tx| {
            match report.outcome {
                // The latest ACK wins: after a store restore revisions start
                // over, and the report is of what the node serves now.
                ApplyOutcome::Applied => tx.execute(
                    "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error,
                                        app_errors, engine, last_seen_unix)
                     VALUES ($1, $2, NULL, NULL, $3, $4, $5)
                     ON CONFLICT (node) DO UPDATE SET applied_revision = excluded.applied_revision,
                        app_errors = excluded.app_errors, engine = excluded.engine,
                        last_seen_unix = excluded.last_seen_unix",
                    &[
                        &node,
                        &revision,
                        &app_errors,
                        &report.engine,
                        &int(now_unix),
                    ],
                )
                .await?,
                ApplyOutcome::Rejected => tx.execute(
                    "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error,
                                        engine, last_seen_unix)
                     VALUES ($1, NULL, $2, $3, $4, $5)
                     ON CONFLICT (node) DO UPDATE SET rejected_revision = excluded.rejected_revision,
                        last_error = excluded.last_error, engine = excluded.engine,
                        last_seen_unix = excluded.last_seen_unix",
                    &[
                        &node,
                        &revision,
                        &report.error,
                        &report.engine,
                        &int(now_unix),
                    ],
                )
                .await?,
            };
        })
    }

    async fn touch_node(&self, node: &str, now_unix: u64) -> StoreResult<()> {
        transaction!(self, Kind::Write, |tx| {
            tx.execute(
                "INSERT INTO nodes (node, engine, last_seen_unix) VALUES ($1, '', $2)
                 ON CONFLICT (node) DO UPDATE SET last_seen_unix = excluded.last_seen_unix",
                &[&node, &int(now_unix)],
            )
            .await?;
        })
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        transaction!(self, Kind::Read, |tx| {
            tx.query(
                "SELECT node, applied_revision, rejected_revision, last_error, engine,
                        last_seen_unix, app_errors
                 FROM nodes ORDER BY node",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(NodeRecord {
                    node: row.try_get(0)?,
                    applied_revision: row.try_get::<_, Option<i64>>(1)?.map(u),
                    rejected_revision: row.try_get::<_, Option<i64>>(2)?.map(u),
                    last_error: row.try_get(3)?,
                    engine: row.try_get(4)?,
                    last_seen_unix: u(row.try_get(5)?),
                    app_errors: json(row.try_get(6)?).unwrap_or_default(),
                })
            })
            .collect::<super::TxResult<Vec<_>>>()?
        })
    }

    async fn set_app_https(
        &self,
        tenant: &TenantId,
        name: &AppName,
        https: &AppHttps,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| certs::set_app_https(
            &tx, tenant, name, https
        )
        .await?)
    }

    async fn add_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        new: NewCertificate,
        limits: &CertLimits,
    ) -> StoreResult<(CertRecord, u64)> {
        transaction!(self, Kind::Write, |tx| certs::add(
            &tx, tenant, app, &new, limits
        )
        .await?)
    }

    async fn list_certificates(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<CertRecord>> {
        transaction!(self, Kind::Read, |tx| certs::list(&tx, tenant, app).await?)
    }

    async fn all_certificates(&self) -> StoreResult<Vec<CertRecord>> {
        transaction!(self, Kind::Read, |tx| certs::all(&tx).await?)
    }

    async fn get_certificate(&self, id: u64) -> StoreResult<CertRecord> {
        transaction!(self, Kind::Read, |tx| certs::load(&tx, id).await?)
    }

    async fn certificate_by_bundle(&self, sha256: &str) -> StoreResult<Option<CertRecord>> {
        transaction!(self, Kind::Read, |tx| certs::by_bundle(&tx, sha256).await?)
    }

    async fn delete_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| certs::delete(&tx, tenant, app, id)
            .await?)
    }

    async fn due_certificates(&self, now_unix: u64, limit: usize) -> StoreResult<Vec<CertRecord>> {
        transaction!(self, Kind::Read, |tx| certs::due(&tx, now_unix, limit)
            .await?)
    }

    async fn next_certificate_due(&self, now_unix: u64) -> StoreResult<Option<u64>> {
        transaction!(self, Kind::Read, |tx| certs::next_due(&tx, now_unix)
            .await?)
    }

    async fn certificate_counts(&self, now_unix: u64) -> StoreResult<CertificateCounts> {
        transaction!(self, Kind::Read, |tx| certs::counts(&tx, now_unix).await?)
    }

    async fn claim_certificate(
        &self,
        id: u64,
        now_unix: u64,
        lease_until: u64,
    ) -> StoreResult<Option<CertLease>> {
        transaction!(self, Kind::Write, |tx| certs::claim(
            &tx,
            id,
            now_unix,
            lease_until
        )
        .await?)
    }

    async fn record_certificate_issued(
        &self,
        lease: &CertLease,
        material: CertMaterial,
        next_attempt_unix: Option<u64>,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| certs::record_issued(
            &tx,
            lease,
            &material,
            next_attempt_unix
        )
        .await?)
    }

    async fn record_certificate_failure(
        &self,
        lease: &CertLease,
        error: &str,
        next_attempt_unix: u64,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| certs::record_failure(
            &tx,
            lease,
            error,
            next_attempt_unix
        )
        .await?)
    }

    async fn schedule_certificate(
        &self,
        tenant: &TenantId,
        app: &AppName,
        id: u64,
        at: u64,
    ) -> StoreResult<CertRecord> {
        transaction!(self, Kind::Write, |tx| certs::schedule(
            &tx, tenant, app, id, at
        )
        .await?)
    }

    async fn set_acme_challenges(&self, id: u64, challenges: &[AcmeChallenge]) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| certs::set_challenges(
            &tx, id, challenges
        )
        .await?)
    }

    async fn reseal_certificate_key(&self, id: u64, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        transaction!(self, Kind::Write, |tx| certs::reseal(&tx, id, old, new)
            .await?)
    }

    async fn acme_account(&self, directory: &str) -> StoreResult<Option<Vec<u8>>> {
        transaction!(self, Kind::Read, |tx| certs::account(&tx, directory)
            .await?)
    }

    async fn put_acme_account(
        &self,
        directory: &str,
        sealed: &[u8],
        replace: bool,
    ) -> StoreResult<Vec<u8>> {
        transaction!(self, Kind::Write, |tx| certs::put_account(
            &tx, directory, sealed, replace
        )
        .await?)
    }

    async fn acme_accounts(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        transaction!(self, Kind::Read, |tx| certs::accounts(&tx).await?)
    }

    async fn app_outbound(&self, tenant: &TenantId, name: &AppName) -> StoreResult<AppOutbound> {
        transaction!(self, Kind::Read, |tx| outbound::get(&tx, tenant, name)
            .await?)
    }

    async fn set_app_outbound(
        &self,
        tenant: &TenantId,
        name: &AppName,
        policy: &AppOutbound,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| outbound::set(
            &tx, tenant, name, policy
        )
        .await?)
    }

    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<SetTenantLimits> {
        transaction!(self, Kind::Read, |tx| outbound::limits(&tx, tenant).await?)
    }

    async fn set_tenant_limits(
        &self,
        tenant: &TenantId,
        limits: &SetTenantLimits,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::Write, |tx| outbound::set_limits(
            &tx, tenant, limits
        )
        .await?)
    }

    // ---- Live logs (`super::logs`).

    async fn add_log_tail(&self, tail: &LogTail, max_per_tenant: u64) -> StoreResult<Option<u64>> {
        transaction!(self, Kind::Write, |tx| super::logs::add_tail(
            &tx,
            tail,
            max_per_tenant
        )
        .await?)
    }

    async fn refresh_log_tail(
        &self,
        id: &str,
        now_unix: u64,
        expires_unix: u64,
    ) -> StoreResult<bool> {
        transaction!(self, Kind::Write, |tx| super::logs::refresh_tail(
            &tx,
            id,
            now_unix,
            expires_unix
        )
        .await?)
    }

    async fn delete_log_tail(&self, id: &str, now_unix: u64) -> StoreResult<Option<u64>> {
        transaction!(self, Kind::Write, |tx| super::logs::delete_tail(
            &tx, id, now_unix
        )
        .await?)
    }

    async fn sweep_logs(&self, now_unix: u64, lines_before_ms: u64) -> StoreResult<LogSweep> {
        transaction!(self, Kind::Write, |tx| super::logs::sweep(
            &tx,
            now_unix,
            lines_before_ms
        )
        .await?)
    }

    async fn active_log_tails(&self, now_unix: u64) -> StoreResult<u64> {
        transaction!(self, Kind::Read, |tx| super::logs::active(&tx, now_unix)
            .await?)
    }

    async fn append_log_lines(
        &self,
        node: &str,
        lines: &[NewLogLine],
        now_unix: u64,
        max_per_tenant: u64,
    ) -> StoreResult<u64> {
        // READ COMMITTED: the `log_seq` row lock orders appenders (a
        // second one waits, then reads the first's committed value),
        // where SERIALIZABLE would fail it with 40001 and retry the batch.
        transaction!(self, Kind::ReadCommitted, |tx| super::logs::append(
            &tx,
            node,
            lines,
            now_unix,
            max_per_tenant
        )
        .await?)
    }

    async fn log_lines(
        &self,
        tenant: &TenantId,
        app: &AppName,
        after_seq: u64,
        since_ms: u64,
        limit: usize,
    ) -> StoreResult<LogPage> {
        transaction!(self, Kind::Read, |tx| super::logs::lines(
            &tx, tenant, app, after_seq, since_ms, limit
        )
        .await?)
    }

    async fn log_start(
        &self,
        tenant: &TenantId,
        app: &AppName,
        since_ms: Option<u64>,
    ) -> StoreResult<LogStart> {
        transaction!(self, Kind::Read, |tx| super::logs::start(
            &tx, tenant, app, since_ms
        )
        .await?)
    }

    async fn log_tailed_apps(&self, now_unix: u64) -> StoreResult<Vec<TailedApp>> {
        transaction!(self, Kind::Read, |tx| super::logs::snapshot_tails(
            &tx, now_unix
        )
        .await?)
    }

    async fn last_log_seq(&self) -> StoreResult<u64> {
        transaction!(self, Kind::Read, |tx| super::logs::last_seq(&tx).await?)
    }

    // ---- App secrets (`secrets`).

    async fn app_secrets(&self, tenant: &TenantId, app: &AppName) -> StoreResult<AppSecrets> {
        transaction!(self, Kind::Read, |tx| super::secrets::app_secrets(
            &tx, tenant, app
        )
        .await?)
    }

    async fn secrets_by_bundle(&self, sha256: &str) -> StoreResult<Option<AppSecrets>> {
        transaction!(self, Kind::Read, |tx| super::secrets::by_bundle(
            &tx, sha256
        )
        .await?)
    }

    async fn write_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        write: &SecretWrite,
    ) -> StoreResult<(Option<SecretRecord>, u64)> {
        transaction!(self, Kind::Write, |tx| super::secrets::write(
            &tx, tenant, app, write
        )
        .await?)
    }

    async fn all_secrets(&self) -> StoreResult<Vec<SecretRecord>> {
        transaction!(self, Kind::Read, |tx| super::secrets::all(&tx).await?)
    }

    async fn reseal_secret(
        &self,
        tenant: &TenantId,
        app: &AppName,
        name: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        transaction!(self, Kind::Write, |tx| super::secrets::reseal(
            &tx, tenant, app, name, old, new
        )
        .await?)
    }

    // ---- Key-value stores (`super::kv`). Writers that take a seq run
    // READ COMMITTED behind the `kv_seq` row lock (see `kv_rows::LOCK_SEQ`):
    // SERIALIZABLE would fail every concurrent writer of the counter.

    async fn kv_create_store(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
        now_unix: u64,
    ) -> StoreResult<crate::store::KvStoreRecord> {
        transaction!(self, Kind::Write, |tx| super::kv::create_store(
            &tx, tenant, name, id, now_unix
        )
        .await?)
    }

    async fn kv_stores(&self, tenant: &TenantId) -> StoreResult<Vec<crate::store::KvStoreRecord>> {
        transaction!(self, Kind::Read, |tx| super::kv::stores(&tx, tenant)
            .await?)
    }

    async fn kv_store(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> StoreResult<crate::store::KvStoreRecord> {
        transaction!(self, Kind::Read, |tx| super::kv::store(&tx, tenant, name)
            .await?)
    }

    async fn kv_drop_store(
        &self,
        tenant: &TenantId,
        name: &str,
        now_unix: u64,
    ) -> StoreResult<u64> {
        transaction!(self, Kind::ReadCommitted, |tx| super::kv::drop_store(
            &tx, tenant, name, now_unix
        )
        .await?)
    }

    async fn kv_link(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>> {
        transaction!(self, Kind::Write, |tx| super::kv::link(
            &tx, tenant, app, store, true
        )
        .await?)
    }

    async fn kv_unlink(
        &self,
        tenant: &TenantId,
        app: &AppName,
        store: &str,
    ) -> StoreResult<Option<u64>> {
        transaction!(self, Kind::Write, |tx| super::kv::link(
            &tx, tenant, app, store, false
        )
        .await?)
    }

    async fn kv_app_links(
        &self,
        tenant: &TenantId,
        app: &AppName,
    ) -> StoreResult<Vec<edge_common::kv::KvLink>> {
        transaction!(self, Kind::Read, |tx| super::kv::app_links(
            &tx, tenant, app
        )
        .await?)
    }

    async fn kv_get(
        &self,
        tenant: &TenantId,
        store: &str,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        transaction!(self, Kind::Read, |tx| super::kv::get(
            &tx, tenant, store, key
        )
        .await?)
    }

    async fn kv_keys(
        &self,
        tenant: &TenantId,
        store: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        transaction!(self, Kind::Read, |tx| super::kv::keys(
            &tx, tenant, store, prefix, after, limit
        )
        .await?)
    }

    async fn kv_write(
        &self,
        write: &crate::store::KvWrite,
    ) -> StoreResult<crate::store::KvWriteOutcome> {
        transaction!(self, Kind::ReadCommitted, |tx| super::kv::write(&tx, write)
            .await?)
    }

    async fn kv_changes(&self, since: u64, limit: usize) -> StoreResult<crate::store::KvChanges> {
        transaction!(self, Kind::Read, |tx| super::kv::changes(&tx, since, limit)
            .await?)
    }

    async fn kv_head(&self) -> StoreResult<crate::store::KvHead> {
        transaction!(self, Kind::Read, |tx| super::kv::head(&tx).await?)
    }

    async fn kv_snapshot_page(
        &self,
        at: u64,
        after: Option<&edge_common::kv::KvCursor>,
        limit: usize,
    ) -> StoreResult<crate::store::KvPage> {
        transaction!(self, Kind::Read, |tx| super::kv::snapshot_page(
            &tx, at, after, limit
        )
        .await?)
    }

    async fn kv_prune(&self, before_unix: u64) -> StoreResult<crate::store::KvPruneOutcome> {
        transaction!(self, Kind::ReadCommitted, |tx| super::kv::prune(
            &tx,
            before_unix
        )
        .await?)
    }

    async fn set_app_compression(
        &self,
        tenant: &TenantId,
        name: &AppName,
        compression: &edge_common::sync::AppCompression,
    ) -> StoreResult<u64> {
        use crate::store::compression_rows::{SET_APP_COMPRESSION, values};
        let (enabled, min_bytes) = values(compression);
        transaction!(self, Kind::Write, |tx| {
            super::app_exists(&tx, tenant, name).await?;
            let revision = super::bump_revision(&tx).await?;
            tx.execute(
                SET_APP_COMPRESSION,
                &[
                    &tenant.as_str(),
                    &name.as_str(),
                    &enabled,
                    &min_bytes,
                    &crate::store::cert_rows::int(revision),
                ],
            )
            .await?;
            revision
        })
    }

    async fn dump(&self) -> StoreResult<StoreDump> {
        transaction!(self, Kind::Read, |tx| super::dump::dump(&tx).await?)
    }

    async fn restore(&self, dump: StoreDump) -> StoreResult<()> {
        transaction!(self, Kind::Write, |tx| super::dump::restore(&tx, &dump)
            .await?)
    }
}

impl PgMetaStore {
    /// `add_purge`, within `rate` if given (one transaction).
    async fn add_purge_limited(
        &self,
        tenant: &TenantId,
        name: &AppName,
        target: &PurgeTarget,
        soft: bool,
        rate: Option<PurgeRate>,
    ) -> StoreResult<(Purge, u64)> {
        transaction!(self, Kind::Write, |tx| {
            app_exists(&tx, tenant, name).await?;
            if let Some(rate) = rate {
                let since = int(now_unix().saturating_sub(rate.window_secs));
                let row = tx
                    .query_one(
                        "SELECT COUNT(*), MIN(created_unix) FROM purges WHERE tenant = $1 AND created_unix > $2",
                        &[&tenant.as_str(), &since],
                    )
                    .await?;
                let made: i64 = row.try_get(0)?;
                let oldest: Option<i64> = row.try_get(1)?;
                purge_rate_check(tenant, rate, u(made), oldest.map(u))?;
            }
            let id: i64 = tx
                .query_one(
                    "UPDATE purge_counter SET value = value + 1 WHERE id = 1 RETURNING value",
                    &[],
                )
                .await?
                .try_get(0)?;
            let purge = Purge {
                id: u(id),
                tenant: tenant.clone(),
                app: name.clone(),
                target: target.clone(),
                soft,
                created_unix: now_unix(),
            };
            let (kind, value) = purge_columns(&purge.target);
            tx.execute(
                "INSERT INTO purges (id, tenant, app, kind, value, soft, created_unix)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &id,
                    &purge.tenant.as_str(),
                    &purge.app.as_str(),
                    &kind,
                    &value,
                    &purge.soft,
                    &int(purge.created_unix),
                ],
            )
            .await?;
            tx.execute(
                "DELETE FROM purges WHERE id <= $1",
                &[&(id - MAX_PURGES_KEPT as i64)],
            )
            .await?;
            (purge, bump_revision(&tx).await?)
        })
    }
}
