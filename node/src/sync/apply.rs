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
use edge_common::sync::{AppError, Snapshot, SnapshotApp};

use crate::app::App;
use crate::config::{MAX_ENV_BYTES, normalize_prefix};
use crate::dispatch::{Dispatcher, RoutingTable};
use crate::metrics::Metrics;
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
}

/// A snapshot's apps, built and ready to swap in, and the apps that failed.
pub struct Built {
    apps: HashMap<(TenantId, AppName), (SnapshotApp, Arc<App>)>,
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
        let table = RoutingTable::new(
            self.static_routes
                .iter()
                .map(|(hosts, prefix, app)| (hosts.as_slice(), prefix.as_str(), app.clone()))
                .chain(
                    apps.values()
                        .map(|(spec, app)| (spec.hosts.as_slice(), "/", app.clone())),
                ),
        );
        Built {
            apps,
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

    fn build_app(&self, spec: &SnapshotApp, component: LoadedComponent) -> Result<App, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            tenant: spec.tenant.clone(),
            app: spec.name.clone(),
            message,
        };
        let mut limits = spec.limits.clone();
        limits.validate().map_err(|e| invalid(e.to_string()))?;
        let settings = &self.runtime.settings;
        // The node's own ceilings win over what the control plane asks.
        if limits.max_memory_bytes > settings.max_memory_bytes {
            tracing::warn!(tenant = %spec.tenant, app = %spec.name, asked = limits.max_memory_bytes, ceiling = settings.max_memory_bytes, "memory limit above this node's runtime.max_memory_bytes; clamped");
            limits.max_memory_bytes = settings.max_memory_bytes;
        }
        limits.cpu_time = limits.cpu_time.max(settings.epoch_tick);
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
            .set((self.static_routes.len() + built.apps.len()) as i64);
        for (tenant, app) in self.current.keys() {
            if !built.apps.contains_key(&(tenant.clone(), app.clone())) {
                self.metrics.remove_app(tenant.as_str(), app.as_str());
            }
        }
        self.current = built.apps;
    }
}
