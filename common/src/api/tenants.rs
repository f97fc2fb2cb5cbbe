//! Tokens' roles, tenants and their storage quotas.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::TenantId;

/// What a token may do: `admin` everything, `tenant` its own tenant's apps,
/// `node` sync, artifacts and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Tenant,
    Node,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Tenant, Role::Node];

    /// The name on the wire and on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Tenant => "tenant",
            Role::Node => "node",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("no role {s:?}: admin, tenant or node"))
    }
}

/// `GET /v1/whoami`: who the token says its bearer is. Fields sorted (see
/// the module's wire note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub role: Role,
    pub subject: String,
    /// Set for (and only for) tenant tokens; `null` otherwise.
    pub tenant: Option<TenantId>,
}

/// `POST /v1/tenants` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: TenantId,
}

/// A tenant, as created and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub created_unix: u64,
}

/// `GET /v1/tenants` (admin). Each tenant's keys sorted (see the module's
/// wire note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantList {
    #[serde(serialize_with = "super::sorted_keys")]
    pub tenants: Vec<Tenant>,
}

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
