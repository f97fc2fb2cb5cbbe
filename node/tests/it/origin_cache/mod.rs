//! The shared cache (RFC 9111) against a real, scripted origin, through
//! both ways a request reaches an origin:
//!
//! - `origin_route`: an origin route (`origin = ...`): the cache in front
//!   of the app answers, and labels its answers `x-cache`;
//! - `fetch`: the `origin-proxy` component forwarding to the same origin:
//!   its GETs go through the fetch cache, whose label it returns as
//!   `x-fetch-cache`; its own answers are `no-store`, so the node's inbound
//!   cache stays out (checked on every answer). Request headers a rule
//!   scripts are sent as `x-fetch-NAME`, so that the component's fetch
//!   carries exactly them (the inbound cache would consume conditionals and
//!   `only-if-cached` first).
//!
//! Each rule is written once, as `async fn rule(mode)`, and `rule_tests!`
//! makes a test per path: `rule::origin_route` and `rule::fetch` with an
//! HTTP/1.1 client, and `rule::origin_route_h2` with HTTP/2 (HTTP/1.1 is
//! where hyper stops polling a body at its declared length, which once
//! kept origin routes from storing anything).
//!
//! Bodies from [`ScriptedOrigin`] end in `#N` (the count of requests for
//! that path), so a body tells which origin execution produced it. Stale
//! responses are made with an `Age` the origin sends (`Age: 100` with
//! `max-age=60`), never by waiting.

use std::time::Duration;

use edge_fixtures::ORIGIN_PROXY;
use edge_node::config::AppLimits;
use http::Method;

use crate::common::{TestNode, app, metric_value, origin_app};
use crate::origin_server::ScriptedOrigin;

/// Which way the request reaches the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// An origin route; the inbound cache's `x-cache`.
    Route,
    /// The origin-proxy component; the fetch cache's `x-fetch-cache`.
    Fetch,
}

/// Which way, and the client's protocol: HTTP/1.1 unless `http2` (hyper
/// polls a response body differently for each, which matters to a cache
/// storing the body as it streams to the client).
#[derive(Debug, Clone, Copy)]
struct Mode {
    via: Via,
    http2: bool,
}

impl Mode {
    const ROUTE: Mode = Mode {
        via: Via::Route,
        http2: false,
    };
}

/// One test's world: a scripted origin, and a node serving it to apps
/// (`{name}.test`) the way `mode` says.
struct Fx {
    mode: Mode,
    origin: ScriptedOrigin,
    node: TestNode,
    client: reqwest::Client,
}

/// Request headers for the cache under test.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// An app of [`Fx::with`]: name, tenant, and the origin port if not the
/// scripted origin's.
type AppSpec<'a> = (&'a str, &'a str, Option<u16>);

impl Fx {
    /// One app, `web` (tenant `acme`).
    async fn start(mode: Mode) -> Fx {
        Fx::with(mode, &[("web", "acme", None)], None).await
    }

