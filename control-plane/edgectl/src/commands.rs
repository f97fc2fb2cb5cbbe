//! One function per subcommand: a request or two, and what is printed.

use std::time::{Duration, Instant};

use edge_common::api::{
    Activated, App, AppConfig, AppHttps, AppLimits, AppList, AppStatus, Certificate,
    CertificateCreated, CertificateList, ConfigChanges, Deploy, HttpsSet, IssueCertificate, NewApp,
    NewTenant, OriginSet, PurgeBody, PurgeRecorded, Revision, Rollback, SetOrigin, SetTenantQuota,
    Tenant, TenantList, TenantQuota, UploadCertificate, Uploaded, VersionDeleted, VersionList,
};
use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::PurgeRequest;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{
    AppsCommand, CertsCommand, Cli, Command, ConfigCommand, LimitsCommand, PurgeTargetArgs,
    TenantsCommand,
};
use crate::client::{Api, Body, Failure};
use crate::show::{date, forwarding_note, https_summary, human_bytes, join_hosts, or_null};
use crate::wait::{wait_for_nodes, wait_for_revision};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let token = cli.token.ok_or_else(|| {
        Failure("no token: pass --token or set EDGE_TOKEN (from `edge-cp token`)".into())
    })?;
    let api = Api::new(cli.api, token, cli.tenant, cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Tenants(command) => tenants(&api, command).await,
        Command::Apps(command) => apps(&api, command).await,
        Command::Certs(command) => certs(&api, command).await,
        Command::Deploy {
            name,
            file,
            no_wait,
            timeout,
        } => {
            let wasm =
                std::fs::read(&file).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
            let started = Instant::now();
            let uploaded: Uploaded = api
                .send(
                    Method::POST,
                    &["apps", &name, "versions"],
                    Body::<()>::Wasm(wasm),
                )
                .await?;
            let version = uploaded.version;
            let compile = started.elapsed();
            let deployed: Activated = api
                .json(
                    Method::POST,
                    &["apps", &name, "deploy"],
                    &Deploy { version },
                )
                .await?;
            let revision = deployed.revision;
            println!(
                "{name}: version {version} uploaded in {:.3}s ({}), activated at revision {revision}",
                compile.as_secs_f64(),
                if uploaded.compiled {
                    "compiled"
                } else {
                    "artifact reused"
                }
            );
            if !no_wait {
                wait_for_nodes(&api, &name, revision, started, timeout.into()).await?;
            }
            Ok(())
        }
        Command::Rollback {
            name,
            to,
            no_wait,
            timeout,
        } => {
            let started = Instant::now();
            let result: Activated = api
                .json(Method::POST, &["apps", &name, "rollback"], &Rollback { to })
                .await?;
            let revision = result.revision;
            println!(
                "{name}: rolled back to version {} at revision {revision}",
                result.version
            );
            if !no_wait {
                wait_for_nodes(&api, &name, revision, started, timeout.into()).await?;
            }
            Ok(())
        }
        Command::Versions {
            name,
            delete: Some(version),
        } => {
            let _: VersionDeleted = api
                .send(
                    Method::DELETE,
                    &["apps", &name, "versions", &version.to_string()],
                    Body::<()>::None,
                )
                .await?;
            println!("{name}: deleted version {version}");
            Ok(())
        }
        Command::Versions { name, delete: None } => versions(&api, &name).await,
        Command::Config(command) => config(&api, command).await,
        Command::Limits(command) => limits(&api, command).await,
        Command::Purge {
            name,
            target,
            soft,
            no_wait,
            timeout,
        } => purge(&api, &name, &target, soft, no_wait, timeout.into()).await,
        Command::Status { name } => status(&api, &name).await,
        Command::Secrets(command) => crate::secrets::secrets(&api, command).await,
        Command::Outbound(command) => crate::outbound::outbound(&api, command).await,
        Command::Compression(command) => crate::compression::compression(&api, command).await,
        Command::Logs(args) => crate::logs::logs(&api, args).await,
        Command::Kv(command) => crate::kv::kv(&api, command).await,
        // Handled in main, before a client is made.
        Command::New(_) => Ok(()),
    }
}

