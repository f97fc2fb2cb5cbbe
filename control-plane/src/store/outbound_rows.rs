//! What apps' outbound policies and tenants' caps mean to both SQL
//! backends: every statement, written once in PostgreSQL's `$n` style
//! ([`sqlite`](super::cert_rows::sqlite) rewrites them), the conversion of
//! a row into a policy or caps, and the decisions (a policy within its
//! tenant's caps, caps not below what apps use, what a snapshot carries).
//! The backends keep only binding and fetching.

use edge_common::api::SetTenantLimits;
use edge_common::outbound::{AppOutbound, Destination};

use super::{StoreError, StoreResult};

/// `$1`: tenant, `$2`: app → (allow, max_subrequests).
pub(crate) const POLICY: &str =
    "SELECT allow, max_subrequests FROM app_outbound WHERE tenant = $1 AND app = $2";
/// `$1`: tenant, `$2`: app, `$3`: allow, `$4`: max_subrequests.
pub(crate) const PUT_POLICY: &str = "INSERT INTO app_outbound (tenant, app, allow, max_subrequests) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, app) DO UPDATE \
     SET allow = excluded.allow, max_subrequests = excluded.max_subrequests";
/// `$1`: tenant, `$2`: app.
pub(crate) const DELETE_POLICY: &str = "DELETE FROM app_outbound WHERE tenant = $1 AND app = $2";
/// `$1`: tenant → (app, allow, max_subrequests), by app.
pub(crate) const TENANT_POLICIES: &str =
    "SELECT app, allow, max_subrequests FROM app_outbound WHERE tenant = $1 ORDER BY app";
/// Every policy as (tenant, app, allow, max_subrequests), for a dump.
pub(crate) const ALL_POLICIES: &str =
    "SELECT tenant, app, allow, max_subrequests FROM app_outbound ORDER BY tenant, app";
/// `$1`: tenant, `$2`: app, `$3`: revision. A policy change is the app's change.
pub(crate) const TOUCH_APP: &str =
    "UPDATE apps SET updated_revision = $3 WHERE tenant = $1 AND name = $2";
/// `$1`: tenant → 1 if it exists.
pub(crate) const TENANT_EXISTS: &str = "SELECT 1 FROM tenants WHERE id = $1";

/// `$1`: tenant → the eight cap columns ([`limits`]).
pub(crate) const LIMITS: &str = "SELECT max_outbound_destinations, max_subrequests, \
     kv_max_key_bytes, kv_max_value_bytes, kv_max_keys_per_store, kv_max_tenant_bytes, \
     kv_max_ops_per_request, kv_max_stores FROM tenant_limits WHERE tenant = $1";
/// `$1`: tenant, `$2`..`$9`: the eight cap columns ([`limit_params`]).
pub(crate) const PUT_LIMITS: &str = "INSERT INTO tenant_limits \
     (tenant, max_outbound_destinations, max_subrequests, kv_max_key_bytes, kv_max_value_bytes, \
     kv_max_keys_per_store, kv_max_tenant_bytes, kv_max_ops_per_request, kv_max_stores) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (tenant) DO UPDATE SET max_outbound_destinations = \
     excluded.max_outbound_destinations, max_subrequests = excluded.max_subrequests, \
     kv_max_key_bytes = excluded.kv_max_key_bytes, kv_max_value_bytes = excluded.kv_max_value_bytes, \
     kv_max_keys_per_store = excluded.kv_max_keys_per_store, \
     kv_max_tenant_bytes = excluded.kv_max_tenant_bytes, \
     kv_max_ops_per_request = excluded.kv_max_ops_per_request, kv_max_stores = excluded.kv_max_stores";
/// `$1`: tenant: back to every default.
pub(crate) const DELETE_LIMITS: &str = "DELETE FROM tenant_limits WHERE tenant = $1";
/// Every tenant's caps as (tenant, the eight cap columns), for a dump.
pub(crate) const ALL_LIMITS: &str = "SELECT tenant, max_outbound_destinations, max_subrequests, \
     kv_max_key_bytes, kv_max_value_bytes, kv_max_keys_per_store, kv_max_tenant_bytes, \
     kv_max_ops_per_request, kv_max_stores FROM tenant_limits ORDER BY tenant";

/// The `allow` column: the destinations as a JSON list of their written form.
pub(crate) fn allow_column(policy: &AppOutbound) -> StoreResult<String> {
    serde_json::to_string(&policy.allow)
        .map_err(|e| StoreError::Backend(format!("outbound policy: {e}")))
}

/// A stored row back into a policy.
pub(crate) fn policy(allow: &str, max_subrequests: Option<i64>) -> StoreResult<AppOutbound> {
    let allow: Vec<Destination> = serde_json::from_str(allow)
        .map_err(|e| StoreError::Backend(format!("stored outbound policy is invalid: {e}")))?;
    Ok(AppOutbound {
        allow,
        max_subrequests: max_subrequests.map(small),
    })
}

