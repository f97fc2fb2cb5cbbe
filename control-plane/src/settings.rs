//! The API's tunable settings ([`ApiSettings`], every default documented on
//! its field) and the `edge-cp serve` flags that set them ([`ApiFlags`]);
//! the ACME CA tenants' certificates are issued by ([`AcmeConfig`], from
//! [`AcmeFlags`]). Plain data: nothing here imports a stage.

use std::path::PathBuf;
use std::time::Duration;

/// Uploads received at once, by all tenants together (the default of
/// [`ApiSettings::max_concurrent_uploads`]).
pub const MAX_CONCURRENT_UPLOADS: usize = 4;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest `.wasm` upload. Default 64 MiB.
    pub max_upload_bytes: u64,
    /// Longest a sync long poll may wait. Default 60 s.
    pub max_sync_wait: Duration,
    /// A node not heard from for this long is left out of rollout status.
    /// Default 90 s.
    pub node_stale_after: Duration,
    /// Cache purges a tenant may make in any rolling minute. Default 100.
    pub purges_per_minute: usize,
    /// Uploads received at once, all tenants together: each is held in
    /// memory (up to `max_upload_bytes`) until compiled and stored.
    /// Default 4 ([`MAX_CONCURRENT_UPLOADS`]).
    pub max_concurrent_uploads: usize,
    /// Uploads one tenant may have in progress at once, within
    /// `max_concurrent_uploads` (clamped to 1 ..= it): one tenant can never
    /// take every slot. Beyond it: 429 `upload-slots-busy` at once.
    /// Default 2.
    pub upload_slots_per_tenant: usize,
    /// An upload whose body sends no byte for this long is cut (408
    /// `upload-timeout`) and its slot freed. Default 10 s.
    pub upload_idle_timeout: Duration,
    /// After `upload_rate_grace`, an upload body must have averaged at
    /// least this many bytes a second since its slot was taken, or it is
    /// cut (408 `upload-timeout`). Default 16 KiB/s: a 64 MiB upload may
    /// then take up to ~68 minutes, which only a broken or hostile client
    /// needs. 0 turns the rule off (the idle timeout still applies).
    pub upload_min_bytes_per_sec: u64,
    /// How long an upload may run before `upload_min_bytes_per_sec` is
    /// enforced (TCP slow start, a slow first hop). Default 10 s.
    pub upload_rate_grace: Duration,
    /// Bytes a tenant may keep stored (the uploaded source size of each of
    /// its versions, summed) unless an operator set its own quota
    /// (`PUT /v1/tenants/{tenant}/quota`). Default 1 GiB.
    pub storage_quota_bytes: u64,
    /// A blob no version references is deleted only once it has not been
    /// written or reused for this long: an upload in progress has written
    /// its blobs but not yet recorded the version that references them.
    /// Default 1 h.
    pub blob_gc_grace: Duration,
    /// Unreferenced blobs are collected after every version or app
    /// deletion and also this often (leftovers of failed uploads, blobs
    /// that were still within the grace period). Default 1 h.
    pub blob_gc_interval: Duration,
    /// Certificates one app may have: a few per hostname group, with room
    /// for an overlap while one replaces another; each is fetched, held and
    /// parsed by every node. Beyond it: 409 `cert-limit`. Default 20.
    pub max_certificates_per_app: u64,
    /// Certificates all of one tenant's apps may have together. Beyond it:
    /// 409 `cert-limit`. Default 200.
    pub max_certificates_per_tenant: u64,
    /// ACME certificates one tenant may have waiting to be issued (pending
    /// or failed): every one costs orders at the CA, whose rate limits
    /// are per account, shared by all tenants. Beyond it: 409
    /// `cert-limit`. Default 20.
    pub max_pending_acme_certificates_per_tenant: u64,
    /// Key-value tombstones (deleted keys) and dropped stores are kept
    /// this long, so a node that was briefly away catches up from the
    /// change stream; one further behind takes a snapshot (`410
    /// kv-resync`). Default 1 h.
    pub kv_tombstone_retention: Duration,
    /// How often older tombstones are pruned. Default 1 min.
    pub kv_prune_every: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 64 << 20,
            max_sync_wait: Duration::from_secs(60),
            node_stale_after: Duration::from_secs(90),
            purges_per_minute: 100,
            max_concurrent_uploads: MAX_CONCURRENT_UPLOADS,
            upload_slots_per_tenant: 2,
            upload_idle_timeout: Duration::from_secs(10),
            upload_min_bytes_per_sec: 16 << 10,
            upload_rate_grace: Duration::from_secs(10),
            storage_quota_bytes: 1 << 30,
            blob_gc_grace: Duration::from_secs(3600),
            blob_gc_interval: Duration::from_secs(3600),
            max_certificates_per_app: 20,
            max_certificates_per_tenant: 200,
            max_pending_acme_certificates_per_tenant: 20,
            kv_tombstone_retention: Duration::from_secs(3600),
            kv_prune_every: Duration::from_secs(60),
        }
    }
}

