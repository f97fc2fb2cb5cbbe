//! An app as the request path sees it: its names, its loaded component, its
//! config values and its metric handles.

use std::sync::Arc;

use crate::admission::AppAdmission;
use crate::config::{AppConfig, AppLimits};
use crate::metrics::{AppMetrics, Metrics};
use crate::names::{AppName, TenantId};
use crate::runtime::outbound::AppOutbound;
use crate::runtime::{LoadError, LoadedComponent, Runtime};

pub struct App {
    pub name: AppName,
    pub tenant: TenantId,
    pub component: LoadedComponent,
    /// Config values, passed to the guest as its environment.
    pub env: Vec<(String, String)>,
    pub metrics: AppMetrics,
    pub limits: AppLimits,
    pub outbound: Arc<AppOutbound>,
    pub admission: AppAdmission,
    /// Set once the app has answered with caching headers: until then the
    /// shared cache stays out of its way (no lookups, no collapsing), so an
    /// app that never caches pays nothing for the cache.
    pub cache_seen: std::sync::atomic::AtomicBool,
    // Shared copies of the names for per-request log contexts.
    pub(crate) log_tenant: Arc<str>,
    pub(crate) log_name: Arc<str>,
}

/// An app whose component failed to load, with the app named.
#[derive(Debug, thiserror::Error)]
#[error("app `{app}` ({path}): {source}")]
pub struct AppLoadError {
    pub app: String,
    pub path: String,
    #[source]
    pub source: LoadError,
}

impl App {
    /// Compiles and links the app's component.
    pub fn load(
        config: &AppConfig,
        runtime: &Runtime,
        metrics: &Metrics,
    ) -> Result<Self, AppLoadError> {
        let component = runtime
            .load_file(&config.component)
            .map_err(|source| AppLoadError {
                app: config.name.to_string(),
                path: config.component.display().to_string(),
                source,
            })?;
        Ok(App::new(
            config.tenant.clone(),
            config.name.clone(),
            component,
            config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config.limits.clone(),
            config.outbound.clone(),
            metrics,
        ))
    }

    pub fn new(
        tenant: TenantId,
        name: AppName,
        component: LoadedComponent,
        env: Vec<(String, String)>,
        limits: AppLimits,
        outbound: AppOutbound,
        metrics: &Metrics,
    ) -> Self {
        App {
            metrics: metrics.for_app(tenant.as_str(), name.as_str()),
            log_tenant: Arc::from(tenant.as_str()),
            log_name: Arc::from(name.as_str()),
            admission: AppAdmission::new(&limits),
            cache_seen: Default::default(),
            limits,
            outbound: Arc::new(outbound),
            name,
            tenant,
            component,
            env,
        }
    }
}