async fn tenants(api: &Api, command: TenantsCommand) -> Result<(), Failure> {
    match command {
        TenantsCommand::Create { id } => {
            let body = NewTenant {
                id: TenantId::try_from(id.clone())
                    .map_err(|e| Failure(format!("tenant id {id:?}: {e}")))?,
            };
            let _: Tenant = api.json(Method::POST, &["tenants"], &body).await?;
            println!("created tenant {id}");
        }
        TenantsCommand::List => {
            let list: TenantList = api.get(&["tenants"]).await?;
            for tenant in list.tenants {
                println!("{}", tenant.id);
            }
        }
        TenantsCommand::Quota {
            id,
            storage_bytes,
            default,
        } => {
            let path: [&str; 3] = ["tenants", &id, "quota"];
            let quota: TenantQuota = if storage_bytes.is_some() || default {
                api.json(Method::PUT, &path, &SetTenantQuota { storage_bytes })
                    .await?
            } else {
                api.get(&path).await?
            };
            println!(
                "{}: {} of {} stored ({} of {} bytes; {} quota)",
                quota.tenant,
                human_bytes(quota.used_storage_bytes),
                human_bytes(quota.storage_bytes),
                quota.used_storage_bytes,
                quota.storage_bytes,
                if quota.custom { "own" } else { "default" }
            );
        }
        TenantsCommand::Limits {
            id,
            max_outbound_destinations,
            max_subrequests,
            kv,
            default,
        } => {
            crate::outbound::tenant_limits(
                api,
                &id,
                max_outbound_destinations,
                max_subrequests,
                kv,
                default,
            )
            .await?
        }
    }
    Ok(())
}