/// The `edge-cp serve` flags for [`ApiSettings`]; the defaults are the
/// same.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiFlags {
    /// Largest component upload, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_upload_bytes: u64,
    /// Uploads received at once, all tenants together.
    #[arg(long, default_value_t = MAX_CONCURRENT_UPLOADS)]
    pub max_concurrent_uploads: usize,
    /// Uploads one tenant may have in progress at once.
    #[arg(long, default_value_t = 2)]
    pub upload_slots_per_tenant: usize,
    /// Cut an upload whose body sends nothing for this long.
    #[arg(long, default_value = "10s")]
    pub upload_idle_timeout: humantime::Duration,
    /// Cut an upload averaging fewer bytes a second than this once
    /// --upload-rate-grace has passed (0: off).
    #[arg(long, default_value_t = 16 << 10)]
    pub upload_min_bytes_per_sec: u64,
    /// How long an upload may run before the minimum rate applies.
    #[arg(long, default_value = "10s")]
    pub upload_rate_grace: humantime::Duration,
    /// Default per-tenant storage quota, in bytes (sources of stored
    /// versions); an admin may set a tenant's own.
    #[arg(long, default_value_t = 1 << 30)]
    pub storage_quota_bytes: u64,
    /// Keep an unreferenced blob at least this long after it was last
    /// written or reused.
    #[arg(long, default_value = "1h")]
    pub blob_gc_grace: humantime::Duration,
    /// Collect unreferenced blobs this often (and after every deletion).
    #[arg(long, default_value = "1h")]
    pub blob_gc_interval: humantime::Duration,
    /// Keep key-value tombstones and dropped stores this long (a node
    /// further behind resyncs from a snapshot). At least 1 min.
    #[arg(long, default_value = "1h", value_parser = parse_retention)]
    pub kv_tombstone_retention: humantime::Duration,
}

/// Shortest `--kv-tombstone-retention`: shorter, a node merely
/// restarting or a long poll in flight would miss deletes and resync
/// (a full snapshot) over and over.
pub const MIN_KV_TOMBSTONE_RETENTION: Duration = Duration::from_secs(60);

fn parse_retention(s: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = s.parse().map_err(|e| format!("{e}"))?;
    if *d < MIN_KV_TOMBSTONE_RETENTION {
        return Err(format!(
            "--kv-tombstone-retention must be at least 1m (got {s})"
        ));
    }
    Ok(d)
}

impl From<ApiFlags> for ApiSettings {
    fn from(flags: ApiFlags) -> Self {
        Self {
            max_upload_bytes: flags.max_upload_bytes,
            max_concurrent_uploads: flags.max_concurrent_uploads,
            upload_slots_per_tenant: flags.upload_slots_per_tenant,
            upload_idle_timeout: flags.upload_idle_timeout.into(),
            upload_min_bytes_per_sec: flags.upload_min_bytes_per_sec,
            upload_rate_grace: flags.upload_rate_grace.into(),
            storage_quota_bytes: flags.storage_quota_bytes,
            blob_gc_grace: flags.blob_gc_grace.into(),
            blob_gc_interval: flags.blob_gc_interval.into(),
            kv_tombstone_retention: flags.kv_tombstone_retention.into(),
            ..Self::default()
        }
    }
}

/// The ACME (RFC 8555) CA that issues tenants' certificates
/// (`POST /v1/apps/{app}/certificates/acme`). None configured: those
/// requests are refused with 400 `acme-not-configured`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL, such as
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// A PEM file of the root(s) to trust for the directory's HTTPS
    /// instead of the system's (a private CA, or pebble in tests).
    /// Default: none.
    pub ca_root: Option<PathBuf>,
    /// The account's contact address, which the CA may write to about
    /// expiring certificates. Default: none.
    pub email: Option<String>,
}

/// A bad ACME flag, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {reason}")]
pub struct AcmeConfigError {
    pub flag: &'static str,
    pub reason: String,
}

