//! [`StoreDump`] out of and into the PostgreSQL store, each in the
//! caller's transaction.

use deadpool_postgres::Transaction;

use edge_common::sync::AppHttps;

use super::{
    TxResult, certs, current_revision, epoch, int, json, outbound, parse, purge_columns, purge_row,
    to_json, u,
};
use crate::store::StoreDump;
use crate::store::dump::SecretBundleRow;
use crate::store::dump::{
    AcmeAccountRow, AcmeChallengeRow, AppRow, ArtifactRow, DUMP_FORMAT, DeploymentRow, HostRow,
    NodeRow, RestoreError, TenantRow, VersionRow,
};

pub(super) async fn dump(tx: &Transaction<'_>) -> TxResult<StoreDump> {
    let q = |sql: &'static str| tx.query(sql, &[]);
    let tenants = q("SELECT id, created_unix, storage_quota_bytes FROM tenants ORDER BY id")
        .await?
        .iter()
        .map(|r| {
            Ok(TenantRow {
                id: parse(r.try_get(0)?)?,
                created_unix: u(r.try_get(1)?),
                storage_quota_bytes: r.try_get::<_, Option<i64>>(2)?.map(u),
            })
        })
        .collect::<TxResult<_>>()?;
    let apps = q(
        "SELECT tenant, name, active_version, origin, forward_override_headers, config,
                         limits, created_unix, updated_revision, https_redirect, hsts,
                         compression_enabled, compression_min_bytes
                  FROM apps ORDER BY tenant, name",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(AppRow {
            tenant: parse(r.try_get(0)?)?,
            name: parse(r.try_get(1)?)?,
            active_version: r.try_get::<_, Option<i64>>(2)?.map(u),
            origin: r.try_get(3)?,
            forward_override_headers: r.try_get(4)?,
            config: json(r.try_get(5)?)?,
            limits: json(r.try_get(6)?)?,
            https: AppHttps {
                redirect: r.try_get(9)?,
                hsts: r.try_get(10)?,
            },
            compression: crate::store::compression_rows::from_columns(
                r.try_get(11)?,
                r.try_get(12)?,
            ),
            created_unix: u(r.try_get(7)?),
            updated_revision: u(r.try_get(8)?),
        })
    })
    .collect::<TxResult<_>>()?;
    let hosts = q("SELECT host, tenant, app, position FROM hosts ORDER BY host")
        .await?
        .iter()
        .map(|r| {
            Ok(HostRow {
                host: parse(r.try_get(0)?)?,
                tenant: parse(r.try_get(1)?)?,
                app: parse(r.try_get(2)?)?,
                position: u(r.try_get(3)?),
            })
        })
        .collect::<TxResult<_>>()?;
    let versions = q(
        "SELECT tenant, app, version, source_sha256, source_size, artifact_sha256,
                             artifact_size, engine, created_unix
                      FROM versions ORDER BY tenant, app, version",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(VersionRow {
            tenant: parse(r.try_get(0)?)?,
            app: parse(r.try_get(1)?)?,
            version: u(r.try_get(2)?),
            source_sha256: r.try_get(3)?,
            source_size: u(r.try_get(4)?),
            artifact_sha256: r.try_get(5)?,
            artifact_size: u(r.try_get(6)?),
            engine: r.try_get(7)?,
            created_unix: u(r.try_get(8)?),
        })
    })
    .collect::<TxResult<_>>()?;
    let deployments = q("SELECT id, tenant, app, version, revision, created_unix
                         FROM deployments ORDER BY id")
    .await?
    .iter()
    .map(|r| {
        Ok(DeploymentRow {
            id: u(r.try_get(0)?),
            tenant: parse(r.try_get(1)?)?,
            app: parse(r.try_get(2)?)?,
            version: u(r.try_get(3)?),
            revision: u(r.try_get(4)?),
            created_unix: u(r.try_get(5)?),
        })
    })
    .collect::<TxResult<_>>()?;
    let artifacts = q(
        "SELECT source_sha256, engine, artifact_sha256, size FROM artifacts
                       ORDER BY source_sha256, engine",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ArtifactRow {
            source_sha256: r.try_get(0)?,
            engine: r.try_get(1)?,
            artifact_sha256: r.try_get(2)?,
            size: u(r.try_get(3)?),
        })
    })
    .collect::<TxResult<_>>()?;
    let purges =
        q("SELECT id, tenant, app, kind, value, soft, created_unix FROM purges ORDER BY id")
            .await?
            .iter()
            .map(purge_row)
            .collect::<TxResult<_>>()?;
    let nodes = q(
        "SELECT node, applied_revision, rejected_revision, last_error, app_errors,
                          engine, last_seen_unix
                   FROM nodes ORDER BY node",
    )
    .await?
    .iter()
    .map(|r| {
        Ok(NodeRow {
            node: r.try_get(0)?,
            applied_revision: r.try_get::<_, Option<i64>>(1)?.map(u),
            rejected_revision: r.try_get::<_, Option<i64>>(2)?.map(u),
            last_error: r.try_get(3)?,
            app_errors: json(r.try_get(4)?)?,
            engine: r.try_get(5)?,
            last_seen_unix: u(r.try_get(6)?),
        })
    })
    .collect::<TxResult<_>>()?;
    let purge_counter: i64 = tx
        .query_one("SELECT value FROM purge_counter WHERE id = 1", &[])
        .await?
        .try_get(0)?;
    let (app_outbound, tenant_limits) = outbound::dump(tx).await?;
    let (log_tails, log_lines, log_seq, log_pruned) = super::logs::dump(tx).await?;
    let kv = super::kv::dump(tx).await?;
    let mut dump = StoreDump {
        format: DUMP_FORMAT,
        epoch: epoch(tx).await?,
        revision: current_revision(tx).await?,
        purge_counter: u(purge_counter),
        tenants,
        apps,
        hosts,
        versions,
        deployments,
        artifacts,
        purges,
        nodes,
        certificate_counter: certs::counter(tx).await?,
        certificates: certs::all(tx).await?.into_iter().map(Into::into).collect(),
        acme_challenges: certs::all_challenges(tx)
            .await?
            .into_iter()
            .map(|(certificate, c)| AcmeChallengeRow {
                certificate,
                host: c.host,
                token: c.token,
                key_authorization: c.key_authorization,
            })
            .collect(),
        acme_accounts: certs::accounts(tx)
            .await?
            .into_iter()
            .map(|(directory, sealed)| AcmeAccountRow { directory, sealed })
            .collect(),
        secrets: super::secrets::all(tx)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
        secret_bundles: super::secrets::all_bundles(tx)
            .await?
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

pub(super) async fn restore(tx: &Transaction<'_>, dump: &StoreDump) -> TxResult<()> {
    if let Some(what) = self::dump(tx).await?.what_is_stored() {
        return Err(RestoreError::NotEmpty { what }.into());
    }
    dump.check()?;
    tx.execute(
        "UPDATE identity SET epoch = $1 WHERE id = 1",
        &[&dump.epoch],
    )
    .await?;
    tx.execute(
        "UPDATE revision SET value = $1 WHERE id = 1",
        &[&int(dump.revision)],
    )
    .await?;
    tx.execute(
        "UPDATE purge_counter SET value = $1 WHERE id = 1",
        &[&int(dump.purge_counter)],
    )
    .await?;
    for t in &dump.tenants {
        tx.execute(
            "INSERT INTO tenants (id, created_unix, storage_quota_bytes) VALUES ($1, $2, $3)",
            &[
                &t.id.as_str(),
                &int(t.created_unix),
                &t.storage_quota_bytes.map(int),
            ],
        )
        .await?;
    }
    for a in &dump.apps {
        tx.execute(
            "INSERT INTO apps (tenant, name, active_version, origin, forward_override_headers,
                               config, limits, created_unix, updated_revision, https_redirect,
                               hsts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &a.tenant.as_str(),
                &a.name.as_str(),
                &a.active_version.map(int),
                &a.origin,
                &a.forward_override_headers,
                &to_json(&a.config)?,
                &to_json(&a.limits)?,
                &int(a.created_unix),
                &int(a.updated_revision),
                &a.https.redirect,
                &a.https.hsts,
            ],
        )
        .await?;
        let (enabled, min_bytes) = crate::store::compression_rows::values(&a.compression);
        tx.execute(
            crate::store::compression_rows::SET_APP_COMPRESSION,
            &[
                &a.tenant.as_str(),
                &a.name.as_str(),
                &enabled,
                &min_bytes,
                &int(a.updated_revision),
            ],
        )
        .await?;
    }
    for h in &dump.hosts {
        tx.execute(
            "INSERT INTO hosts (host, tenant, app, position) VALUES ($1, $2, $3, $4)",
            &[
                &h.host.to_string(),
                &h.tenant.as_str(),
                &h.app.as_str(),
                &int(h.position),
            ],
        )
        .await?;
    }
    for v in &dump.versions {
        tx.execute(
            "INSERT INTO versions (tenant, app, version, source_sha256, source_size,
                                   artifact_sha256, artifact_size, engine, created_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &v.tenant.as_str(),
                &v.app.as_str(),
                &int(v.version),
                &v.source_sha256,
                &int(v.source_size),
                &v.artifact_sha256,
                &int(v.artifact_size),
                &v.engine,
                &int(v.created_unix),
            ],
        )
        .await?;
    }
    for d in &dump.deployments {
        tx.execute(
            "INSERT INTO deployments (id, tenant, app, version, revision, created_unix)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &int(d.id),
                &d.tenant.as_str(),
                &d.app.as_str(),
                &int(d.version),
                &int(d.revision),
                &int(d.created_unix),
            ],
        )
        .await?;
    }
    // Explicit ids leave the identity sequence behind: move it past them.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('deployments', 'id'), COALESCE(MAX(id), 0) + 1, false)
         FROM deployments",
        &[],
    )
    .await?;
    for a in &dump.artifacts {
        tx.execute(
            "INSERT INTO artifacts (source_sha256, engine, artifact_sha256, size)
             VALUES ($1, $2, $3, $4)",
            &[
                &a.source_sha256,
                &a.engine,
                &a.artifact_sha256,
                &int(a.size),
            ],
        )
        .await?;
    }
    for p in &dump.purges {
        let (kind, value) = purge_columns(&p.target);
        tx.execute(
            "INSERT INTO purges (id, tenant, app, kind, value, soft, created_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &int(p.id),
                &p.tenant.as_str(),
                &p.app.as_str(),
                &kind,
                &value,
                &p.soft,
                &int(p.created_unix),
            ],
        )
        .await?;
    }
    for n in &dump.nodes {
        tx.execute(
            "INSERT INTO nodes (node, applied_revision, rejected_revision, last_error, app_errors,
                                engine, last_seen_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &n.node,
                &n.applied_revision.map(int),
                &n.rejected_revision.map(int),
                &n.last_error,
                &to_json(&n.app_errors)?,
                &n.engine,
                &int(n.last_seen_unix),
            ],
        )
        .await?;
    }
    certs::set_counter(tx, dump.certificate_counter).await?;
    for c in &dump.certificates {
        certs::insert(tx, &c.clone().into()).await?;
    }
    let mut positions = std::collections::HashMap::new();
    for ch in &dump.acme_challenges {
        let position = positions.entry(ch.certificate).or_insert(0usize);
        certs::insert_challenge(tx, ch.certificate, *position, &ch.challenge()).await?;
        *position += 1;
    }
    for a in &dump.acme_accounts {
        certs::put_account(tx, &a.directory, &a.sealed, false).await?;
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
    )
    .await?;
    outbound::restore(tx, &dump.app_outbound, &dump.tenant_limits).await?;
    super::logs::restore(
        tx,
        &dump.log_tails,
        &dump.log_lines,
        dump.log_seq,
        &dump.log_pruned,
    )
    .await?;
    super::kv::restore(tx, &dump.kv()).await?;
    Ok(())
}