async fn apps(api: &Api, command: AppsCommand) -> Result<(), Failure> {
    match command {
        AppsCommand::Create {
            name,
            hosts,
            origin,
            forward_override_headers,
        } => {
            let body = NewApp {
                name: AppName::try_from(name.clone())
                    .map_err(|e| Failure(format!("app name {name:?}: {e}")))?,
                hosts: hosts
                    .iter()
                    .map(|h| {
                        HostPattern::try_from(h.clone())
                            .map_err(|e| Failure(format!("hostname {h:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                origin: origin.clone(),
                forward_override_headers: forward_override_headers.then_some(true),
            };
            let created: App = api.json(Method::POST, &["apps"], &body).await?;
            match origin {
                Some(origin) => println!(
                    "created origin app {name} for {} -> {origin}{}, live at revision {}",
                    hosts.join(", "),
                    forwarding_note(forward_override_headers),
                    created.updated_revision
                ),
                None => println!("created app {name} for {}", hosts.join(", ")),
            }
        }
        AppsCommand::SetOrigin {
            name,
            origin,
            forward_override_headers,
            no_forward_override_headers,
        } => {
            let body = SetOrigin {
                origin,
                forward_override_headers: match (
                    forward_override_headers,
                    no_forward_override_headers,
                ) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let set: OriginSet = api
                .json(Method::PUT, &["apps", &name, "origin"], &body)
                .await?;
            println!(
                "{name}: origin {}{} at revision {}",
                set.origin,
                forwarding_note(set.forward_override_headers),
                set.revision
            );
        }
        AppsCommand::List => {
            println!("{:<24} {:<8} HOSTS", "NAME", "VERSION");
            let list: AppList = api.get(&["apps"]).await?;
            for app in list.apps {
                // An origin app has no version; its origin follows its hosts.
                let (version, origin) = match &app.origin {
                    Some(origin) => (
                        "origin".to_string(),
                        format!(
                            " -> {origin}{}",
                            forwarding_note(app.forward_override_headers == Some(true))
                        ),
                    ),
                    None => (
                        app.active_version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into()),
                        String::new(),
                    ),
                };
                println!(
                    "{:<24} {:<8} {}{origin}",
                    app.name.as_str(),
                    version,
                    join_hosts(&app.hosts)
                );
            }
        }
        AppsCommand::Delete { name } => {
            let _: Revision = api
                .send(Method::DELETE, &["apps", &name], Body::<()>::None)
                .await?;
            println!("deleted app {name}");
        }
        AppsCommand::Https {
            name,
            redirect,
            no_redirect,
            hsts,
            no_hsts,
        } => {
            let path: [&str; 3] = ["apps", &name, "https"];
            let current: HttpsSet = api.get(&path).await?;
            let set = if redirect || no_redirect || hsts.is_some() || no_hsts {
                let https = AppHttps {
                    redirect: (current.https.redirect || redirect) && !no_redirect,
                    hsts: match (hsts, no_hsts) {
                        (Some(value), _) => Some(value),
                        (None, true) => None,
                        (None, false) => current.https.hsts,
                    },
                };
                api.json(Method::PUT, &path, &https).await?
            } else {
                current
            };
            println!(
                "{name}: {} (revision {})",
                https_summary(&set.https),
                set.revision
            );
        }
    }
    Ok(())
}

/// Parses `--host` values.
fn host_patterns(hosts: &[String]) -> Result<Vec<HostPattern>, Failure> {
    hosts
        .iter()
        .map(|h| {
            HostPattern::try_from(h.clone()).map_err(|e| Failure(format!("hostname {h:?}: {e}")))
        })
        .collect()
}

fn read_pem(path: &std::path::Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

async fn certs(api: &Api, command: CertsCommand) -> Result<(), Failure> {
    match command {
        CertsCommand::Add {
            name,
            cert,
            key,
            hosts,
        } => {
            let body = UploadCertificate {
                chain_pem: read_pem(&cert)?,
                key_pem: read_pem(&key)?,
                hosts: host_patterns(&hosts)?,
            };
            let created: CertificateCreated = api
                .json(Method::POST, &["apps", &name, "certificates"], &body)
                .await?;
            let c = &created.certificate;
            println!(
                "{name}: certificate {} for {} (issued by {}, valid until {}), live at revision {}",
                c.id,
                join_hosts(&c.hosts),
                c.issuer.as_deref().unwrap_or("-"),
                c.not_after_unix.map_or_else(|| "-".into(), date),
                created.revision
            );
        }
        CertsCommand::Issue { name, hosts } => {
            let body = IssueCertificate {
                hosts: host_patterns(&hosts)?,
            };
            let created: CertificateCreated = api
                .json(
                    Method::POST,
                    &["apps", &name, "certificates", "acme"],
                    &body,
                )
                .await?;
            println!(
                "{name}: certificate {} for {} requested from the ACME CA ({}); follow it with `edgectl certs list {name}`",
                created.certificate.id,
                join_hosts(&created.certificate.hosts),
                created.certificate.status.as_str()
            );
        }
        CertsCommand::List { name } => {
            let list: CertificateList = api.get(&["apps", &name, "certificates"]).await?;
            print_certificates(&list.certificates);
        }
        CertsCommand::Renew { name, id } => {
            let renewed: CertificateCreated = api
                .send(
                    Method::POST,
                    &["apps", &name, "certificates", &id.to_string(), "renew"],
                    Body::<()>::None,
                )
                .await?;
            println!(
                "{name}: certificate {id} will be renewed now ({}); follow it with `edgectl certs list {name}`",
                renewed.certificate.status.as_str()
            );
        }
        CertsCommand::Delete { name, id } => {
            let deleted: Revision = api
                .send(
                    Method::DELETE,
                    &["apps", &name, "certificates", &id.to_string()],
                    Body::<()>::None,
                )
                .await?;
            println!(
                "{name}: deleted certificate {id} (revision {})",
                deleted.revision
            );
        }
    }
    Ok(())
}

/// One line per certificate, and its last error on the next.
fn print_certificates(certificates: &[Certificate]) {
    println!(
        "{:<6} {:<9} {:<9} {:<11} {:<36} ISSUER",
        "ID", "SOURCE", "STATUS", "NOT-AFTER", "HOSTS"
    );
    for c in certificates {
        let source = match c.source {
            edge_common::api::CertificateSource::Uploaded => "uploaded",
            edge_common::api::CertificateSource::Acme => "acme",
        };
        println!(
            "{:<6} {:<9} {:<9} {:<11} {:<36} {}",
            c.id,
            source,
            c.status.as_str(),
            c.not_after_unix.map_or_else(|| "-".into(), date),
            join_hosts(&c.hosts),
            c.issuer.as_deref().unwrap_or("-")
        );
        if let Some(error) = &c.last_error {
            println!(
                "       last error ({} attempt{}): {error}",
                c.attempts,
                if c.attempts == 1 { "" } else { "s" }
            );
        }
    }
}

async fn versions(api: &Api, name: &str) -> Result<(), Failure> {
    let app: App = api.get(&["apps", name]).await?;
    println!(
        "{:<8} {:<10} {:<12} SOURCE SHA-256",
        "VERSION", "ACTIVE", "SIZE"
    );
    let list: VersionList = api.get(&["apps", name, "versions"]).await?;
    for v in list.versions {
        // The size is not padded to its column: edgectl printed it as a
        // JSON value, which ignores widths, and its output stays the same.
        println!(
            "{:<8} {:<10} {} {}",
            v.version,
            if Some(v.version) == app.active_version {
                "active"
            } else {
                ""
            },
            v.source_size,
            v.source_sha256
        );
    }
    Ok(())
}

async fn config(api: &Api, command: ConfigCommand) -> Result<(), Failure> {
    let (name, changes): (String, ConfigChanges) = match command {
        ConfigCommand::Set { name, values } => {
            let changes = key_values(&values)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect();
            (name, changes)
        }
        ConfigCommand::Unset { name, keys } => {
            (name, keys.into_iter().map(|k| (k, None)).collect())
        }
        ConfigCommand::Get { name } => {
            let config: AppConfig = api.get(&["apps", &name, "config"]).await?;
            for (k, v) in config.config {
                println!("{k}={v}");
            }
            return Ok(());
        }
    };
    let result: Revision = api
        .json(Method::PATCH, &["apps", &name, "config"], &changes)
        .await?;
    println!("{name}: config updated at revision {}", result.revision);
    Ok(())
}

async fn limits(api: &Api, command: LimitsCommand) -> Result<(), Failure> {
    match command {
        LimitsCommand::Get { name } => {
            let limits: AppLimits = api.get(&["apps", &name, "limits"]).await?;
            // Through a `Value`: keys sorted, as edgectl has always shown them.
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::to_value(&limits)?)?
            );
        }
        LimitsCommand::Set { name, values } => {
            // The pairs go as typed (numbers stay numbers; durations and the
            // rest are strings), and the server reads them as `AppLimits`:
            // a bad key or value is refused there, in the API's words.
            let limits: serde_json::Map<String, Value> = key_values(&values)?
                .into_iter()
                .map(|(k, v)| {
                    let value = serde_json::from_str(v).unwrap_or(Value::String(v.to_string()));
                    (k.to_string(), value)
                })
                .collect();
            let result: Revision = api
                .json(Method::PUT, &["apps", &name, "limits"], &limits)
                .await?;
            println!("{name}: limits updated at revision {}", result.revision);
        }
    }
    Ok(())
}

async fn status(api: &Api, name: &str) -> Result<(), Failure> {
    let status: AppStatus = api.get(&["apps", name, "status"]).await?;
    let serving = match &status.origin {
        Some(origin) => format!("origin {origin}"),
        None => format!("version {}", or_null(status.active_version)),
    };
    println!(
        "{name}: {serving} (revision {}) for {}",
        status.revision,
        join_hosts(&status.hosts)
    );
    for node in &status.nodes {
        let error = node
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!(
            "  {:<20} {:<8} applied revision {}{error}",
            node.node,
            node.state.as_str(),
            or_null(node.applied_revision)
        );
    }
    Ok(())
}

/// Records a purge and (unless `no_wait`) waits until every node seen
/// recently has applied its revision.
async fn purge(
    api: &Api,
    name: &str,
    target: &PurgeTargetArgs,
    soft: bool,
    no_wait: bool,
    timeout: Duration,
) -> Result<(), Failure> {
    let started = Instant::now();
    let (target, what) = target.describe();
    let body = PurgeBody::from(PurgeRequest { target, soft });
    let PurgeRecorded { id, revision } = api
        .json(Method::POST, &["apps", name, "purge"], &body)
        .await?;
    let summary = format!(
        "purged {name} ({what}, {}) id {id}, revision {revision}",
        if soft { "soft" } else { "hard" }
    );
    if no_wait {
        println!("{summary}");
        return Ok(());
    }
    let (done, total) = wait_for_revision(api, name, revision, started, timeout).await?;
    if total == 0 {
        println!("{summary}: no node has checked in yet");
    } else {
        println!(
            "{summary}: applied on {done}/{total} nodes in {} ms",
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// `KEY=VALUE` arguments, split.
fn key_values(pairs: &[String]) -> Result<Vec<(&str, &str)>, Failure> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| Failure(format!("`{pair}`: expected KEY=VALUE")))
        })
        .collect()
}
