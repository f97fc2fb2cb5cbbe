//! Turning a verified snapshot into the routing table: load every artifact
//! it names (reusing what the current revision already loaded), build every
//! app, and only then swap the table — make before break.
//!
//! The snapshot's certificates and pending ACME challenges are swapped in
//! the same step, right before the routing table.
//!
//! Apps fail alone: an app whose artifact is bad, whose component does not
//! load or whose hostname the node's own config already routes keeps its
//! previous version (if it had one) and is reported; every other app of the
//! revision goes live.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{AppError, PurgeTarget, Snapshot, SnapshotApp, SnapshotOrigin};

use super::certificates::{BuiltCertificates, FetchedCertificates, ServedCertificates};
use super::secrets::SecretBundles;
use crate::acme::AcmeChallenges;
use crate::app::{App, Backend, HttpsPolicy};
use crate::certs::CertResolver;
use crate::config::AppOutbound;
use crate::config::{AppLimits, MAX_ENV_BYTES, normalize_prefix};
use crate::dispatch::{Dispatcher, RoutingTable, Target};
use crate::metrics::Metrics;
use crate::origin::{Origin, OriginUrl};
use crate::runtime::{LoadError, LoadedComponent, Runtime};
use wasmtime_wasi_config::WasiConfigVariables;

/// Routes from the node's own config file, served next to synced apps.
pub type StaticRoute = (Vec<HostPattern>, String, Arc<App>);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("app {tenant}/{app}: {source}")]
    Load {
        tenant: TenantId,
        app: AppName,
        source: LoadError,
    },
    #[error("app {tenant}/{app}: hostname {host} is already served by this node's config file")]
    HostConflict {
        tenant: TenantId,
        app: AppName,
        host: HostPattern,
    },
    #[error("app {tenant}/{app}: {message}")]
    Invalid {
        tenant: TenantId,
        app: AppName,
        message: String,
    },
}

pub struct Applier {
    runtime: Arc<Runtime>,
    metrics: Metrics,
    dispatcher: Arc<Dispatcher>,
    /// Where the synced certificates are served from.
    resolver: Arc<CertResolver>,
    certificates: ServedCertificates,
    /// Verified secrets bundles by digest (`sync::secrets` fills it before
    /// a build; an install keeps those the served apps name).
    secrets: SecretBundles,
    static_routes: Vec<StaticRoute>,
    /// The synced apps being served, with what they were built from.
    current: HashMap<(TenantId, AppName), (SnapshotApp, Arc<App>)>,
    /// The synced origin routes being served.
    current_origins: HashMap<(TenantId, AppName), (SnapshotOrigin, Arc<App>)>,
    /// The epoch and id of the last purge applied (or skipped because the
    /// cache could not hold anything it names).
    last_purge: Option<(String, u64)>,
    /// The key-value service synced apps' stores come from.
    kv: Option<Arc<crate::kv::KvService>>,
}

/// A snapshot's apps, built and ready to swap in, and the apps that failed.
pub struct Built {
    apps: HashMap<(TenantId, AppName), (SnapshotApp, Arc<App>)>,
    origins: HashMap<(TenantId, AppName), (SnapshotOrigin, Arc<App>)>,
    table: RoutingTable,
    certificates: BuiltCertificates,
    challenges: AcmeChallenges,
    failures: Vec<AppError>,
}

impl Built {
    /// What of the revision will not be served.
    pub fn take_failures(&mut self) -> Failures {
        Failures {
            apps: std::mem::take(&mut self.failures),
            certificates: std::mem::take(&mut self.certificates.failures),
        }
    }
}

/// What of a revision could not be served, by kind: each is counted once,
/// under its own reason of `edge_sync_failures_total`, and all are
/// reported with their apps.
#[derive(Debug, Default)]
pub struct Failures {
    pub apps: Vec<AppError>,
    pub certificates: Vec<AppError>,
}

impl Failures {
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.certificates.is_empty()
    }

    pub fn len(&self) -> usize {
        self.apps.len() + self.certificates.len()
    }

    /// The report's list: apps, then certificates.
    pub fn into_report(self) -> Vec<AppError> {
        let mut all = self.apps;
        all.extend(self.certificates);
        all
    }
}

