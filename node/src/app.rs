//! An app as the request path sees it: its names, what answers its requests
//! (a loaded component or an origin), its config values and its metric
//! handles.

use std::sync::Arc;

use edge_common::sync::{AppCompression, AppHttps};
use http::HeaderValue;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::admission::AppAdmission;
use crate::config::AppOutbound;
use crate::config::{AppConfig, AppLimits};
use crate::metrics::{AppMetrics, Metrics};
use crate::names::{AppName, TenantId};
use crate::origin::Origin;
use crate::runtime::{GuestApp, LoadError, LoadedComponent, Runtime};

pub struct App {
    pub name: AppName,
    pub tenant: TenantId,
    pub backend: Backend,
    /// Config values, passed to the guest as its environment.
    pub env: Vec<(String, String)>,
    /// What the guest reads through wasi:config: the config values, and
    /// for a synced app its secrets (which win on a name in both). Built
    /// once here, shared by every request.
    pub config_store: Arc<WasiConfigVariables>,
    pub metrics: AppMetrics,
    pub limits: AppLimits,
    pub outbound: Arc<AppOutbound>,
    pub admission: AppAdmission,
    /// Redirect to HTTPS, HSTS.
    pub https: HttpsPolicy,
    /// Compression at the edge: its own switch and threshold, `None` for
    /// the node's defaults.
    pub compression: AppCompression,
    /// Set once the app has answered with caching headers: until then the
    /// shared cache stays out of its way (no lookups, no collapsing), so an
    /// app that never caches pays nothing for the cache.
    pub cache_seen: std::sync::atomic::AtomicBool,
    /// The key-value stores it links (synced apps only).
    pub kv: Option<Arc<crate::kv::AppKv>>,
    // Shared copies of the names for per-request log contexts.
    pub(crate) log_tenant: Arc<str>,
    pub(crate) log_name: Arc<str>,
}

/// An app's HTTPS options, checked, as the request path uses them.
#[derive(Debug, Clone, Default)]
pub struct HttpsPolicy {
    /// Plain HTTP requests get a 308 to HTTPS (ACME challenges excepted).
    pub redirect: bool,
    /// `Strict-Transport-Security` for HTTPS answers only (RFC 6797 §7.2).
    pub hsts: Option<HeaderValue>,
}

impl HttpsPolicy {
    /// Checks `https` (the HSTS syntax) and prepares its header.
    pub fn new(https: &AppHttps) -> Result<Self, String> {
        https.validate()?;
        let hsts = match &https.hsts {
            Some(value) => Some(
                HeaderValue::from_str(value)
                    .map_err(|_| "hsts: not a valid header value".to_string())?,
            ),
            None => None,
        };
        Ok(Self {
            redirect: https.redirect,
            hsts,
        })
    }
}

/// What answers an app's requests.
pub enum Backend {
    Component(LoadedComponent),
    Origin(Origin),
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
    /// Compiles and links the app's component, or sets up its origin.
    pub fn load(
        config: &AppConfig,
        runtime: &Runtime,
        metrics: &Metrics,
    ) -> Result<Self, AppLoadError> {
        let backend = match (&config.component, &config.origin) {
            (_, Some(url)) => Backend::Origin(Origin {
                url: url.clone(),
                operator_trusted: true,
                forward_override_headers: config.forward_override_headers,
            }),
            (Some(path), None) => {
                Backend::Component(runtime.load_file(path).map_err(|source| AppLoadError {
                    app: config.name.to_string(),
                    path: path.display().to_string(),
                    source,
                })?)
            }
            (None, None) => {
                return Err(AppLoadError {
                    app: config.name.to_string(),
                    path: String::new(),
                    source: LoadError::NoBackend,
                });
            }
        };
        let https = HttpsPolicy::new(&config.https).map_err(|message| AppLoadError {
            app: config.name.to_string(),
            path: String::new(),
            source: LoadError::Invalid(message),
        })?;
        Ok(App::with_backend(
            config.tenant.clone(),
            config.name.clone(),
            backend,
            config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config.limits.clone(),
            config.outbound.clone(),
            metrics,
        )
        .with_https(https)
        .with_compression(config.compression))
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
        Self::with_backend(
            tenant,
            name,
            Backend::Component(component),
            env,
            limits,
            outbound,
            metrics,
        )
    }

    pub fn with_backend(
        tenant: TenantId,
        name: AppName,
        backend: Backend,
        env: Vec<(String, String)>,
        limits: AppLimits,
        outbound: AppOutbound,
        metrics: &Metrics,
    ) -> Self {
        // An origin route is a CDN property: its cache is active from the
        // first request. A component's becomes active once it speaks about
        // caching.
        let cache_seen = matches!(backend, Backend::Origin(_));
        let config_store = Arc::new(env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
        App {
            config_store,
            metrics: metrics.for_app(tenant.as_str(), name.as_str()),
            log_tenant: Arc::from(tenant.as_str()),
            log_name: Arc::from(name.as_str()),
            admission: AppAdmission::new(&limits),
            cache_seen: cache_seen.into(),
            kv: None,
            https: HttpsPolicy::default(),
            compression: AppCompression::default(),
            limits,
            outbound: Arc::new(outbound),
            name,
            tenant,
            backend,
            env,
        }
    }

    /// Serves wasi:config from `variables` (config values and secrets)
    /// instead of the config values alone.
    pub fn with_config_store(mut self, variables: WasiConfigVariables) -> Self {
        self.config_store = Arc::new(variables);
        self
    }

    /// Lets the app open the stores `kv` links.
    pub fn with_kv(mut self, kv: Option<Arc<crate::kv::AppKv>>) -> Self {
        self.kv = kv;
        self
    }

    /// Serves the app with `https` options.
    pub fn with_https(mut self, https: HttpsPolicy) -> Self {
        self.https = https;
        self
    }

    /// Compresses the app's answers as `compression` says.
    pub fn with_compression(mut self, compression: AppCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The app's component, unless it is an origin route.
    pub fn component(&self) -> Option<&LoadedComponent> {
        match &self.backend {
            Backend::Component(component) => Some(component),
            Backend::Origin(_) => None,
        }
    }
}

impl GuestApp for App {
    fn component(&self) -> Option<&LoadedComponent> {
        App::component(self)
    }

    fn env(&self) -> &[(String, String)] {
        &self.env
    }

    fn config_store(&self) -> &Arc<WasiConfigVariables> {
        &self.config_store
    }

    fn limits(&self) -> &AppLimits {
        &self.limits
    }

    fn outbound(&self) -> &Arc<AppOutbound> {
        &self.outbound
    }

    fn names(&self) -> (&Arc<str>, &Arc<str>) {
        (&self.log_tenant, &self.log_name)
    }

    fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }

    fn kv(&self) -> Option<&Arc<crate::kv::AppKv>> {
        self.kv.as_ref()
    }
}
