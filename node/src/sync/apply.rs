//! Turning a verified snapshot into the routing table: load every artifact
//! it names (reusing what the current revision already loaded), build every
//! app, and only then swap the table — make before break.
//!
//! Apps fail alone: an app whose artifact is bad, whose component does not
//! load or whose hostname the node's own config already routes keeps its
//! previous version (if it had one) and is reported; every other app of the
//! revision goes live.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use edge_common::names::{AppName, HostPattern, TenantId};
use edge_common::sync::{AppError, PurgeTarget, Snapshot, SnapshotApp, SnapshotOrigin};

use crate::app::{App, Backend};
use crate::config::{AppLimits, MAX_ENV_BYTES, normalize_prefix};
use crate::dispatch::{Dispatcher, RoutingTable};
use crate::metrics::Metrics;
use crate::origin::{Origin, OriginUrl};
use crate::runtime::outbound::AppOutbound;
use crate::runtime::{LoadError, LoadedComponent, Runtime};

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
    static_routes: Vec<StaticRoute>,
    /// The synced apps being served, with what they were built from.
    current: HashMap<(TenantId, AppName), (SnapshotApp, Arc<App>)>,
    /// The synced origin routes being served.
    current_origins: HashMap<(TenantId, AppName), (SnapshotOrigin, Arc<App>)>,
    /// The epoch and id of the last purge applied (or skipped because the
    /// cache could not hold anything it names).
    last_purge: Option<(String, u64)>,
}

/// A snapshot's apps, built and ready to swap in, and the apps that failed.
pub struct Built {
    apps: HashMap<(TenantId, AppName), (SnapshotApp, Arc<App>)>,
    origins: HashMap<(TenantId, AppName), (SnapshotOrigin, Arc<App>)>,
    table: RoutingTable,
    pub failures: Vec<AppError>,
}