impl Applier {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Metrics,
        dispatcher: Arc<Dispatcher>,
        resolver: Arc<CertResolver>,
        static_routes: Vec<StaticRoute>,
    ) -> Self {
        Self {
            runtime,
            metrics,
            dispatcher,
            resolver,
            certificates: ServedCertificates::default(),
            secrets: SecretBundles::default(),
            static_routes,
            current: HashMap::new(),
            current_origins: HashMap::new(),
            last_purge: None,
            kv: None,
        }
    }

    /// Synced apps open the stores their snapshot links from `kv`.
    pub fn set_kv(&mut self, kv: Arc<crate::kv::KvService>) {
        self.kv = Some(kv);
    }

    /// The artifact digests the current apps were loaded from.
    pub fn has_artifact(&self, sha256: &str) -> bool {
        self.current
            .values()
            .any(|(spec, _)| spec.artifact.sha256 == sha256)
    }

    /// The secrets bundles held.
    pub fn secrets(&self) -> &SecretBundles {
        &self.secrets
    }

    pub fn secrets_mut(&mut self) -> &mut SecretBundles {
        &mut self.secrets
    }

    /// The parsed key of a certificate bundle already served.
    pub fn certificate_key(&self, sha256: &str) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.certificates.key(sha256)
    }

    /// The certificate bundles being served.
    pub fn served_certificates(&self) -> Vec<String> {
        self.certificates.bundles().map(str::to_string).collect()
    }

    fn component_for(&self, sha256: &str) -> Option<LoadedComponent> {
        self.current
            .values()
            .find(|(spec, _)| spec.artifact.sha256 == sha256)
            .and_then(|(_, app)| app.component().cloned())
    }

    /// Builds every app of `snapshot`. `artifacts` holds the verified bytes
    /// of every artifact the current revision has not loaded; `bad_artifacts`
    /// the ones that could not be had, with why; `certificates` the same for
    /// certificate bundles. Loading machine code takes milliseconds: call
    /// this off the async workers.
    pub fn build(
        &self,
        snapshot: &Snapshot,
        artifacts: &HashMap<String, Vec<u8>>,
        bad_artifacts: &HashMap<String, String>,
        certificates: &FetchedCertificates,
    ) -> Built {
        let static_hosts: HashSet<(HostPattern, String)> = self
            .static_routes
            .iter()
            .flat_map(|(hosts, prefix, _)| {
                hosts
                    .iter()
                    .map(move |h| (h.clone(), normalize_prefix(prefix)))
            })
            .collect();
        let mut loaded: HashMap<String, LoadedComponent> = HashMap::new();
        let mut apps = HashMap::with_capacity(snapshot.apps.len());
        let mut failures = Vec::new();
        // The hosts of apps served in no version: they answer 503, not 404.
        let mut unavailable: Vec<Vec<HostPattern>> = Vec::new();
        let mut not_served = |hosts: &[HostPattern]| {
            let free: Vec<HostPattern> = hosts
                .iter()
                .filter(|h| !served_statically(&static_hosts, h))
                .cloned()
                .collect();
            unavailable.push(free);
        };
        for spec in &snapshot.apps {
            let key = (spec.tenant.clone(), spec.name.clone());
            let served =
                keep_or_install(&self.current, &mut apps, &mut failures, key, spec, |spec| {
                    self.build_one(spec, &static_hosts, &mut loaded, artifacts, bad_artifacts)
                });
            if !served {
                not_served(&spec.hosts);
            }
        }
        let mut origins = HashMap::with_capacity(snapshot.origins.len());
        for spec in &snapshot.origins {
            let key = (spec.tenant.clone(), spec.name.clone());
            let served = keep_or_install(
                &self.current_origins,
                &mut origins,
                &mut failures,
                key,
                spec,
                |spec| self.build_origin(spec, &static_hosts),
            );
            if !served {
                not_served(&spec.hosts);
            }
        }
        let table = RoutingTable::new(
            self.static_routes
                .iter()
                .map(|(hosts, prefix, app)| {
                    (hosts.as_slice(), prefix.as_str(), Target::App(app.clone()))
                })
                .chain(
                    apps.values()
                        .map(|(spec, app)| (spec.hosts.as_slice(), "/", Target::App(app.clone()))),
                )
                .chain(
                    origins
                        .values()
                        .map(|(spec, app)| (spec.hosts.as_slice(), "/", Target::App(app.clone()))),
                )
                .chain(
                    unavailable
                        .iter()
                        .map(|hosts| (hosts.as_slice(), "/", Target::Unavailable)),
                ),
        );
        let certificates = self.certificates.build(snapshot, certificates);
        Built {
            apps,
            origins,
            table,
            certificates,
            challenges: AcmeChallenges::new(&snapshot.acme_challenges),
            failures,
        }
    }

    fn build_one(
        &self,
        spec: &SnapshotApp,
        static_hosts: &HashSet<(HostPattern, String)>,
        loaded: &mut HashMap<String, LoadedComponent>,
        artifacts: &HashMap<String, Vec<u8>>,
        bad_artifacts: &HashMap<String, String>,
    ) -> Result<App, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            tenant: spec.tenant.clone(),
            app: spec.name.clone(),
            message,
        };
        no_static_host(&spec.tenant, &spec.name, &spec.hosts, static_hosts)?;
        let sha = spec.artifact.sha256.as_str();
        if let Some(why) = bad_artifacts.get(sha) {
            return Err(invalid(why.clone()));
        }
        let component = match loaded.get(sha).cloned().or_else(|| self.component_for(sha)) {
            Some(component) => component,
            None => {
                let bytes = artifacts
                    .get(sha)
                    .ok_or_else(|| invalid(format!("artifact {sha} was not fetched")))?;
                let component = self
                    .runtime
                    .load_trusted_artifact(bytes)
                    .map_err(|source| BuildError::Load {
                        tenant: spec.tenant.clone(),
                        app: spec.name.clone(),
                        source,
                    })?;
                loaded.insert(sha.to_string(), component.clone());
                component
            }
        };
        self.build_app(spec, component)
    }

    fn build_origin(
        &self,
        spec: &SnapshotOrigin,
        static_hosts: &HashSet<(HostPattern, String)>,
    ) -> Result<App, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            tenant: spec.tenant.clone(),
            app: spec.name.clone(),
            message,
        };
        no_static_host(&spec.tenant, &spec.name, &spec.hosts, static_hosts)?;
        let url = OriginUrl::try_from(spec.origin.clone()).map_err(invalid)?;
        let limits = self.node_limits(spec.limits.clone(), &spec.tenant, &spec.name)?;
        let https = HttpsPolicy::new(&spec.https).map_err(invalid)?;
        Ok(App::with_backend(
            spec.tenant.clone(),
            spec.name.clone(),
            Backend::Origin(Origin {
                url,
                // A tenant wrote it: internal addresses only where the
                // operator's [outbound] allows them.
                operator_trusted: false,
                forward_override_headers: spec.forward_override_headers,
            }),
            Vec::new(),
            limits,
            AppOutbound::default(),
            &self.metrics,
        )
        .with_https(https)
        .with_compression(spec.compression))
    }

    /// The app's limits, validated, under the node's own ceilings.
    fn node_limits(
        &self,
        mut limits: AppLimits,
        tenant: &TenantId,
        app: &AppName,
    ) -> Result<AppLimits, BuildError> {
        limits.validate().map_err(|e| BuildError::Invalid {
            tenant: tenant.clone(),
            app: app.clone(),
            message: e.to_string(),
        })?;
        let settings = &self.runtime.settings;
        // The node's own ceilings win over what the control plane asks.
        if limits.max_memory_bytes > settings.max_memory_bytes {
            tracing::warn!(%tenant, %app, asked = limits.max_memory_bytes, ceiling = settings.max_memory_bytes, "memory limit above this node's runtime.max_memory_bytes; clamped");
            limits.max_memory_bytes = settings.max_memory_bytes;
        }
        limits.cpu_time = limits.cpu_time.max(settings.epoch_tick);
        Ok(limits)
    }

    fn build_app(&self, spec: &SnapshotApp, component: LoadedComponent) -> Result<App, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            tenant: spec.tenant.clone(),
            app: spec.name.clone(),
            message,
        };
        let limits = self.node_limits(spec.limits.clone(), &spec.tenant, &spec.name)?;
        spec.kv_limits
            .check()
            .map_err(|e| invalid(format!("key-value limits: {e}")))?;
        // Only an app that links a store gets its counters (ten series).
        let kv = self
            .kv
            .as_ref()
            .filter(|_| !spec.kv.is_empty())
            .map(|service| {
                Arc::new(crate::kv::AppKv::new(
                    spec.tenant.clone(),
                    spec.name.clone(),
                    spec.kv.clone(),
                    spec.kv_limits,
                    service.clone(),
                ))
            });
        let mut env_bytes = 0;
        for (key, value) in &spec.config {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(invalid(format!(
                    "config key `{key}` or its value is not allowed"
                )));
            }
            env_bytes += key.len() + value.len();
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(invalid(format!(
                "{env_bytes} bytes of config values; the limit is {MAX_ENV_BYTES}"
            )));
        }
        let https = HttpsPolicy::new(&spec.https).map_err(invalid)?;
        // wasi:config: the config values, then the secrets, which win on a
        // name in both. Never in the environment.
        let mut variables: WasiConfigVariables = spec.config.iter().collect();
        if let Some(reference) = &spec.secrets {
            match self.secrets.get(&reference.sha256) {
                Some(Ok(values)) => {
                    for (name, value) in values.iter() {
                        variables.insert(name.clone(), value.clone());
                    }
                }
                Some(Err(why)) => return Err(invalid(format!("secrets: {why}"))),
                None => return Err(invalid("its secrets bundle was not fetched".into())),
            }
        }
        Ok(App::new(
            spec.tenant.clone(),
            spec.name.clone(),
            component,
            spec.config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits,
            // The control plane's policy; the node's [outbound] still
            // vets every address it resolves to.
            spec.outbound.clone(),
            &self.metrics,
        )
        .with_config_store(variables)
        .with_https(https)
        .with_compression(spec.compression)
        .with_kv(kv))
    }

    /// The artifacts the served apps were loaded from.
    pub fn served_artifacts(&self) -> Vec<String> {
        self.current
            .values()
            .map(|(spec, _)| spec.artifact.sha256.clone())
            .collect()
    }

    /// Serves `built` from now on.
    pub fn install(&mut self, built: Built) {
        // Certificates and challenges first: a request routed by the new
        // table finds its host's certificate and challenges in place.
        self.certificates
            .install(built.certificates, &self.resolver, &self.metrics);
        self.dispatcher.swap_challenges(built.challenges);
        self.dispatcher.swap_routes(built.table);
        self.metrics
            .apps_loaded
            .set((self.static_routes.len() + built.apps.len() + built.origins.len()) as i64);
        for (tenant, app) in self.current.keys().chain(self.current_origins.keys()) {
            let key = (tenant.clone(), app.clone());
            if !built.apps.contains_key(&key) && !built.origins.contains_key(&key) {
                // An app created again under the same name must not be
                // served what the deleted one stored.
                if let Some(cache) = self.dispatcher.cache() {
                    cache.forget_app(tenant.as_str(), app.as_str());
                }
                self.metrics.remove_app(tenant.as_str(), app.as_str());
            }
        }
        let named: HashSet<&str> = built
            .apps
            .values()
            .filter_map(|(spec, _)| spec.secrets.as_ref().map(|s| s.sha256.as_str()))
            .collect();
        self.secrets.retain(&named);
        self.current = built.apps;
        self.current_origins = built.origins;
    }

    /// Applies the snapshot's purges this node has not applied yet. The
    /// first snapshot after start-up only sets the mark: the cache holds
    /// nothing older. A new epoch applies all it carries; a gap (purges
    /// this node never saw have left the window) purges every synced app
    /// softly, since some purge was lost.
    pub fn apply_purges(&mut self, snapshot: &Snapshot) {
        let newest = snapshot.purges.last().map_or(0, |p| p.id);
        let oldest = snapshot.purges.first().map(|p| p.id);
        let plan = plan_purges(self.last_purge.as_ref(), &snapshot.epoch, oldest);
        let mark = match plan {
            PurgePlan::MarkOnly => newest,
            PurgePlan::Apply { after, .. } => newest.max(after),
        };
        let previous = self.last_purge.replace((snapshot.epoch.clone(), mark));
        let (Some(cache), PurgePlan::Apply { after, gap }) =
            (self.dispatcher.cache().cloned(), plan)
        else {
            return;
        };
        if gap {
            tracing::warn!(
                ?previous,
                oldest,
                "purges were missed; soft-purging every synced app"
            );
            for (tenant, app) in self.current.keys().chain(self.current_origins.keys()) {
                cache.purge(tenant.as_str(), app.as_str(), &PurgeTarget::All, true);
            }
        }
        for purge in snapshot.purges.iter().filter(|p| p.id > after) {
            // Only apps served here have entries (and metric series) here.
            let key = (purge.tenant.clone(), purge.app.clone());
            if !self.current.contains_key(&key) && !self.current_origins.contains_key(&key) {
                continue;
            }
            let purged = cache.purge(
                purge.tenant.as_str(),
                purge.app.as_str(),
                &purge.target,
                purge.soft,
            );
            tracing::debug!(id = purge.id, tenant = %purge.tenant, app = %purge.app, purged, "purge applied");
        }
    }
}

