//! Where a store is, as an operator names it on the command line:
//! metadata in `sqlite:DATA_DIR` or at `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
//! ([`MetaLocation`]), blobs in `dir:PATH` ([`BlobLocation`]; other kinds,
//! such as an S3-compatible bucket, are more variants of it).
//!
//! A PostgreSQL URL may carry a password: every `Display` and `Debug` here
//! shows it as `***`, and a URL that does not parse is refused without
//! echoing it, so it never reaches a log line or an error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::fs::FsBlobStore;
use super::postgres::PgMetaStore;
use super::sqlite::SqliteMetaStore;
use super::{BlobStore, MetaStore, StoreError, StoreResult};

/// The SQLite database's name in a data directory.
pub const SQLITE_FILE: &str = "meta.sqlite3";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{given:?} is not a metadata store: give sqlite:DATA_DIR or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )]
    UnknownMetaKind { given: String },
    #[error("{given:?} is not a blob store: give dir:PATH or s3://BUCKET/PREFIX")]
    UnknownBlobKind { given: String },
    #[error("{reason}")]
    BadS3 { reason: String },
    #[error("{kind}: the path is empty")]
    EmptyPath { kind: &'static str },
    /// The URL is shown redacted.
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    InvalidPgUrl { url: String, reason: String },
}

/// Where the metadata is.
#[derive(Clone, PartialEq, Eq)]
pub enum MetaLocation {
    /// SQLite, [`SQLITE_FILE`] in this data directory (the embedded
    /// default).
    Sqlite {
        data_dir: PathBuf,
    },
    Postgres(PgUrl),
}

impl MetaLocation {
    /// Opens the store (creating and migrating it as needed).
    pub async fn open(&self) -> StoreResult<Arc<dyn MetaStore>> {
        Ok(match self {
            Self::Sqlite { data_dir } => {
                Arc::new(SqliteMetaStore::open(&Self::sqlite_file(data_dir))?)
            }
            Self::Postgres(url) => Arc::new(url.connect().await?),
        })
    }

    /// Opens a store that must exist already: a SQLite file is not created.
    pub async fn open_existing(&self) -> StoreResult<Arc<dyn MetaStore>> {
        if let Self::Sqlite { data_dir } = self {
            let file = Self::sqlite_file(data_dir);
            if !file.is_file() {
                return Err(StoreError::NotFound(format!(
                    "metadata store {} (no file)",
                    file.display()
                )));
            }
        }
        self.open().await
    }

    pub fn sqlite_file(data_dir: &Path) -> PathBuf {
        data_dir.join(SQLITE_FILE)
    }
}

impl FromStr for MetaLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = s.strip_prefix("sqlite:") {
            if dir.is_empty() {
                return Err(LocationError::EmptyPath { kind: "sqlite" });
            }
            return Ok(Self::Sqlite {
                data_dir: dir.into(),
            });
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.parse()?));
        }
        Err(LocationError::UnknownMetaKind { given: redact(s) })
    }
}