impl Applier {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Metrics,
        dispatcher: Arc<Dispatcher>,
        static_routes: Vec<StaticRoute>,
    ) -> Self {
        Self {
            runtime,
            metrics,
            dispatcher,
            static_routes,
            current: HashMap::new(),
            current_origins: HashMap::new(),
            last_purge: None,
        }
    }

    /// The artifact digests the current apps were loaded from.
    pub fn has_artifact(&self, sha256: &str) -> bool {
        self.current
            .values()
            .any(|(spec, _)| spec.artifact.sha256 == sha256)
    }

    fn component_for(&self, sha256: &str) -> Option<LoadedComponent> {
        self.current
            .values()
            .find(|(spec, _)| spec.artifact.sha256 == sha256)
            .and_then(|(_, app)| app.component().cloned())
    }

    /// Builds every app of `snapshot`. `artifacts` holds the verified bytes
    /// of every artifact the current revision has not loaded; `bad_artifacts`
    /// the ones that could not be had, with why. Loading machine code takes
    /// milliseconds: call this off the async workers.
    pub fn build(
        &self,
        snapshot: &Snapshot,
        artifacts: &HashMap<String, Vec<u8>>,
        bad_artifacts: &HashMap<String, String>,
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
        for spec in &snapshot.apps {
            let key = (spec.tenant.clone(), spec.name.clone());
            // Unchanged app: keep it, with its admission state.
            if let Some((old, app)) = self.current.get(&key)
                && old == spec
            {
                apps.insert(key, (spec.clone(), app.clone()));
                continue;
            }
            match self.build_one(spec, &static_hosts, &mut loaded, artifacts, bad_artifacts) {
                Ok(app) => {
                    apps.insert(key, (spec.clone(), Arc::new(app)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "an app of the revision cannot be served; it keeps its previous version, if any");
                    failures.push(AppError {
                        tenant: spec.tenant.clone(),
                        app: spec.name.clone(),
                        error: e.to_string(),
                    });
                    if let Some(previous) = self.current.get(&key) {
                        apps.insert(key, previous.clone());
                    }
                }
            }
        }
        let mut origins = HashMap::with_capacity(snapshot.origins.len());
        for spec in &snapshot.origins {
            let key = (spec.tenant.clone(), spec.name.clone());
            if let Some((old, app)) = self.current_origins.get(&key)
                && old == spec
            {
                origins.insert(key, (spec.clone(), app.clone()));
                continue;
            }
            match self.build_origin(spec, &static_hosts) {
                Ok(app) => {
                    origins.insert(key, (spec.clone(), Arc::new(app)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "an origin route of the revision cannot be served; it keeps its previous settings, if any");
                    failures.push(AppError {
                        tenant: spec.tenant.clone(),
                        app: spec.name.clone(),
                        error: e.to_string(),
                    });
                    if let Some(previous) = self.current_origins.get(&key) {
                        origins.insert(key, previous.clone());
                    }
                }
            }
        }
        let table = RoutingTable::new(
            self.static_routes
                .iter()
                .map(|(hosts, prefix, app)| (hosts.as_slice(), prefix.as_str(), app.clone()))
                .chain(
                    apps.values()
                        .map(|(spec, app)| (spec.hosts.as_slice(), "/", app.clone())),
                )
                .chain(
                    origins
                        .values()
                        .map(|(spec, app)| (spec.hosts.as_slice(), "/", app.clone())),
                ),
        );
        Built {
            apps,
            origins,
            table,
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
        if let Some(host) = spec
            .hosts
            .iter()
            .find(|h| static_hosts.contains(&((*h).clone(), "/".to_string())))
        {
            return Err(BuildError::HostConflict {
                tenant: spec.tenant.clone(),
                app: spec.name.clone(),
                host: host.clone(),
            });
        }
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
        if let Some(host) = spec
            .hosts
            .iter()
            .find(|h| static_hosts.contains(&((*h).clone(), "/".to_string())))
        {
            return Err(BuildError::HostConflict {
                tenant: spec.tenant.clone(),
                app: spec.name.clone(),
                host: host.clone(),
            });
        }
        let url = OriginUrl::try_from(spec.origin.clone()).map_err(invalid)?;
        let limits = self.node_limits(spec.limits.clone(), &spec.tenant, &spec.name)?;
        Ok(App::with_backend(
            spec.tenant.clone(),
            spec.name.clone(),
            Backend::Origin(Origin {
                url,
                // A tenant wrote it: internal addresses only where the
                // operator's [outbound] allows them.
                operator_trusted: false,
            }),
            Vec::new(),
            limits,
            AppOutbound::default(),
            &self.metrics,
        ))
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
        Ok(App::new(
            spec.tenant.clone(),
            spec.name.clone(),
            component,
            spec.config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits,
            AppOutbound::default(),
            &self.metrics,
        ))
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
        self.dispatcher.swap_routes(built.table);
        self.metrics
            .apps_loaded
            .set((self.static_routes.len() + built.apps.len() + built.origins.len()) as i64);
        for (tenant, app) in self.current.keys().chain(self.current_origins.keys()) {
            let key = (tenant.clone(), app.clone());
            if !built.apps.contains_key(&key) && !built.origins.contains_key(&key) {
                self.metrics.remove_app(tenant.as_str(), app.as_str());
            }
        }
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
        let Some(cache) = self.dispatcher.cache().cloned() else {
            self.last_purge = Some((snapshot.epoch.clone(), newest));
            return;
        };
        let last = match &self.last_purge {
            None => {
                self.last_purge = Some((snapshot.epoch.clone(), newest));
                return;
            }
            Some((epoch, id)) if *epoch == snapshot.epoch => *id,
            Some(_) => 0,
        };
        let oldest = snapshot.purges.first().map(|p| p.id);
        if last > 0 && oldest.is_some_and(|oldest| oldest > last + 1) {
            tracing::warn!(
                last,
                oldest,
                "purges were missed; soft-purging every synced app"
            );
            for (tenant, app) in self.current.keys().chain(self.current_origins.keys()) {
                cache.purge(tenant.as_str(), app.as_str(), &PurgeTarget::All, true);
            }
        }
        for purge in snapshot.purges.iter().filter(|p| p.id > last) {
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
        self.last_purge = Some((snapshot.epoch.clone(), newest.max(last)));
    }
}
