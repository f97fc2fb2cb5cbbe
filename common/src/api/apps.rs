//! Apps: creating and listing them, their origin, their config values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::AppLimits;
use crate::names::{AppName, HostPattern, TenantId};
use crate::sync::AppHttps;

/// `POST /v1/apps`: a component app, or with `origin` an origin app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// Makes an origin app: every request is forwarded to this URL,
    /// `http(s)://host[:port][/base/path]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Origin apps only (400 `origin-only-field` without `origin`):
    /// forward method-override headers, `X-Forwarded-Scheme` and header
    /// names with `_` to the origin. Absent: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_override_headers: Option<bool>,
}

/// An app, as created, fetched (`GET /v1/apps/{app}`) and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub tenant: TenantId,
    pub name: AppName,
    pub hosts: Vec<HostPattern>,
    /// The deployed version; none until the first deploy (and always none
    /// for an origin app).
    pub active_version: Option<u64>,
    /// An origin app's URL, where every request is forwarded; `null` for
    /// a component app.
    pub origin: Option<String>,
    /// An origin app's option (see [`NewApp`]); absent for a component app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_override_headers: Option<bool>,
    pub config: BTreeMap<String, String>,
    pub limits: AppLimits,
    pub created_unix: u64,
    /// The revision of the app's last change (deploy, config, limits,
    /// origin).
    pub updated_revision: u64,
    /// HTTPS redirect and HSTS (`/v1/apps/{app}/https`); absent when
    /// neither is set.
    #[serde(default, skip_serializing_if = "AppHttps::is_default")]
    pub https: AppHttps,
}

/// `GET /v1/apps`: the tenant's apps, each with its keys sorted (see the
/// module's wire note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppList {
    #[serde(serialize_with = "super::sorted_keys")]
    pub apps: Vec<App>,
}

/// `PUT /v1/apps/{app}/origin`: an origin app's new URL and, if present,
/// its `forward_override_headers` (absent: kept as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetOrigin {
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_override_headers: Option<bool>,
}

/// The answer to `PUT /v1/apps/{app}/origin`: the origin as stored (scheme
/// and host lowercased) and the revision that carries it to nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSet {
    pub origin: String,
    pub forward_override_headers: bool,
    pub revision: u64,
}

/// `PATCH /v1/apps/{app}/config`: values to set, and (`null`) to remove.
pub type ConfigChanges = BTreeMap<String, Option<String>>;

/// `GET /v1/apps/{app}/config`: the component's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppConfig {
    pub config: BTreeMap<String, String>,
}

/// `GET/PUT /v1/apps/{app}/compression` answer: the app's compression at
/// the edge (a `PUT` takes the bare [`crate::sync::AppCompression`]) and
/// the revision that carries it to nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionSet {
    pub compression: crate::sync::AppCompression,
    pub revision: u64,
}