impl fmt::Display for MetaLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { data_dir } => write!(f, "sqlite:{}", data_dir.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for MetaLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A PostgreSQL connection URL, parsed by `tokio-postgres`
/// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTION=VALUE...]`).
/// Shown with its password as `***`.
#[derive(Clone)]
pub struct PgUrl {
    raw: String,
    // Boxed: the parsed settings are large, and a location is passed by
    // value.
    config: Box<tokio_postgres::Config>,
}

impl PgUrl {
    /// The connection settings (for a pool, or a dedicated connection such
    /// as a `LISTEN`er).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Opens the store at this URL (see [`PgMetaStore::connect`]).
    pub async fn connect(&self) -> StoreResult<PgMetaStore> {
        PgMetaStore::connect(&self.config, &self.to_string()).await
    }
}

impl FromStr for PgUrl {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| LocationError::InvalidPgUrl {
            url: redact(s),
            reason,
        };
        let config: tokio_postgres::Config = s.parse().map_err(|e| invalid(format!("{e}")))?;
        if config.get_dbname().is_none() {
            return Err(invalid("name the database (…/DATABASE)".into()));
        }
        if config.get_user().is_none() {
            return Err(invalid("name the user (USER@HOST)".into()));
        }
        if config.get_hosts().is_empty() {
            return Err(invalid("name the host".into()));
        }
        // The driver runs without TLS for now (see store/postgres.rs):
        // asking for it must fail here, not at the first connection.
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(invalid(
                "sslmode=require: TLS to PostgreSQL is not supported yet; reach the database over a private network or a local TLS tunnel".into(),
            ));
        }
        Ok(Self {
            raw: s.to_string(),
            config: Box::new(config),
        })
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for PgUrl {}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

/// `url` with any password replaced by `***`: the one in `user:password@`
/// (up to the last `@` before the query, so a password with `/` or `@` in
/// it is hidden whole) and any `password=` option. Anything not of the
/// form `scheme://…` is hidden whole.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains("password") || url.contains(':') {
            "<hidden>".into()
        } else {
            url.to_string()
        };
    };
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (head, query) = rest.split_at(query_at);
    let head = match head.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = (&head[..at], &head[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{hosts}"),
                None => format!("{userinfo}@{hosts}"),
            }
        }
        None => head.to_string(),
    };
    let query = match query.strip_prefix('?') {
        Some(options) => {
            let options: Vec<String> = options
                .split('&')
                .map(|kv| {
                    // The key as the driver reads it: `pass%77ord=` is a password too.
                    let key = form_urlencoded::parse(kv.as_bytes())
                        .next()
                        .map(|(key, _)| key.to_ascii_lowercase());
                    if key.as_deref() == Some("password") {
                        "password=***".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            format!("?{}", options.join("&"))
        }
        None => String::new(),
    };
    format!("{scheme}://{head}{query}")
}

/// Where the blobs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory ([`FsBlobStore`]: `blobs/` and `tmp/` under it, as in a
    /// data directory).
    Dir(PathBuf),
    /// An S3-compatible bucket, reached with the standard `AWS_*`
    /// environment variables (as `edge-cp serve --blobs`).
    S3(super::s3::S3Location),
}

impl BlobLocation {
    /// Opens the store (creating the directory as needed).
    pub async fn open(&self) -> StoreResult<Arc<dyn BlobStore>> {
        match self {
            Self::Dir(path) => Ok(Arc::new(FsBlobStore::open(path)?)),
            Self::S3(location) => {
                let config = super::s3::S3Config::new(location.clone());
                let store = super::s3::S3BlobStore::open(&config)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(Arc::new(store))
            }
        }
    }
}

impl FromStr for BlobLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("s3://") {
            return s
                .parse()
                .map(Self::S3)
                .map_err(|e: super::s3::S3LocationError| LocationError::BadS3 {
                    reason: e.to_string(),
                });
        }
        match s.strip_prefix("dir:") {
            Some("") => Err(LocationError::EmptyPath { kind: "dir" }),
            Some(path) => Ok(Self::Dir(path.into())),
            None => Err(LocationError::UnknownBlobKind { given: redact(s) }),
        }
    }
}

impl fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "dir:{}", path.display()),
            Self::S3(location) => write!(f, "{location}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            (
                "postgres://cp:s3cret@db.internal:5432/edge",
                "postgres://cp:***@db.internal:5432/edge",
            ),
            (
                "postgresql://cp:p@ss/w:rd@db:5432/edge?application_name=x",
                "postgresql://cp:***@db:5432/edge?application_name=x",
            ),
            (
                "postgres://cp@db/edge?password=s3cret&connect_timeout=5",
                "postgres://cp@db/edge?password=***&connect_timeout=5",
            ),
            ("postgres://cp@db/edge", "postgres://cp@db/edge"),
            // The driver percent-decodes option names.
            (
                "postgres://cp@db/edge?pass%77ord=s3cret",
                "postgres://cp@db/edge?password=***",
            ),
        ] {
            assert_eq!(redact(url), shown);
            // The driver wants `/` and `@` in a password percent-encoded;
            // what it accepts shows redacted everywhere.
            if let Ok(location) = url.parse::<MetaLocation>() {
                assert_eq!(location.to_string(), shown);
                assert_eq!(format!("{location:?}"), shown);
            }
        }
        let location: MetaLocation = "postgres://cp:s3cret@db:5432/edge".parse().unwrap();
        assert!(!format!("{location} {location:?}").contains("s3cret"));
        assert_eq!(redact("user=cp password=s3cret"), "<hidden>");
    }

    #[test]
    fn bad_locations_are_refused_by_rule_without_the_password() {
        let err = "mysql://cp:s3cret@db/edge"
            .parse::<MetaLocation>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("sqlite:DATA_DIR or postgres://"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = "postgres://cp:s3cret@db:notaport/edge"
            .parse::<MetaLocation>()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid PostgreSQL URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = "postgres://cp:s3cret@db:5432"
            .parse::<MetaLocation>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("name the database"), "{err}");
        let err = "postgres://cp@db/edge?sslmode=require"
            .parse::<MetaLocation>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TLS to PostgreSQL is not supported yet"),
            "{err}"
        );
        assert!(matches!(
            "sqlite:".parse::<MetaLocation>(),
            Err(LocationError::EmptyPath { .. })
        ));
        assert_eq!(
            "sqlite:/var/lib/edge".parse::<MetaLocation>().unwrap(),
            MetaLocation::Sqlite {
                data_dir: "/var/lib/edge".into()
            }
        );
        assert_eq!(
            "dir:/srv/blobs".parse::<BlobLocation>().unwrap(),
            BlobLocation::Dir("/srv/blobs".into())
        );
        assert!(matches!(
            "s4://bucket".parse::<BlobLocation>(),
            Err(LocationError::UnknownBlobKind { .. })
        ));
        assert!(matches!(
            "dir:".parse::<BlobLocation>(),
            Err(LocationError::EmptyPath { .. })
        ));
    }
}
