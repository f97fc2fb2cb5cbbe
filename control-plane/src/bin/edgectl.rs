//! `edgectl`: the tenant's command line for the control plane API.
//!
//! Every API error is printed as one line (`edgectl: <message> [<code>]`)
//! with a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use edge_common::names::{AppName, HostPattern};
use edge_cp::wire::{NewApp, OriginSet, SetOrigin, SetTenantQuota, TenantQuota};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "edgectl",
    version,
    about = "Deploy and manage apps on the edge platform"
)]
struct Cli {
    /// The control plane API, for example https://cp.example:7070.
    #[arg(
        long,
        env = "EDGE_API",
        global = true,
        default_value = "http://127.0.0.1:7070"
    )]
    api: String,
    /// An API token (`edge-cp token`).
    #[arg(long, env = "EDGE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The tenant to act on, for admin tokens (tenant tokens act on their own).
    #[arg(long, env = "EDGE_TENANT", global = true)]
    tenant: Option<String>,
    /// A PEM CA certificate to trust for the API's HTTPS.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenants (admin token).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Apps and their hostnames.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Upload a component, activate it, and wait until every node serves it.
    Deploy {
        name: String,
        file: PathBuf,
        /// Return once activated, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for the nodes after this long.
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
    /// Activate the previously deployed version (or --to VERSION).
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
    /// Uploaded versions of an app.
    Versions {
        name: String,
        /// Delete this (inactive) version instead of listing.
        #[arg(long, value_name = "VERSION")]
        delete: Option<u64>,
    },
    /// Config values (the component's environment).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Per-app limits (setting them needs an admin token).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// The active version and which nodes serve it.
    Status { name: String },
    /// Purge an app's cache on every node, and wait until they have.
    Purge {
        name: String,
        #[command(flatten)]
        target: PurgeTargetArgs,
        /// Mark stale instead of removing: served again only after
        /// revalidation (or within stale-while-revalidate / stale-if-error).
        #[arg(long)]
        soft: bool,
        /// Return once recorded, without waiting for the nodes.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for the nodes after this long.
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
    },
}

/// What to purge: exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct PurgeTargetArgs {
    /// One URL: a path with its query (`/a?b=1`, on every host of the app)
    /// or an absolute URL (`https://shop.example/a`).
    #[arg(long)]
    url: Option<String>,
    /// Every response tagged with this Surrogate-Key.
    #[arg(long)]
    key: Option<String>,
    /// The app's whole cache.
    #[arg(long)]
    all: bool,
}

impl PurgeTargetArgs {
    /// The API's body fields, and how to print the target.
    fn describe(&self) -> (Value, String) {
        match (&self.url, &self.key) {
            (Some(url), _) => (json!({ "url": url }), format!("url {url}")),
            (None, Some(key)) => (json!({ "key": key }), format!("key {key}")),
            (None, None) => (json!({ "all": true }), "all".to_string()),
        }
    }
}

#[derive(Subcommand)]
enum TenantsCommand {
    Create {
        id: String,
    },
    List,
    /// A tenant's storage quota and usage; with --storage-bytes or
    /// --default, set it (admin token).
    Quota {
        id: String,
        /// The tenant's own quota, in bytes.
        #[arg(long, conflicts_with = "default")]
        storage_bytes: Option<u64>,
        /// Back to the control plane's default quota.
        #[arg(long)]
        default: bool,
    },
}

