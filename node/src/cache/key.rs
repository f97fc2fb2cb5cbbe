//! The key of a stored response: everything that names a resource for one
//! app (tenant, app, scheme, host, path and query). A leaf of the cache, so
//! that the store, its purge index and the disk tier can all name keys
//! without importing each other.

/// What names a stored resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(pub(super) String);

impl CacheKey {
    pub fn new(tenant: &str, app: &str, scheme: &str, host: &str, path_and_query: &str) -> Self {
        // NUL never occurs in these parts (validated names, a host header,
        // a request target), so the join is unambiguous. Built by hand: this
        // runs on every lookup.
        let parts = [tenant, app, scheme, host, path_and_query];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push('\0');
            }
            key.push_str(part);
        }
        Self(key)
    }

    /// The key's scheme (`http`, `https`, or `fetch+http(s)` for a
    /// component's fetches), host and request target.
    pub fn resource(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.0.splitn(5, '\0').skip(2);
        Some((parts.next()?, parts.next()?, parts.next()?))
    }

    /// The key as one string (what the disk tier writes in its files).
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// A key read back from a disk tier file: five NUL-separated parts.
    pub(super) fn from_stored(key: String) -> Option<Self> {
        (key.split('\0').count() == 5).then_some(Self(key))
    }

    /// `tenant\0app`: the app the key belongs to, as the purge index
    /// names it.
    pub fn app_id(&self) -> &str {
        let mut nuls = self.0.match_indices('\0').map(|(i, _)| i);
        nuls.nth(1).map_or(self.0.as_str(), |end| &self.0[..end])
    }

    /// [`Self::app_id`] of a key of `tenant`'s `app`.
    pub fn app_id_of(tenant: &str, app: &str) -> String {
        format!("{tenant}\0{app}")
    }

    /// The tenant and app the key belongs to.
    pub(super) fn owner(&self) -> (&str, &str) {
        let mut parts = self.0.splitn(3, '\0');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// Whether this key belongs to `tenant`'s `app`.
    pub fn is_app(&self, tenant: &str, app: &str) -> bool {
        let mut parts = self.0.splitn(3, '\0');
        parts.next() == Some(tenant) && parts.next() == Some(app)
    }
}

/// A purge by URL: the request target it selects keys by (the purge
/// indexes of both tiers file keys by target), and what a selected key
/// must match besides. `https://h/p` matches keys for scheme `https` or
/// `fetch+https` (what the app's component fetched), host `h` with or
/// without the port, and target `/p`; a bare `/p` matches it on every host
/// and scheme.
#[derive(Debug, Clone)]
pub struct UrlPurge {
    target: String,
    /// Scheme, host and authority (host and port), lowercase; none for a
    /// bare path.
    origin: Option<(String, String, String)>,
}

impl UrlPurge {
    /// `None` for a URL that names nothing (no scheme or authority).
    pub fn parse(url: &str) -> Option<Self> {
        if url.starts_with('/') {
            return Some(Self {
                target: url.to_string(),
                origin: None,
            });
        }
        let uri = url.parse::<http::Uri>().ok()?;
        let scheme = uri.scheme_str()?.to_string();
        let authority = uri.authority()?.as_str().to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        Some(Self {
            target: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            origin: Some((scheme, host, authority)),
        })
    }

    /// The target the purge index selects keys by.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether a key's (scheme, host, target) is what the URL names.
    pub fn matches(&self, key_scheme: &str, key_host: &str, key_target: &str) -> bool {
        if key_target != self.target {
            return false;
        }
        let Some((scheme, host, authority)) = &self.origin else {
            return true;
        };
        let scheme_ok =
            key_scheme == scheme || key_scheme.strip_prefix("fetch+") == Some(scheme.as_str());
        scheme_ok && (key_host == host || key_host == authority)
    }
}
