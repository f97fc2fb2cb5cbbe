//! Purges: by URL, by surrogate key, or a whole app; soft (mark stale: the
//! entry is revalidated before it is used again, and may still be served
//! within stale-while-revalidate / stale-if-error) or hard (removed).
//! They arrive from the control plane on the sync stream, or from the
//! operator on the node's admin listener ([`AdminPurge`]).

use edge_common::sync::PurgeTarget;
use serde::Deserialize;

use super::layer::EdgeCache;

impl EdgeCache {
    /// Applies one purge to `tenant`'s `app`; returns how many stored
    /// responses it removed or marked.
    pub fn purge(&self, tenant: &str, app: &str, target: &PurgeTarget, soft: bool) -> usize {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let (kind, purged) = match target {
            PurgeTarget::All => ("all", self.store.purge_app(tenant, app, None, soft)),
            PurgeTarget::Key { key } => ("key", self.store.purge_app(tenant, app, Some(key), soft)),
            PurgeTarget::Url { url } => ("url", self.purge_url(tenant, app, url, soft)),
        };
        if let Some(counter) = &self.purges {
            counter.with_label_values(&[tenant, app, kind]).inc();
        }
        purged
    }

    /// Drops every entry of an app this node no longer serves (not counted
    /// as a purge: the app's metric series are gone with it).
    pub fn forget_app(&self, tenant: &str, app: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.store.purge_app(tenant, app, None, false);
    }

    /// A URL names what the app answers for it and what its component
    /// fetched from it: `https://h/p` matches keys for scheme `https` or
    /// `fetch+https`, host `h` (with or without the port) and target `/p`;
    /// a bare `/p` matches it on every host and scheme.
    fn purge_url(&self, tenant: &str, app: &str, url: &str, soft: bool) -> usize {
        if url.starts_with('/') {
            return self
                .store
                .purge_resources(tenant, app, |_, _, target| target == url, soft);
        }
        let Ok(uri) = url.parse::<http::Uri>() else {
            return 0;
        };
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return 0;
        };
        let authority = authority.as_str().to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        self.store.purge_resources(
            tenant,
            app,
            |key_scheme, key_host, key_target| {
                let scheme_ok =
                    key_scheme == scheme || key_scheme.strip_prefix("fetch+") == Some(scheme);
                scheme_ok && (key_host == host || key_host == authority) && key_target == target
            },
            soft,
        )
    }
}

/// `POST /cache/purge` on the admin listener:
/// `{"tenant", "app", "url" | "key" | "all": true, "soft"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPurge {
    pub tenant: String,
    pub app: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub soft: bool,
}

impl AdminPurge {
    /// The purge target, if exactly one of `url`, `key` and `all` is given
    /// and it is valid.
    pub fn target(&self) -> Result<PurgeTarget, String> {
        let target = match (&self.url, &self.key, self.all) {
            (Some(url), None, false) => PurgeTarget::Url { url: url.clone() },
            (None, Some(key), false) => PurgeTarget::Key { key: key.clone() },
            (None, None, true) => PurgeTarget::All,
            _ => return Err("give exactly one of `url`, `key` or `all: true`".into()),
        };
        target.validate()?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::policy::Received;
    use crate::cache::store::{CacheKey, Entry};

    fn store(cache: &EdgeCache, key: &CacheKey, tag: &str) {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", "max-age=60".parse().unwrap());
        headers.insert("surrogate-key", tag.parse().unwrap());
        let now = SystemTime::now();
        let received = Received {
            request_time: now,
            response_time: now,
        };
        let entry = Entry::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(b"x"),
            received,
            &HeaderMap::new(),
        );
        assert!(cache.store.insert(key.clone(), entry));
    }

    fn present(cache: &EdgeCache, key: &CacheKey) -> bool {
        cache.store.get(key, &HeaderMap::new()).is_some()
    }

    #[test]
    fn purges_reach_urls_keys_and_apps_of_one_tenant_only() {
        let cache = EdgeCache::new(&Default::default(), None);
        let page = CacheKey::new("t", "shop", "https", "shop.test", "/a?b=1");
        let fetched = CacheKey::new("t", "shop", "fetch+https", "origin.test:8443", "/a?b=1");
        let other = CacheKey::new("t", "shop", "https", "shop.test", "/other");
        let foreign = CacheKey::new("u", "shop", "https", "shop.test", "/a?b=1");
        for (key, tag) in [
            (&page, "p1"),
            (&fetched, "p1"),
            (&other, "p2"),
            (&foreign, "p1"),
        ] {
            store(&cache, key, tag);
        }
        let url = |u: &str| PurgeTarget::Url { url: u.into() };
        assert_eq!(
            cache.purge("t", "shop", &url("https://shop.test/a?b=1"), false),
            1
        );
        assert!(!present(&cache, &page) && present(&cache, &fetched));
        assert_eq!(
            cache.purge("t", "shop", &url("https://origin.test:8443/a?b=1"), false),
            1
        );
        assert!(!present(&cache, &fetched));
        store(&cache, &page, "p1");
        assert_eq!(cache.purge("t", "shop", &url("/a?b=1"), true), 1);
        let soft = cache.store.get(&page, &HeaderMap::new()).unwrap();
        assert!(soft.invalidated.load(std::sync::atomic::Ordering::Relaxed));
        let key = PurgeTarget::Key { key: "p2".into() };
        assert_eq!(cache.purge("t", "shop", &key, false), 1);
        assert!(!present(&cache, &other));
        assert_eq!(cache.purge("t", "shop", &PurgeTarget::All, false), 1);
        assert!(present(&cache, &foreign), "another tenant's entry survives");
    }

    #[test]
    fn admin_purges_name_exactly_one_valid_target() {
        let parse = |json: &str| serde_json::from_str::<AdminPurge>(json).map(|p| p.target());
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","url":"/x"}"#),
            Ok(Ok(PurgeTarget::Url { .. }))
        ));
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","all":true,"soft":true}"#),
            Ok(Ok(PurgeTarget::All))
        ));
        assert!(matches!(parse(r#"{"tenant":"t","app":"a"}"#), Ok(Err(_))));
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","url":"/x","key":"k"}"#),
            Ok(Err(_))
        ));
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","key":"two words"}"#),
            Ok(Err(_))
        ));
        assert!(parse(r#"{"tenant":"t","app":"a","all":true,"extra":1}"#).is_err());
    }
}
