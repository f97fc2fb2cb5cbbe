//! Purges: by URL, by surrogate key, or a whole app; soft (mark stale: the
//! entry is revalidated before it is used again, and may still be served
//! within stale-while-revalidate / stale-if-error) or hard (removed).
//! They arrive from the control plane on the sync stream, or from the
//! operator on the node's admin listener ([`AdminPurge`]).

use edge_common::sync::{PurgeRequest, PurgeTarget};

use super::index::Selection;
use super::key::UrlPurge;
use super::layer::EdgeCache;

impl EdgeCache {
    /// Applies one purge to `tenant`'s `app`; returns how many stored
    /// responses it removed or marked.
    pub fn purge(&self, tenant: &str, app: &str, target: &PurgeTarget, soft: bool) -> usize {
        let any = |_: &str, _: &str, _: &str| true;
        let (kind, purged) = match target {
            PurgeTarget::All => (
                "all",
                self.store.purge(tenant, app, Selection::All, any, soft),
            ),
            PurgeTarget::Key { key } => (
                "key",
                self.store
                    .purge(tenant, app, Selection::Tag(key), any, soft),
            ),
            PurgeTarget::Url { url } => ("url", self.purge_url(tenant, app, url, soft)),
        };
        // Both tiers; a response in both counts once.
        let purged = purged.max(self.tiers().disk_purge(tenant, app, target, soft));
        if let Some(counter) = &self.purges {
            counter.with_label_values(&[tenant, app, kind]).inc();
        }
        purged
    }

    /// Drops every entry of an app this node no longer serves (not counted
    /// as a purge: the app's metric series are gone with it).
    pub fn forget_app(&self, tenant: &str, app: &str) {
        self.store.forget_app(tenant, app);
        self.tiers().disk_forget_app(tenant, app);
    }

    /// A URL names what the app answers for it and what its component
    /// fetched from it: `https://h/p` matches keys for scheme `https` or
    /// `fetch+https`, host `h` (with or without the port) and target `/p`;
    /// a bare `/p` matches it on every host and scheme.
    fn purge_url(&self, tenant: &str, app: &str, url: &str, soft: bool) -> usize {
        let Some(url) = UrlPurge::parse(url) else {
            return 0;
        };
        self.store.purge(
            tenant,
            app,
            Selection::Target(url.target()),
            |scheme, host, target| url.matches(scheme, host, target),
            soft,
        )
    }
}

/// `POST /cache/purge` on the admin listener: `{"tenant", "app", ...}`
/// with the rest a [`PurgeRequest`], the body tenants send the control
/// plane.
#[derive(Debug)]
pub struct AdminPurge {
    pub tenant: String,
    pub app: String,
    pub request: PurgeRequest,
}

impl AdminPurge {
    /// Parses the body; the error says what is wrong with it.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid purge request: {e}"))?;
        let mut take = |field: &str| match value.as_object_mut().and_then(|o| o.remove(field)) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(format!(
                "invalid purge request: `{field}` (a string) is required"
            )),
        };
        let (tenant, app) = (take("tenant")?, take("app")?);
        let request = PurgeRequest::from_json(value).map_err(|e| e.to_string())?;
        Ok(Self {
            tenant,
            app,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderMap;

    use super::*;
    use crate::cache::store::CacheKey;

    fn store(cache: &EdgeCache, key: &CacheKey, tag: &str) {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", "max-age=60".parse().unwrap());
        headers.insert("surrogate-key", tag.parse().unwrap());
        let entry = crate::cache::test_support::entry_now(headers, Bytes::from_static(b"x"));
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
        let parse = |json: &str| AdminPurge::from_json(json.as_bytes()).map(|p| p.request);
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","url":"/x"}"#),
            Ok(PurgeRequest {
                target: PurgeTarget::Url { .. },
                soft: false
            })
        ));
        assert!(matches!(
            parse(r#"{"tenant":"t","app":"a","all":true,"soft":true}"#),
            Ok(PurgeRequest {
                target: PurgeTarget::All,
                soft: true
            })
        ));
        assert!(parse(r#"{"tenant":"t","app":"a"}"#).is_err());
        assert!(parse(r#"{"tenant":"t","app":"a","url":"/x","key":"k"}"#).is_err());
        assert!(parse(r#"{"tenant":"t","app":"a","key":"two words"}"#).is_err());
        assert!(parse(r#"{"tenant":"t","app":"a","all":true,"extra":1}"#).is_err());
        assert!(parse(r#"{"app":"a","all":true}"#).is_err());
        assert!(parse(r#"{"tenant":1,"app":"a","all":true}"#).is_err());
    }
}