/// A synced app may not claim a hostname the node's own config routes.
/// Whether the node's config file routes `host`'s root (`/`) itself.
fn served_statically(static_hosts: &HashSet<(HostPattern, String)>, host: &HostPattern) -> bool {
    static_hosts.contains(&(host.clone(), "/".to_string()))
}

fn no_static_host(
    tenant: &TenantId,
    app: &AppName,
    hosts: &[HostPattern],
    static_hosts: &HashSet<(HostPattern, String)>,
) -> Result<(), BuildError> {
    match hosts.iter().find(|h| served_statically(static_hosts, h)) {
        Some(host) => Err(BuildError::HostConflict {
            tenant: tenant.clone(),
            app: app.clone(),
            host: host.clone(),
        }),
        None => Ok(()),
    }
}

type Served<S> = HashMap<(TenantId, AppName), (S, Arc<App>)>;

/// Puts one app of a snapshot into `next`: unchanged (same spec as
/// `current`) it is kept, with its admission state; else it is built, and
/// an app that fails to build keeps its previous version, if any, and is
/// reported. Whether some version of the app is served.
fn keep_or_install<S: PartialEq + Clone>(
    current: &Served<S>,
    next: &mut Served<S>,
    failures: &mut Vec<AppError>,
    key: (TenantId, AppName),
    spec: &S,
    build: impl FnOnce(&S) -> Result<App, BuildError>,
) -> bool {
    if let Some((old, app)) = current.get(&key)
        && old == spec
    {
        next.insert(key, (spec.clone(), app.clone()));
        return true;
    }
    match build(spec) {
        Ok(app) => {
            next.insert(key, (spec.clone(), Arc::new(app)));
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "an app of the revision cannot be served; it keeps its previous version, if any");
            failures.push(AppError {
                tenant: key.0.clone(),
                app: key.1.clone(),
                error: e.to_string(),
            });
            match current.get(&key) {
                Some(previous) => {
                    next.insert(key, previous.clone());
                    true
                }
                None => false,
            }
        }
    }
}

