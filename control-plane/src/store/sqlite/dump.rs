//! [`StoreDump`] out of and into the SQLite store, each in the caller's
//! transaction.

use rusqlite::{Row, Transaction, params};

use super::{backend, certs, outbound, parse, purge_columns, purge_target};
use crate::store::dump::SecretBundleRow;
use crate::store::dump::{
    AcmeAccountRow, AcmeChallengeRow, AppRow, ArtifactRow, DeploymentRow, HostRow, NodeRow,
    RestoreError, TenantRow, VersionRow,
};
use crate::store::{StoreDump, StoreError, StoreResult};
use edge_common::sync::{AppHttps, Purge};

/// Every row of `sql`, each read by `f`.
fn rows<T>(
    tx: &Transaction<'_>,
    sql: &str,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = tx.prepare(sql).map_err(backend)?;
    stmt.query_map([], f)
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("stored JSON: {e}")))
}

fn u(v: i64) -> u64 {
    v as u64
}

/// A number as SQLite keeps it; [`StoreDump::check`] has bounded them.
fn i(v: u64) -> i64 {
    v as i64
}

pub(super) fn dump(tx: &Transaction<'_>) -> StoreResult<StoreDump> {
    let one = |sql: &str| {
        tx.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(backend)
    };
    let epoch: String = tx
        .query_row("SELECT epoch FROM identity WHERE id = 1", [], |r| r.get(0))
        .map_err(backend)?;
    let tenants = rows(
        tx,
        "SELECT id, created_unix, storage_quota_bytes FROM tenants ORDER BY id",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        },
    )?
    .into_iter()
    .map(|(id, created, quota)| {
        Ok(TenantRow {
            id: parse(id)?,
            created_unix: u(created),
            storage_quota_bytes: quota.map(u),
        })
    })
    .collect::<StoreResult<_>>()?;
    let apps = rows(
        tx,
        "SELECT tenant, name, active_version, origin, forward_override_headers, config, limits,
                created_unix, updated_revision, https_redirect, hsts,
                compression_enabled, compression_min_bytes
         FROM apps ORDER BY tenant, name",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                AppHttps {
                    redirect: r.get(9)?,
                    hsts: r.get(10)?,
                },
                crate::store::compression_rows::from_columns(r.get(11)?, r.get(12)?),
            ))
        },
    )?
    .into_iter()
    .map(
        |(
            tenant,
            name,
            active,
            origin,
            forward,
            config,
            limits,
            created,
            updated,
            https,
            compression,
        )| {
            Ok(AppRow {
                tenant: parse(tenant)?,
                name: parse(name)?,
                active_version: active.map(u),
                origin,
                forward_override_headers: forward,
                config: json(&config)?,
                limits: json(&limits)?,
                https,
                compression,
                created_unix: u(created),
                updated_revision: u(updated),
            })
        },
    )
    .collect::<StoreResult<_>>()?;
    let hosts = rows(
        tx,
        "SELECT host, tenant, app, position FROM hosts ORDER BY host",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?
    .into_iter()
    .map(|(host, tenant, app, position)| {
        Ok(HostRow {
            host: parse(host)?,
            tenant: parse(tenant)?,
            app: parse(app)?,
            position: u(position),
        })
    })
    .collect::<StoreResult<_>>()?;
    let versions = rows(
        tx,
        "SELECT tenant, app, version, source_sha256, source_size, artifact_sha256, artifact_size,
                engine, created_unix
         FROM versions ORDER BY tenant, app, version",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, i64>(8)?,
            ))
        },
    )?
    .into_iter()
    .map(
        |(tenant, app, version, source, source_size, artifact, artifact_size, engine, created)| {
            Ok(VersionRow {
                tenant: parse(tenant)?,
                app: parse(app)?,
                version: u(version),
                source_sha256: source,
                source_size: u(source_size),
                artifact_sha256: artifact,
                artifact_size: u(artifact_size),
                engine,
                created_unix: u(created),
            })
        },
    )
    .collect::<StoreResult<_>>()?;
    let deployments = rows(
        tx,
        "SELECT id, tenant, app, version, revision, created_unix FROM deployments ORDER BY id",
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        },
    )?
    .into_iter()
    .map(|(id, tenant, app, version, revision, created)| {
        Ok(DeploymentRow {
            id: u(id),
            tenant: parse(tenant)?,
            app: parse(app)?,
            version: u(version),
            revision: u(revision),
            created_unix: u(created),
        })
    })
    .collect::<StoreResult<_>>()?;
    let artifacts = rows(
        tx,
        "SELECT source_sha256, engine, artifact_sha256, size FROM artifacts
         ORDER BY source_sha256, engine",
        |r| {
            Ok(ArtifactRow {
                source_sha256: r.get(0)?,
                engine: r.get(1)?,
                artifact_sha256: r.get(2)?,
                size: u(r.get(3)?),
            })
        },
    )?;
    let purges = rows(
        tx,
        "SELECT id, tenant, app, kind, value, soft, created_unix FROM purges ORDER BY id",
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, i64>(6)?,
            ))
        },
    )?
    .into_iter()
    .map(|(id, tenant, app, kind, value, soft, created)| {
        Ok(Purge {
            id: u(id),
            tenant: parse(tenant)?,
            app: parse(app)?,
            target: purge_target(&kind, value)?,
            soft,
            created_unix: u(created),
        })
    })
    .collect::<StoreResult<_>>()?;
    let nodes = rows(
        tx,
        "SELECT node, applied_revision, rejected_revision, last_error, app_errors, engine,
                last_seen_unix
         FROM nodes ORDER BY node",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        },
    )?
    .into_iter()
    .map(
        |(node, applied, rejected, last_error, app_errors, engine, seen)| {
            Ok(NodeRow {
                node,
                applied_revision: applied.map(u),
                rejected_revision: rejected.map(u),
                last_error,
                app_errors: json(&app_errors)?,
                engine,
                last_seen_unix: u(seen),
            })
        },
    )
    .collect::<StoreResult<_>>()?;
    let (app_outbound, tenant_limits) = outbound::dump(tx)?;
    let (log_tails, log_lines, log_seq, log_pruned) = super::logs::dump(tx)?;
    let kv = super::kv::dump(tx)?;
    let mut dump = StoreDump {
        format: crate::store::dump::DUMP_FORMAT,
        epoch,
        revision: u(one("SELECT value FROM revision WHERE id = 1")?),
        purge_counter: u(one("SELECT value FROM purge_counter WHERE id = 1")?),
        tenants,
        apps,
        hosts,
        versions,
        deployments,
        artifacts,
        purges,
        nodes,
        certificate_counter: certs::counter(tx)?,
        certificates: certs::all(tx)?.into_iter().map(Into::into).collect(),
        acme_challenges: certs::all_challenges(tx)?
            .into_iter()
            .map(|(certificate, c)| AcmeChallengeRow {
                certificate,
                host: c.host,
                token: c.token,
                key_authorization: c.key_authorization,
            })
            .collect(),
        acme_accounts: certs::accounts(tx)?
            .into_iter()
            .map(|(directory, sealed)| AcmeAccountRow { directory, sealed })
            .collect(),
        secrets: super::secrets::all(tx)?
            .into_iter()
            .map(Into::into)
            .collect(),
        secret_bundles: super::secrets::all_bundles(tx)?
            .into_iter()
            .map(|(tenant, app, b)| SecretBundleRow::new(tenant, app, b))
            .collect(),
        app_outbound,
        tenant_limits,
        log_tails,
        log_lines,
        log_seq,
        log_pruned,
        ..StoreDump::empty(String::new())
    };
    dump.set_kv(kv);
    Ok(dump)
}

