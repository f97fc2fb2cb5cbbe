//! Request and response bodies of the API that `edgectl` speaks too: one
//! type for both sides, so a field renamed on one fails to compile on the
//! other. Plain data: nothing here imports a stage.

use edge_common::names::{AppName, HostPattern, TenantId};
use serde::{Deserialize, Serialize};

/// `GET`/`PUT /v1/tenants/{tenant}/quota`: a tenant's storage quota and
/// what it uses of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    pub tenant: TenantId,
    /// The quota in force: the tenant's own if an operator set one, else
    /// the control plane's default (`--storage-quota-bytes`).
    pub storage_bytes: u64,
    /// Whether `storage_bytes` is the tenant's own (false: the default).
    pub custom: bool,
    /// What counts against it: the uploaded source size of each of the
    /// tenant's stored versions, summed (a version counts in full even
    /// when its bytes are shared with another version, whose blob is
    /// stored once; compiled artifacts are not counted).
    pub used_storage_bytes: u64,
}

/// `PUT /v1/tenants/{tenant}/quota` (admin): the tenant's own quota in
/// bytes, or `null` to go back to the default. The field is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTenantQuota {
    /// `deserialize_with` makes the field required though it is an
    /// `Option`: `{}` is refused, `{"storage_bytes": null}` resets.
    #[serde(deserialize_with = "Option::deserialize")]
    pub storage_bytes: Option<u64>,
}

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
