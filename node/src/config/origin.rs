//! An origin route's URL (`[[apps]] origin`, or a synced origin app),
//! checked the way the control plane checks it. Used by `origin`.

use std::net::IpAddr;

use edge_common::origin::parse_origin;
use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use serde::Deserialize;

/// Where an origin app forwards to: `http(s)://host[:port][/base]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OriginUrl {
    scheme: Scheme,
    authority: Authority,
    /// Prefixed to every request's path; empty or `/base` (no trailing `/`).
    base: String,
    raw: String,
}

impl TryFrom<String> for OriginUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        // The control plane's check, so both sides accept the same origins.
        let normalized = parse_origin(&raw).map_err(|e| format!("invalid origin `{raw}`: {e}"))?;
        let uri: Uri = normalized
            .parse()
            .map_err(|_| format!("invalid origin `{raw}`: not a URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!("invalid origin `{raw}`: not an absolute URL"));
        };
        Ok(OriginUrl {
            scheme: scheme.clone(),
            authority: authority.clone(),
            base: uri.path().trim_end_matches('/').to_string(),
            raw,
        })
    }
}

impl std::fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl OriginUrl {
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The origin's URL for a request to `path_and_query` at the edge.
    pub(crate) fn target(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = path_and_query.map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.base))
            .build()
    }

    /// The host as an address, when the URL names one directly.
    pub(crate) fn address(&self) -> Option<IpAddr> {
        let host = self.authority.host();
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}