#[derive(Subcommand)]
enum AppsCommand {
    Create {
        name: String,
        /// A hostname the app answers (repeatable; `*.domain` allowed).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Make an origin app: no component, every request is forwarded to
        /// this URL (http(s)://host[:port][/base/path]) with the edge cache
        /// in front. Live at once.
        #[arg(long)]
        origin: Option<String>,
        /// With --origin: forward method-override headers
        /// (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override),
        /// X-Forwarded-Scheme and header names with `_` to the origin.
        /// Dropped by default: they change the origin's answer without
        /// being part of the cache key.
        #[arg(long, requires = "origin")]
        forward_override_headers: bool,
    },
    /// Point an origin app at another origin URL (its override-header
    /// option is kept unless one of the flags is given).
    SetOrigin {
        name: String,
        origin: String,
        /// Forward method-override headers, X-Forwarded-Scheme and header
        /// names with `_` to the origin from now on.
        #[arg(long, conflicts_with = "no_forward_override_headers")]
        forward_override_headers: bool,
        /// Drop them again (the default of a new origin app).
        #[arg(long)]
        no_forward_override_headers: bool,
    },
    List,
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Set values: KEY=VALUE ...
    Set {
        name: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Remove values: KEY ...
    Unset {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    Get {
        name: String,
    },
}

#[derive(Subcommand)]
enum LimitsCommand {
    Get {
        name: String,
    },
    /// Replace the limits: KEY=VALUE ... (unnamed ones take their defaults),
    /// for example cpu_time=100ms max_concurrent_requests=20.
    Set {
        name: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
}

/// A failure, printed as one line.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edgectl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("edgectl: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
    tenant: Option<String>,
}

impl Api {
    fn url(&self, path: &str) -> String {
        let mut url = format!("{}/v1{path}", self.base.trim_end_matches('/'));
        if path.starts_with("/apps")
            && let Some(tenant) = &self.tenant
        {
            url.push_str(&format!("?tenant={tenant}"));
        }
        url
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, Failure> {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Wasm(bytes)) => request
                .header("content-type", "application/wasm")
                .body(bytes),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure(format!("cannot reach the API at {}: {e}", self.base)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure(format!("reading the API's answer: {e}")))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        let code = value["error"]["code"].as_str().unwrap_or("");
        Err(Failure(format!("{message} [{} {code}]", status.as_u16())))
    }

    /// A call with a typed body and answer (the API's own types).
    async fn typed<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Failure> {
        let body = body.map(serde_json::to_value).transpose()?.map(Body::Json);
        let value = self.call(method, path, body).await?;
        serde_json::from_value(value)
            .map_err(|e| Failure(format!("the API's answer to {path} is not understood: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(Body::Json(body)))
            .await
    }
}

enum Body {
    Json(Value),
    Wasm(Vec<u8>),
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let token = cli.token.ok_or_else(|| {
        Failure("no token: pass --token or set EDGE_TOKEN (from `edge-cp token`)".into())
    })?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = &cli.ca_cert {
        let pem = std::fs::read(ca).map_err(|e| Failure(format!("{}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let api = Api {
        client: builder.build()?,
        base: cli.api,
        token,
        tenant: cli.tenant,
    };
    match cli.command {
        Command::Tenants(TenantsCommand::Create { id }) => {
            api.post("/tenants", json!({ "id": id })).await?;
            println!("created tenant {id}");
        }
        Command::Tenants(TenantsCommand::List) => {
            for tenant in api.get("/tenants").await?["tenants"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!("{}", tenant["id"].as_str().unwrap_or(""));
            }
        }
        Command::Tenants(TenantsCommand::Quota {
            id,
            storage_bytes,
            default,
        }) => {
            let path = format!("/tenants/{id}/quota");
            let quota: TenantQuota = if storage_bytes.is_some() || default {
                let set = SetTenantQuota { storage_bytes };
                api.typed(reqwest::Method::PUT, &path, Some(&set)).await?
            } else {
                api.typed(reqwest::Method::GET, &path, None::<&()>).await?
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
        Command::Apps(AppsCommand::Create {
            name,
            hosts,
            origin,
            forward_override_headers,
        }) => {
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
            let created: Value = api
                .typed(reqwest::Method::POST, "/apps", Some(&body))
                .await?;
            match origin {
                Some(origin) => println!(
                    "created origin app {name} for {} -> {origin}{}, live at revision {}",
                    hosts.join(", "),
                    forwarding_note(forward_override_headers),
                    created["updated_revision"]
                ),
                None => println!("created app {name} for {}", hosts.join(", ")),
            }
        }
        Command::Apps(AppsCommand::SetOrigin {
            name,
            origin,
            forward_override_headers,
            no_forward_override_headers,
        }) => {
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
                .typed(
                    reqwest::Method::PUT,
                    &format!("/apps/{name}/origin"),
                    Some(&body),
                )
                .await?;
            println!(
                "{name}: origin {}{} at revision {}",
                set.origin,
                forwarding_note(set.forward_override_headers),
                set.revision
            );
        }
        Command::Apps(AppsCommand::List) => list_apps(&api).await?,
        Command::Apps(AppsCommand::Delete { name }) => {
            api.call(reqwest::Method::DELETE, &format!("/apps/{name}"), None)
                .await?;
            println!("deleted app {name}");
        }
        Command::Deploy {
            name,
            file,
            no_wait,
            timeout,
        } => {
            let wasm =
                std::fs::read(&file).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
            let started = Instant::now();
            let uploaded = api
                .call(
                    reqwest::Method::POST,
                    &format!("/apps/{name}/versions"),
                    Some(Body::Wasm(wasm)),
                )
                .await?;
            let version = uploaded["version"]
                .as_u64()
                .ok_or_else(|| Failure("the API answered the upload without a version".into()))?;
            let compile = started.elapsed();
            let deployed = api
                .post(
                    &format!("/apps/{name}/deploy"),
                    json!({ "version": version }),
                )
                .await?;
            let revision = deployed["revision"].as_u64().unwrap_or(0);
            println!(
                "{name}: version {version} uploaded in {:.3}s ({}), activated at revision {revision}",
                compile.as_secs_f64(),
                if uploaded["compiled"] == json!(true) {
                    "compiled"
                } else {
                    "artifact reused"
                }
            );
            if !no_wait {
                wait_for_nodes(&api, &name, revision, started, timeout.into()).await?;
            }
        }
        Command::Rollback {
            name,
            to,
            no_wait,
            timeout,
        } => {
            let started = Instant::now();
            let body = match to {
                Some(version) => json!({ "to": version }),
                None => json!({}),
            };
            let result = api.post(&format!("/apps/{name}/rollback"), body).await?;
            let revision = result["revision"].as_u64().unwrap_or(0);
            println!(
                "{name}: rolled back to version {} at revision {revision}",
                result["version"]
            );
            if !no_wait {
                wait_for_nodes(&api, &name, revision, started, timeout.into()).await?;
            }
        }
        Command::Versions {
            name,
            delete: Some(version),
        } => {
            api.call(
                reqwest::Method::DELETE,
                &format!("/apps/{name}/versions/{version}"),
                None,
            )
            .await?;
            println!("{name}: deleted version {version}");
        }
        Command::Versions { name, delete: None } => {
            let app = api.get(&format!("/apps/{name}")).await?;
            let active = app["active_version"].as_u64();
            println!(
                "{:<8} {:<10} {:<12} SOURCE SHA-256",
                "VERSION", "ACTIVE", "SIZE"
            );
            for v in api.get(&format!("/apps/{name}/versions")).await?["versions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let number = v["version"].as_u64().unwrap_or(0);
                println!(
                    "{:<8} {:<10} {:<12} {}",
                    number,
                    if Some(number) == active { "active" } else { "" },
                    v["source_size"],
                    v["source_sha256"].as_str().unwrap_or("")
                );
            }
        }
        Command::Config(ConfigCommand::Set { name, values }) => {
            let changes = key_values(&values, |v| Value::String(v.to_string()))?;
            patch_config(&api, &name, changes).await?;
        }
        Command::Config(ConfigCommand::Unset { name, keys }) => {
            let changes = keys.into_iter().map(|k| (k, Value::Null)).collect();
            patch_config(&api, &name, changes).await?;
        }
        Command::Config(ConfigCommand::Get { name }) => {
            let config = api.get(&format!("/apps/{name}/config")).await?;
            for (k, v) in config["config"].as_object().into_iter().flatten() {
                println!("{k}={}", v.as_str().unwrap_or(""));
            }
        }
        Command::Limits(LimitsCommand::Get { name }) => {
            let limits = api.get(&format!("/apps/{name}/limits")).await?;
            println!("{}", serde_json::to_string_pretty(&limits)?);
        }
        Command::Limits(LimitsCommand::Set { name, values }) => {
            // Numbers stay numbers; durations and the rest are strings.
            let limits = key_values(&values, |v| {
                serde_json::from_str(v).unwrap_or(Value::String(v.to_string()))
            })?;
            let result = api
                .call(
                    reqwest::Method::PUT,
                    &format!("/apps/{name}/limits"),
                    Some(Body::Json(Value::Object(limits))),
                )
                .await?;
            println!("{name}: limits updated at revision {}", result["revision"]);
        }
        Command::Purge {
            name,
            target,
            soft,
            no_wait,
            timeout,
        } => purge(&api, &name, &target, soft, no_wait, timeout.into()).await?,
        Command::Status { name } => {
            let status = api.get(&format!("/apps/{name}/status")).await?;
            let serving = match status["origin"].as_str() {
                Some(origin) => format!("origin {origin}"),
                None => format!("version {}", status["active_version"]),
            };
            println!(
                "{name}: {serving} (revision {}) for {}",
                status["revision"],
                join_hosts(&status["hosts"])
            );
            for node in status["nodes"].as_array().into_iter().flatten() {
                let error = node["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                println!(
                    "  {:<20} {:<8} applied revision {}{error}",
                    node["node"].as_str().unwrap_or(""),
                    node["state"].as_str().unwrap_or(""),
                    node["applied_revision"]
                );
            }
        }
    }
    Ok(())
}

async fn list_apps(api: &Api) -> Result<(), Failure> {
    println!("{:<24} {:<8} HOSTS", "NAME", "VERSION");
    for app in api.get("/apps").await?["apps"]
        .as_array()
        .into_iter()
        .flatten()
    {
        // An origin app has no version; its origin follows its hosts.
        let (version, origin) = match app["origin"].as_str() {
            Some(origin) => (
                "origin".to_string(),
                format!(
                    " -> {origin}{}",
                    forwarding_note(app["forward_override_headers"] == json!(true))
                ),
            ),
            None => (
                app["active_version"]
                    .as_u64()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                String::new(),
            ),
        };
        println!(
            "{:<24} {:<8} {}{origin}",
            app["name"].as_str().unwrap_or(""),
            version,
            join_hosts(&app["hosts"])
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
    let (mut body, what) = target.describe();
    body["soft"] = json!(soft);
    let result = api.post(&format!("/apps/{name}/purge"), body).await?;
    let (id, revision) = match (result["id"].as_u64(), result["revision"].as_u64()) {
        (Some(id), Some(revision)) => (id, revision),
        _ => return Err(Failure(format!("the API answered the purge with {result}"))),
    };
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

fn not_all_applied(done: usize, nodes: usize, revision: u64, timeout: Duration) -> Failure {
    Failure(format!(
        "only {done}/{nodes} nodes applied revision {revision} within {}",
        humantime::format_duration(timeout)
    ))
}

/// Polls the app's status until every node that has checked in recently
/// reports an applied revision at or past `revision` (a purge's, which
/// is not the app's own latest change); returns (applied, nodes). A node
/// that rejected that revision or a later one fails it.
async fn wait_for_revision(
    api: &Api,
    name: &str,
    revision: u64,
    started: Instant,
    timeout: Duration,
) -> Result<(usize, usize), Failure> {
    loop {
        let status = api.get(&format!("/apps/{name}/status")).await?;
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        let applied = |n: &Value| n["applied_revision"].as_u64().unwrap_or(0);
        if let Some(refused) = nodes.iter().find(|n| {
            n["refused"]["revision"]
                .as_u64()
                .is_some_and(|r| r >= revision && r > applied(n))
        }) {
            return Err(Failure(format!(
                "node {} refused revision {}: {}",
                refused["node"].as_str().unwrap_or("?"),
                refused["refused"]["revision"],
                refused["refused"]["error"]
                    .as_str()
                    .unwrap_or("no reason given")
            )));
        }
        let done = nodes.iter().filter(|n| applied(n) >= revision).count();
        if done == nodes.len() {
            return Ok((done, nodes.len()));
        }
        if started.elapsed() > timeout {
            return Err(not_all_applied(done, nodes.len(), revision, timeout));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the app's status until every node that has checked in recently
/// applied `revision` (or one of them rejected it).
async fn wait_for_nodes(
    api: &Api,
    name: &str,
    revision: u64,
    started: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    loop {
        let status = api.get(&format!("/apps/{name}/status")).await?;
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        // The status is relative to the app's latest change, which is this
        // deploy or a later one.
        let current = status["revision"].as_u64().unwrap_or(0) >= revision;
        let applied = |n: &Value| current && n["state"] == "applied";
        if let Some(rejected) = nodes.iter().find(|n| current && n["state"] == "rejected") {
            return Err(Failure(format!(
                "node {} cannot serve revision {revision}: {}",
                rejected["node"].as_str().unwrap_or("?"),
                rejected["error"].as_str().unwrap_or("no reason given")
            )));
        }
        let done = nodes.iter().filter(|n| applied(n)).count();
        if done == nodes.len() {
            let elapsed = started.elapsed().as_secs_f64();
            if nodes.is_empty() {
                println!("{name}: no node has checked in yet; it will be served as nodes connect");
            } else {
                println!(
                    "{name}: live on {done}/{} nodes in {elapsed:.3}s",
                    nodes.len()
                );
            }
            for host in status["hosts"].as_array().into_iter().flatten() {
                if let Some(host) = host.as_str().filter(|h| !h.starts_with('*')) {
                    println!("  https://{host}/");
                }
            }
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(not_all_applied(done, nodes.len(), revision, timeout));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `KEY=VALUE` arguments as a JSON object.
fn key_values(
    pairs: &[String],
    value: impl Fn(&str) -> Value,
) -> Result<serde_json::Map<String, Value>, Failure> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Failure(format!("`{pair}`: expected KEY=VALUE")))?;
            Ok((k.to_string(), value(v)))
        })
        .collect()
}

async fn patch_config(
    api: &Api,
    name: &str,
    changes: serde_json::Map<String, Value>,
) -> Result<(), Failure> {
    let result = api
        .call(
            reqwest::Method::PATCH,
            &format!("/apps/{name}/config"),
            Some(Body::Json(Value::Object(changes))),
        )
        .await?;
    println!("{name}: config updated at revision {}", result["revision"]);
    Ok(())
}

/// `bytes` in the largest binary unit that keeps it at or above 1.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How an origin app with `forward_override_headers` is shown (nothing
/// for the default).
fn forwarding_note(forward_override_headers: bool) -> &'static str {
    if forward_override_headers {
        " (forwarding override headers)"
    } else {
        ""
    }
}

fn join_hosts(hosts: &Value) -> String {
    hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