pub(super) fn restore(tx: &Transaction<'_>, dump: &StoreDump) -> StoreResult<()> {
    if let Some(what) = self::dump(tx)?.what_is_stored() {
        return Err(RestoreError::NotEmpty { what }.into());
    }
    dump.check()?;
    let exec = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        tx.execute(sql, params).map(|_| ()).map_err(backend)
    };
    exec(
        "UPDATE identity SET epoch = ?1 WHERE id = 1",
        params![dump.epoch],
    )?;
    exec(
        "UPDATE revision SET value = ?1 WHERE id = 1",
        params![i(dump.revision)],
    )?;
    exec(
        "UPDATE purge_counter SET value = ?1 WHERE id = 1",
        params![i(dump.purge_counter)],
    )?;
    for t in &dump.tenants {
        exec(
            "INSERT INTO tenants (id, created_unix, storage_quota_bytes) VALUES (?1, ?2, ?3)",
            params![
                t.id.as_str(),
                i(t.created_unix),
                t.storage_quota_bytes.map(i)
            ],
        )?;
    }
    for a in &dump.apps {
        exec(
            "INSERT INTO apps (tenant, name, active_version, origin, forward_override_headers,
                               config, limits, created_unix, updated_revision, https_redirect,
                               hsts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                a.tenant.as_str(),
                a.name.as_str(),
                a.active_version.map(i),
                a.origin,
                a.forward_override_headers,
                serde_json::to_string(&a.config).map_err(backend)?,
                serde_json::to_string(&a.limits).map_err(backend)?,
                i(a.created_unix),
                i(a.updated_revision),
                a.https.redirect,
                a.https.hsts
            ],
        )?;
        let (enabled, min_bytes) = crate::store::compression_rows::values(&a.compression);
        exec(
            &crate::store::cert_rows::sqlite(crate::store::compression_rows::SET_APP_COMPRESSION),
            params![
                a.tenant.as_str(),
                a.name.as_str(),
                enabled,
                min_bytes,
                i(a.updated_revision)
            ],
        )?;
    }
    for h in &dump.hosts {
        exec(
            "INSERT INTO hosts (host, tenant, app, position) VALUES (?1, ?2, ?3, ?4)",
            params![
                h.host.to_string(),
                h.tenant.as_str(),
                h.app.as_str(),
                i(h.position)
            ],
        )?;
    }
    for v in &dump.versions {
        exec(
            "INSERT INTO versions (tenant, app, version, source_sha256, source_size,
                                   artifact_sha256, artifact_size, engine, created_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                v.tenant.as_str(),
                v.app.as_str(),
                i(v.version),
                v.source_sha256,
                i(v.source_size),
                v.artifact_sha256,
                i(v.artifact_size),
                v.engine,
                i(v.created_unix)
            ],
        )?;
    }
    // Explicit ids: AUTOINCREMENT continues above the largest.
    for d in &dump.deployments {
        exec(
            "INSERT INTO deployments (id, tenant, app, version, revision, created_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                i(d.id),
                d.tenant.as_str(),
                d.app.as_str(),
                i(d.version),
                i(d.revision),
                i(d.created_unix)
            ],
        )?;
    }
    for a in &dump.artifacts {
        exec(
            "INSERT INTO artifacts (source_sha256, engine, artifact_sha256, size)
             VALUES (?1, ?2, ?3, ?4)",
            params![a.source_sha256, a.engine, a.artifact_sha256, i(a.size)],
        )?;
    }
    for p in &dump.purges {
        let (kind, value) = purge_columns(&p.target);
        exec(
            "INSERT INTO purges (id, tenant, app, kind, value, soft, created_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                i(p.id),
                p.tenant.as_str(),
                p.app.as_str(),
                kind,
                value,
                p.soft,
                i(p.created_unix)
            ],
        )?;
    }
    for n in &dump.nodes {
        exec(
            "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error, app_errors,
                                engine, last_seen_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                n.node,
                n.applied_revision.map(i),
                n.rejected_revision.map(i),
                n.last_error,
                serde_json::to_string(&n.app_errors).map_err(backend)?,
                n.engine,
                i(n.last_seen_unix)
            ],
        )?;
    }
    certs::set_counter(tx, dump.certificate_counter)?;
    for c in &dump.certificates {
        certs::insert(tx, &c.clone().into())?;
    }
    let mut positions = std::collections::HashMap::new();
    for ch in &dump.acme_challenges {
        let position = positions.entry(ch.certificate).or_insert(0usize);
        certs::insert_challenge(tx, ch.certificate, *position, &ch.challenge())?;
        *position += 1;
    }
    for a in &dump.acme_accounts {
        certs::put_account(tx, &a.directory, &a.sealed, false)?;
    }
    super::secrets::restore(
        tx,
        &dump
            .secrets
            .iter()
            .cloned()
            .map(Into::into)
            .collect::<Vec<_>>(),
        &dump
            .secret_bundles
            .iter()
            .map(SecretBundleRow::parts)
            .collect::<Vec<_>>(),
    )?;
    outbound::restore(tx, &dump.app_outbound, &dump.tenant_limits)?;
    super::logs::restore(
        tx,
        &dump.log_tails,
        &dump.log_lines,
        dump.log_seq,
        &dump.log_pruned,
    )?;
    super::kv::restore(tx, &dump.kv())?;
    Ok(())
}