/// What to do with a snapshot's purges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurgePlan {
    /// The first snapshot since start-up: the cache holds nothing older
    /// than it, so only remember where the purges stand.
    MarkOnly,
    /// Apply those with an id above `after`; with `gap`, some were missed
    /// (they left the window), so soft-purge everything first.
    Apply { after: u64, gap: bool },
}

/// Ids start at 1 in every epoch, and a snapshot carries the newest ones,
/// consecutive. `last` is the epoch and id of the last purge applied.
fn plan_purges(last: Option<&(String, u64)>, epoch: &str, oldest: Option<u64>) -> PurgePlan {
    let after = match last {
        None => return PurgePlan::MarkOnly,
        Some((last_epoch, id)) if last_epoch == epoch => *id,
        // A new epoch (a new or restored control-plane database): none of
        // its purges were seen here.
        Some(_) => 0,
    };
    PurgePlan::Apply {
        after,
        gap: oldest.is_some_and(|oldest| oldest > after + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_plans_follow_ids_epochs_and_gaps() {
        let at = |epoch: &str, id: u64| (epoch.to_string(), id);
        assert_eq!(plan_purges(None, "e1", Some(5)), PurgePlan::MarkOnly);
        let seen = at("e1", 7);
        let apply = |after, gap| PurgePlan::Apply { after, gap };
        assert_eq!(plan_purges(Some(&seen), "e1", None), apply(7, false));
        assert_eq!(plan_purges(Some(&seen), "e1", Some(3)), apply(7, false));
        assert_eq!(plan_purges(Some(&seen), "e1", Some(8)), apply(7, false));
        assert_eq!(plan_purges(Some(&seen), "e1", Some(9)), apply(7, true));
        // Nothing seen yet in this epoch, and the window moved past id 1.
        let none_yet = at("e1", 0);
        assert_eq!(plan_purges(Some(&none_yet), "e1", Some(1)), apply(0, false));
        assert_eq!(
            plan_purges(Some(&none_yet), "e1", Some(901)),
            apply(0, true)
        );
        // A new epoch applies everything it carries.
        assert_eq!(plan_purges(Some(&seen), "e2", Some(1)), apply(0, false));
        assert_eq!(plan_purges(Some(&seen), "e2", Some(40)), apply(0, true));
    }
}