    async fn with(mode: Mode, apps: &[AppSpec<'_>], wall_time: Option<Duration>) -> Fx {
        let origin = ScriptedOrigin::start().await;
        let builder = Fx::builder(mode, &origin, apps, wall_time);
        Fx::started(mode, origin, builder).await
    }

    /// The node of [`Fx::with`] for `origin`, not started yet (a test can
    /// change it, or start it again on the same origin).
    fn builder(
        mode: Mode,
        origin: &ScriptedOrigin,
        apps: &[AppSpec<'_>],
        wall_time: Option<Duration>,
    ) -> crate::common::TestNodeBuilder {
        let mut builder = TestNode::builder();
        for (name, tenant, port) in apps {
            let port = port.unwrap_or(origin.port());
            let mut test_app = match mode.via {
                Via::Route if port == origin.port() => origin_app(name, &origin.url()),
                Via::Route => origin_app(name, &format!("http://127.0.0.1:{port}")),
                Via::Fetch => {
                    let url = format!("http://origin.test:{port}");
                    app(name, ORIGIN_PROXY)
                        .env("ORIGIN", &url)
                        .outbound(&[&url], None)
                }
            }
            .tenant(tenant);
            if let Some(wall_time) = wall_time {
                test_app = test_app.limits(AppLimits {
                    wall_time,
                    ..AppLimits::default()
                });
            }
            builder = builder.app(test_app);
        }
        if mode.via == Via::Fetch {
            // The origin listens on loopback: reachable for a component only
            // through an operator's name for it.
            builder = builder.outbound(|o| {
                o.hosts
                    .insert("origin.test".into(), "127.0.0.1".parse().unwrap());
                o.allow_private_addresses = vec!["127.0.0.1".parse().unwrap()];
            });
        }
        builder.purge_token(PURGE_TOKEN)
    }

    /// Starts `builder`'s node in front of `origin`.
    async fn started(
        mode: Mode,
        origin: ScriptedOrigin,
        builder: crate::common::TestNodeBuilder,
    ) -> Fx {
        let node = builder.start().await;
        let client = node.client_without_redirects(mode.http2);
        Fx {
            mode,
            origin,
            node,
            client,
        }
    }

    /// `GET path` on `web`, with headers for the cache under test.
    async fn get(&self, path: &str, headers: Headers<'_>) -> Answer {
        self.send("web", Method::GET, path, headers, None).await
    }

    async fn send(
        &self,
        app: &str,
        method: Method,
        path: &str,
        headers: Headers<'_>,
        body: Option<&str>,
    ) -> Answer {
        let what = format!("{:?}: {method} {app}{path} {headers:?}", self.mode);
        let url = self.node.url(&format!("{app}.test"), path);
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            match self.mode.via {
                Via::Route => request = request.header(*name, *value),
                Via::Fetch => {
                    request = request.header(format!("x-fetch-{name}"), *value);
                    // The node's own debug switch: every cache layer reads it.
                    if name.starts_with("x-edge-") {
                        request = request.header(*name, *value);
                    }
                }
            }
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if self.mode.via == Via::Fetch
            && let Some(inbound) = headers.get("x-cache")
        {
            assert_eq!(
                inbound, "BYPASS",
                "{what}: the inbound cache must stay out of the fetch path"
            );
        }
        Answer {
            mode: self.mode,
            what,
            status,
            headers,
            body,
        }
    }

    /// An absolute URL for `path` on the cache's own origin (same-origin
    /// for invalidation): the edge's for an origin route, the origin's for
    /// the fetch cache.
    fn absolute(&self, path: &str) -> String {
        match self.mode.via {
            Via::Route => self.node.url("web.test", path),
            Via::Fetch => format!("http://origin.test:{}{path}", self.origin.port()),
        }
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.node.metrics_text().await, name, labels).unwrap_or(0.0)
    }
}

/// What the client got.
struct Answer {
    mode: Mode,
    what: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    /// How the cache under test answered (`""` if it did not say).
    fn cache(&self) -> &str {
        let name = match self.mode.via {
            Via::Route => "x-cache",
            Via::Fetch => "x-fetch-cache",
        };
        self.header(name).unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>"))
    }

    /// A cache header as the cache under test passed it on (the component
    /// returns the fetch's `Cache-Control`, ... as `x-fetch-...`).
    fn origin_header(&self, name: &str) -> Option<&str> {
        match self.mode.via {
            Via::Route => self.header(name),
            Via::Fetch => self.header(&format!("x-fetch-{name}")),
        }
    }

    fn age(&self) -> u64 {
        self.header("age")
            .unwrap_or_else(|| panic!("{}: no Age", self.what))
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad Age", self.what))
    }

    #[track_caller]
    fn expect(&self, status: u16, cache: &str, body: &str) -> &Self {
        assert_eq!(
            (self.status, self.cache(), self.body.as_str()),
            (status, cache, body),
            "{} (status, cache, body); headers: {:?}",
            self.what,
            self.headers
        );
        self
    }
}

/// One test per path for `rule`: `origin_route` and `fetch` with an
/// HTTP/1.1 client, `origin_route_h2` with HTTP/2; `fetch: [attrs]` adds
/// attributes (an `ignore`) to the fetch-path test only.
macro_rules! rule_tests {
    ($rule:ident) => {
        rule_tests!($rule, fetch: []);
    };
    ($rule:ident, fetch: [$($attr:meta),*]) => {
        mod $rule {
            use super::{Mode, Via};

            #[tokio::test]
            async fn origin_route() {
                super::$rule(Mode { via: Via::Route, http2: false }).await
            }
            #[tokio::test]
            async fn origin_route_h2() {
                super::$rule(Mode { via: Via::Route, http2: true }).await
            }
            #[tokio::test]
            $(#[$attr])*
            async fn fetch() {
                super::$rule(Mode { via: Via::Fetch, http2: false }).await
            }
        }
    };
}

const PURGE_TOKEN: &str = "purge-token-for-tests";

mod compression;
mod disk;
mod ranges;
mod rules;
mod status;
mod targeted;