/// Longest directory URL and contact address taken: far beyond any real
/// one, and short enough for a log line.
const MAX_ACME_FIELD_BYTES: usize = 2048;

impl AcmeConfig {
    /// Checks the directory URL (http or https with a host; plain http is
    /// for a CA on loopback in tests) and the address.
    pub fn new(
        directory: String,
        ca_root: Option<PathBuf>,
        email: Option<String>,
    ) -> Result<Self, AcmeConfigError> {
        let bad = |flag, reason: &str| AcmeConfigError {
            flag,
            reason: reason.to_string(),
        };
        let rest = directory
            .strip_prefix("https://")
            .or_else(|| directory.strip_prefix("http://"))
            .ok_or_else(|| bad("acme-directory", "give an https:// URL"))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty()
            || directory.len() > MAX_ACME_FIELD_BYTES
            || directory
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(
                "acme-directory",
                "give an https://HOST[:PORT]/PATH URL without spaces, at most 2048 bytes",
            ));
        }
        if let Some(email) = &email {
            let well_formed = email.len() <= MAX_ACME_FIELD_BYTES
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !well_formed {
                return Err(bad(
                    "acme-email",
                    "give one address such as ops@example.com",
                ));
            }
        }
        Ok(Self {
            directory,
            ca_root,
            email,
        })
    }
}

/// The `edge-cp serve` flags for [`AcmeConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct AcmeFlags {
    /// The ACME CA's directory URL; without it, certificates can only be
    /// uploaded.
    #[arg(long, env = "EDGE_CP_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// PEM roots to trust for the ACME directory's HTTPS (default: the
    /// system's).
    #[arg(long, requires = "acme_directory", value_name = "PEM")]
    pub acme_ca_root: Option<PathBuf>,
    /// The ACME account's contact address.
    #[arg(long, requires = "acme_directory", value_name = "EMAIL")]
    pub acme_email: Option<String>,
}

impl AcmeFlags {
    pub fn config(self) -> Result<Option<AcmeConfig>, AcmeConfigError> {
        self.acme_directory
            .map(|directory| AcmeConfig::new(directory, self.acme_ca_root, self.acme_email))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ApiFlags,
    }

    #[derive(Parser)]
    struct AcmeCli {
        #[command(flatten)]
        flags: AcmeFlags,
    }

    fn acme(args: &[&str]) -> Result<Option<AcmeConfig>, String> {
        let cli = AcmeCli::try_parse_from(std::iter::once("edge-cp").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.flags.config().map_err(|e| e.to_string())
    }

    #[test]
    fn the_tombstone_retention_is_at_least_a_minute() {
        let parse = |v: &str| {
            Cli::try_parse_from(["edge-cp", "--kv-tombstone-retention", v])
                .map(|c| ApiSettings::from(c.flags).kv_tombstone_retention)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["59s", "0s"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("--kv-tombstone-retention"), "{error}");
            assert!(error.contains("at least 1m"), "{error}");
        }
        assert!(parse("soon").is_err());
    }

    #[test]
    fn acme_flags_are_checked_and_named() {
        assert_eq!(acme(&[]), Ok(None));
        let config = acme(&[
            "--acme-directory",
            "https://127.0.0.1:14000/dir",
            "--acme-email",
            "ops@example.com",
            "--acme-ca-root",
            "/etc/pebble.pem",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.directory, "https://127.0.0.1:14000/dir");
        assert_eq!(config.email.as_deref(), Some("ops@example.com"));
        assert_eq!(config.ca_root, Some(PathBuf::from("/etc/pebble.pem")));
        for (args, named) in [
            (
                &["--acme-directory", "ftp://ca.test/dir"][..],
                "--acme-directory",
            ),
            (
                &["--acme-directory", "https:///dir"][..],
                "--acme-directory",
            ),
            (
                &["--acme-directory", "https://ca.test/a b"][..],
                "--acme-directory",
            ),
            (
                &[
                    "--acme-directory",
                    "https://ca.test/dir",
                    "--acme-email",
                    "nobody",
                ][..],
                "--acme-email",
            ),
            // The CA's root and the address mean nothing without a CA.
            (&["--acme-email", "ops@example.com"][..], "--acme-directory"),
        ] {
            let error = acme(args).unwrap_err();
            assert!(error.contains(named), "{args:?}: {error}");
        }
    }

    #[test]
    fn the_flags_default_to_the_settings_defaults() {
        let from_flags = ApiSettings::from(Cli::parse_from(["edge-cp"]).flags);
        let defaults = ApiSettings::default();
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
    }
}
