//! `edgectl outbound` (what an app's component may call) and
//! `edgectl tenants limits` (a tenant's caps on it).

use clap::{Args, Subcommand};
use edge_common::api::{OutboundPolicy, SetOutbound, SetTenantLimits, TenantLimits};
use reqwest::Method;

use crate::client::{Api, Failure};

#[derive(Subcommand)]
pub enum OutboundCommand {
    /// Replace the destinations the app's component may call.
    Set {
        name: String,
        /// A destination, scheme://host[:port] (`*.` for every subdomain;
        /// repeatable). The node's operator still decides which addresses
        /// are reachable.
        #[arg(long = "allow", required = true, value_name = "URL")]
        allow: Vec<String>,
        /// Subrequests per incoming request (default: 32, or the tenant's
        /// cap if lower).
        #[arg(long, value_name = "N")]
        max_subrequests: Option<u32>,
    },
    /// Show the app's destinations and subrequest budget.
    Get { name: String },
    /// Remove every destination: the component may call nothing.
    Clear { name: String },
}

pub async fn outbound(api: &Api, command: OutboundCommand) -> Result<(), Failure> {
    let (name, body) = match command {
        OutboundCommand::Get { name } => {
            let policy: OutboundPolicy = api.get(&["apps", &name, "outbound"]).await?;
            print_policy(&policy);
            return Ok(());
        }
        OutboundCommand::Set {
            name,
            allow,
            max_subrequests,
        } => (
            name,
            SetOutbound {
                allow,
                max_subrequests,
            },
        ),
        OutboundCommand::Clear { name } => (name, SetOutbound::default()),
    };
    let policy: OutboundPolicy = api
        .json(Method::PUT, &["apps", &name, "outbound"], &body)
        .await?;
    print_policy(&policy);
    println!("set at revision {}", policy.revision);
    Ok(())
}

fn print_policy(policy: &OutboundPolicy) {
    if policy.allow.is_empty() {
        println!("{}: no outbound destinations", policy.app);
    } else {
        println!("{}: may call", policy.app);
        for destination in &policy.allow {
            println!("  {destination}");
        }
    }
    println!(
        "max_subrequests: {} ({})",
        policy.effective_max_subrequests,
        match policy.max_subrequests {
            Some(own) if own == policy.effective_max_subrequests => "own".to_string(),
            Some(own) => format!("own {own}, capped by the tenant"),
            None => "default".to_string(),
        }
    );
}

/// `edgectl tenants limits TENANT [--max-outbound-destinations N]
/// [--max-subrequests M] [--default]`: a flag not given keeps its value.
pub async fn tenant_limits(
    api: &Api,
    id: &str,
    destinations: Option<u32>,
    subrequests: Option<u32>,
    kv: KvLimitFlags,
    default: bool,
) -> Result<(), Failure> {
    let path: [&str; 3] = ["tenants", id, "limits"];
    let limits: TenantLimits = if default {
        api.json(Method::PUT, &path, &SetTenantLimits::default())
            .await?
    } else if destinations.is_some() || subrequests.is_some() || kv.any() {
        let current: TenantLimits = api.get(&path).await?;
        let c = current.custom;
        let body = SetTenantLimits {
            max_outbound_destinations: destinations.or(c.max_outbound_destinations),
            max_subrequests: subrequests.or(c.max_subrequests),
            kv_max_key_bytes: kv.kv_max_key_bytes.or(c.kv_max_key_bytes),
            kv_max_value_bytes: kv.kv_max_value_bytes.or(c.kv_max_value_bytes),
            kv_max_keys_per_store: kv.kv_max_keys_per_store.or(c.kv_max_keys_per_store),
            kv_max_tenant_bytes: kv.kv_max_tenant_bytes.or(c.kv_max_tenant_bytes),
            kv_max_ops_per_request: kv.kv_max_ops_per_request.or(c.kv_max_ops_per_request),
            kv_max_stores: kv.kv_max_stores.or(c.kv_max_stores),
        };
        api.json(Method::PUT, &path, &body).await?
    } else {
        api.get(&path).await?
    };
    let own = |v: Option<u32>| if v.is_some() { "own" } else { "default" };
    println!(
        "{}: max_outbound_destinations {} ({}), max_subrequests {} ({})",
        limits.tenant,
        limits.max_outbound_destinations,
        own(limits.custom.max_outbound_destinations),
        limits.max_subrequests,
        own(limits.custom.max_subrequests)
    );
    let k = limits.kv;
    println!(
        "  kv: max_key_bytes {}, max_value_bytes {}, max_keys_per_store {}, max_tenant_bytes {}, max_ops_per_request {}, max_stores {}",
        k.max_key_bytes,
        k.max_value_bytes,
        k.max_keys_per_store,
        k.max_tenant_bytes,
        k.max_ops_per_request,
        k.max_stores
    );
    Ok(())
}

/// A tenant's key-value limits (`edgectl tenants limits`); a flag not
/// given keeps its value.
#[derive(Args, Clone, Copy, Default)]
pub struct KvLimitFlags {
    /// Bytes of a key (default 512).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_key_bytes: Option<u32>,
    /// Bytes of a value (default 1 MiB).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_value_bytes: Option<u32>,
    /// Live keys in one store (default 100,000).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_keys_per_store: Option<u64>,
    /// Bytes (keys plus values) of all the tenant's stores (default 256 MiB).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_tenant_bytes: Option<u64>,
    /// Key-value operations one request may make (default 1,000).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_ops_per_request: Option<u32>,
    /// Stores of the tenant (default 20).
    #[arg(long, value_name = "N", conflicts_with = "default")]
    pub kv_max_stores: Option<u32>,
}

impl KvLimitFlags {
    pub fn any(&self) -> bool {
        self.kv_max_key_bytes.is_some()
            || self.kv_max_value_bytes.is_some()
            || self.kv_max_keys_per_store.is_some()
            || self.kv_max_tenant_bytes.is_some()
            || self.kv_max_ops_per_request.is_some()
            || self.kv_max_stores.is_some()
    }
}
