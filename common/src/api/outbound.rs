//! An app's outbound policy and its tenant's caps on it.

use serde::{Deserialize, Serialize};

use crate::kv::KvLimits;
use crate::names::{AppName, TenantId};
pub use crate::outbound::{AppOutbound, DEFAULT_MAX_SUBREQUESTS, Destination};

/// Destinations an app may list when its tenant has no cap of its own.
pub const DEFAULT_MAX_OUTBOUND_DESTINATIONS: u32 = 20;

/// `GET`/`PUT /v1/apps/{app}/outbound`: the app's policy as stored (a PUT
/// takes an [`AppOutbound`]: `allow`, optional `max_subrequests`), and the
/// `max_subrequests` nodes enforce (the app's, or the default bounded by
/// the tenant's cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundPolicy {
    pub app: AppName,
    pub allow: Vec<Destination>,
    /// What the app set; `null`: the default.
    pub max_subrequests: Option<u32>,
    /// What nodes enforce.
    pub effective_max_subrequests: u32,
    /// The revision the policy was set at (`0` on a GET).
    #[serde(default)]
    pub revision: u64,
}

/// `PUT /v1/apps/{app}/outbound`: destinations as written, so that the
/// server parses them (with the node's parser) and names a bad one with
/// its own code; `{"allow": []}` clears the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetOutbound {
    pub allow: Vec<String>,
    /// `null` or absent: the default (32, or the tenant's cap if lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subrequests: Option<u32>,
}

/// A tenant's caps on its apps' outbound policies, as stored: `None` is
/// the default. `PUT /v1/tenants/{tenant}/limits` (admin) takes it; both
/// fields are required, `null` going back to the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTenantLimits {
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_outbound_destinations: Option<u32>,
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_subrequests: Option<u32>,
    /// Key-value limits (issue 16): absent or `null` is the default
    /// ([`KvLimits::DEFAULT`]); each within [`KvLimits::CEILING`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_key_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_value_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_keys_per_store: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_tenant_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_ops_per_request: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_stores: Option<u32>,
}

impl SetTenantLimits {
    /// The key-value limits in force: the tenant's values, the defaults
    /// for the rest.
    pub fn kv(&self) -> KvLimits {
        let d = KvLimits::DEFAULT;
        KvLimits {
            max_key_bytes: self.kv_max_key_bytes.unwrap_or(d.max_key_bytes),
            max_value_bytes: self.kv_max_value_bytes.unwrap_or(d.max_value_bytes),
            max_keys_per_store: self.kv_max_keys_per_store.unwrap_or(d.max_keys_per_store),
            max_tenant_bytes: self.kv_max_tenant_bytes.unwrap_or(d.max_tenant_bytes),
            max_ops_per_request: self.kv_max_ops_per_request.unwrap_or(d.max_ops_per_request),
            max_stores: self.kv_max_stores.unwrap_or(d.max_stores),
        }
    }

    /// Most destinations one app of the tenant may list.
    pub fn destinations(&self) -> u32 {
        self.max_outbound_destinations
            .unwrap_or(DEFAULT_MAX_OUTBOUND_DESTINATIONS)
    }

    /// Most `max_subrequests` one app of the tenant may set.
    pub fn subrequests(&self) -> u32 {
        self.max_subrequests.unwrap_or(DEFAULT_MAX_SUBREQUESTS)
    }

    /// The `max_subrequests` nodes enforce for `policy`.
    pub fn effective_subrequests(&self, policy: &AppOutbound) -> u32 {
        policy
            .max_subrequests
            .unwrap_or(DEFAULT_MAX_SUBREQUESTS)
            .min(self.subrequests())
    }

    pub fn is_default(&self) -> bool {
        self.max_outbound_destinations.is_none()
            && self.max_subrequests.is_none()
            && self.kv().is_default()
    }
}

/// `GET`/`PUT /v1/tenants/{tenant}/limits`: the caps in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    pub tenant: TenantId,
    /// Destinations one app may list.
    pub max_outbound_destinations: u32,
    /// The most `max_subrequests` one app may set.
    pub max_subrequests: u32,
    /// The key-value limits in force.
    pub kv: KvLimits,
    /// The tenant's own values (`null`: the default).
    pub custom: SetTenantLimits,
}

impl TenantLimits {
    pub fn new(tenant: TenantId, custom: SetTenantLimits) -> Self {
        TenantLimits {
            tenant,
            max_outbound_destinations: custom.destinations(),
            max_subrequests: custom.subrequests(),
            kv: custom.kv(),
            custom,
        }
    }
}