/// A stored cap row (the eight columns of [`LIMITS`]) back into caps.
pub(crate) fn limits(c: [Option<i64>; 8]) -> SetTenantLimits {
    SetTenantLimits {
        max_outbound_destinations: c[0].map(small),
        max_subrequests: c[1].map(small),
        kv_max_key_bytes: c[2].map(small),
        kv_max_value_bytes: c[3].map(small),
        kv_max_keys_per_store: c[4].map(wide),
        kv_max_tenant_bytes: c[5].map(wide),
        kv_max_ops_per_request: c[6].map(small),
        kv_max_stores: c[7].map(small),
    }
}

/// The eight cap columns of caps, in [`PUT_LIMITS`]'s order.
pub(crate) fn limit_params(l: &SetTenantLimits) -> [Option<i64>; 8] {
    let n = |v: Option<u32>| v.map(i64::from);
    let w = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    [
        n(l.max_outbound_destinations),
        n(l.max_subrequests),
        n(l.kv_max_key_bytes),
        n(l.kv_max_value_bytes),
        w(l.kv_max_keys_per_store),
        w(l.kv_max_tenant_bytes),
        n(l.kv_max_ops_per_request),
        n(l.kv_max_stores),
    ]
}

/// A stored 64-bit count (never written below 0).
fn wide(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored count: the store writes only `u32`s.
fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Refuses `policy` if it is over its tenant's caps.
pub(crate) fn within(policy: &AppOutbound, caps: &SetTenantLimits) -> StoreResult<()> {
    let destinations = u32::try_from(policy.allow.len()).unwrap_or(u32::MAX);
    if destinations > caps.destinations() {
        return Err(StoreError::OutboundLimit {
            cap: "max_outbound_destinations",
            max: caps.destinations(),
            asked: destinations,
        });
    }
    if let Some(asked) = policy.max_subrequests
        && asked > caps.subrequests()
    {
        return Err(StoreError::OutboundLimit {
            cap: "max_subrequests",
            max: caps.subrequests(),
            asked,
        });
    }
    Ok(())
}

/// Refuses new `caps` below what the tenant's apps (`policies`) already
/// use, naming them: clamping would change a running app's behaviour
/// behind its owner's back.
pub(crate) fn not_below(
    caps: &SetTenantLimits,
    policies: &[(String, AppOutbound)],
) -> StoreResult<()> {
    let over = |cap: &'static str, max: u32, used: &dyn Fn(&AppOutbound) -> bool| {
        let apps: Vec<String> = policies
            .iter()
            .filter(|(_, p)| used(p))
            .map(|(app, _)| app.clone())
            .collect();
        if apps.is_empty() {
            Ok(())
        } else {
            Err(StoreError::LimitInUse { cap, max, apps })
        }
    };
    let destinations = caps.destinations();
    over("max_outbound_destinations", destinations, &|p| {
        p.allow.len() > destinations as usize
    })?;
    let subrequests = caps.subrequests();
    over("max_subrequests", subrequests, &|p| {
        p.max_subrequests.is_some_and(|m| m > subrequests)
    })
}

/// What a snapshot carries for an app: its policy with `max_subrequests`
/// settled (an app that set none gets the default, bounded by the
/// tenant's cap), so that a node never needs the tenant's caps. An app
/// with no policy carries none (it may call nothing).
pub(crate) fn for_snapshot(policy: Option<AppOutbound>, caps: &SetTenantLimits) -> AppOutbound {
    match policy {
        None => AppOutbound::default(),
        Some(policy) => AppOutbound {
            max_subrequests: Some(caps.effective_subrequests(&policy)),
            allow: policy.allow,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(allow: &[&str], max: Option<u32>) -> AppOutbound {
        AppOutbound {
            allow: allow
                .iter()
                .map(|d| Destination::try_from(d.to_string()).unwrap())
                .collect(),
            max_subrequests: max,
        }
    }

    #[test]
    fn caps_bound_policies_and_refuse_to_go_below_them() {
        let caps = SetTenantLimits {
            max_outbound_destinations: Some(1),
            max_subrequests: Some(4),
            ..Default::default()
        };
        assert!(within(&policy_of(&["https://a.test"], Some(4)), &caps).is_ok());
        assert!(matches!(
            within(
                &policy_of(&["https://a.test", "https://b.test"], None),
                &caps
            ),
            Err(StoreError::OutboundLimit {
                cap: "max_outbound_destinations",
                max: 1,
                asked: 2
            })
        ));
        assert!(matches!(
            within(&policy_of(&[], Some(5)), &caps),
            Err(StoreError::OutboundLimit {
                cap: "max_subrequests",
                max: 4,
                asked: 5
            })
        ));
        let apps = vec![
            ("a".to_string(), policy_of(&["https://a.test"], Some(10))),
            ("b".to_string(), policy_of(&[], None)),
        ];
        match not_below(&caps, &apps) {
            Err(StoreError::LimitInUse { cap, max, apps }) => {
                assert_eq!(
                    (cap, max, apps),
                    ("max_subrequests", 4, vec!["a".to_string()])
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(not_below(&SetTenantLimits::default(), &apps).is_ok());
        // A policy without its own number gets the default under the cap.
        let settled = for_snapshot(Some(policy_of(&["https://a.test"], None)), &caps);
        assert_eq!(settled.max_subrequests, Some(4));
        assert_eq!(for_snapshot(None, &caps), AppOutbound::default());
    }
}
