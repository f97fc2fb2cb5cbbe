//! A small router: method and path patterns with parameters.
//!
//! Patterns are `/`-separated segments: a literal (`users`), a parameter
//! (`:id`, one segment, percent-decoded) or a rest parameter (`*path`, the
//! remaining segments, last only). Routes are tried in the order they were
//! added; a path that matches a route of another method answers 405 with
//! `Allow`, one that matches none 404.
//!
//! ```
//! use edge_sdk::router::Router;
//! use edge_sdk::{Body, Response};
//!
//! let router = Router::new()
//!     .get("/", |_req, _params| Response::new(Body::from("home\n")))
//!     .get("/users/:id", |_req, params| {
//!         Response::new(Body::from(format!("user {}\n", &params["id"])))
//!     });
//! // In a component: `edge_sdk::handler!(...)` with a function calling
//! // `router.handle(req)`.
//! # let _ = router;
//! ```
//!
//! [`Router::at`] does the matching alone, for handlers on other request
//! types (an async `wstd` handler, say).

use std::collections::HashMap;
use std::ops::Index;

use http::{HeaderValue, Method, StatusCode};

use crate::{Body, IntoResponse, Request, Response};

/// A pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// A pattern that is not well formed: a programming error, reported when
/// the router is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "route pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

fn parse(pattern: &str) -> Result<Vec<Segment>, PatternError> {
    let error = |reason| PatternError {
        pattern: pattern.to_string(),
        reason,
    };
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(error("must start with /"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let segment = if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() {
                return Err(error("a parameter needs a name (:name)"));
            }
            Segment::Param(name.to_string())
        } else if let Some(name) = part.strip_prefix('*') {
            if name.is_empty() {
                return Err(error("a rest parameter needs a name (*name)"));
            }
            if i + 1 != parts.len() {
                return Err(error("a rest parameter must be the last segment"));
            }
            Segment::Rest(name.to_string())
        } else if part.is_empty() {
            return Err(error("empty segment (//, or a trailing /)"));
        } else {
            Segment::Literal(part.to_string())
        };
        segments.push(segment);
    }
    Ok(segments)
}

/// The parameters a matched path gave, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// The parameter `name`, percent-decoded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl Index<&str> for Params {
    type Output = str;

    /// # Panics
    ///
    /// If the route has no parameter `name`: a mistake in the handler,
    /// since every parameter of a matched route is set.
    fn index(&self, name: &str) -> &str {
        match self.get(name) {
            Some(value) => value,
            None => panic!("the route has no parameter {name:?}"),
        }
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn matches(segments: &[Segment], path: &str) -> Option<Params> {
    let rest = path.strip_prefix('/')?;
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let mut params = HashMap::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Literal(literal) => {
                if parts.get(i) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                let part = parts.get(i).filter(|p| !p.is_empty())?;
                params.insert(name.clone(), percent_decode(part)?);
            }
            Segment::Rest(name) => {
                let rest = parts.get(i..).unwrap_or_default().join("/");
                params.insert(name.clone(), percent_decode(&rest)?);
                return Some(Params(params));
            }
        }
    }
    (parts.len() == segments.len()).then_some(Params(params))
}

type Handler = Box<dyn Fn(Request, Params) -> Response>;

struct Route<H> {
    method: Method,
    pattern: Vec<Segment>,
    handler: H,
}

/// What a method and path found in a [`Router`].
#[derive(Debug)]
pub enum Match<'a, H> {
    Found(&'a H, Params),
    /// The path has routes, none for this method: these are allowed.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Routes to handlers `H`: for the synchronous [`crate::handler!`], `H`
/// is a boxed `Fn(Request, Params) -> Response`, added with
/// [`Router::get`] and friends and run by [`Router::handle`].
pub struct Router<H = Handler> {
    routes: Vec<Route<H>>,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    /// Adds `handler` for `method` on `pattern`.
    pub fn try_add(
        &mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Result<(), PatternError> {
        let pattern = parse(pattern)?;
        self.routes.push(Route {
            method,
            pattern,
            handler,
        });
        Ok(())
    }

    /// The handler for `method` and `path` (the path alone, no query).
    /// A HEAD request matches a GET route.
    pub fn at(&self, method: &Method, path: &str) -> Match<'_, H> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, path) else {
                continue;
            };
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Match::Found(&route.handler, params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

impl Router<Handler> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route.
    ///
    /// # Panics
    ///
    /// If `pattern` is malformed (see the module's documentation): routes
    /// are written in code, so this fails on the first request in testing,
    /// never on a client's input. [`Router::try_add`] returns the error.
    pub fn route<R: IntoResponse>(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request, Params) -> R + 'static,
    ) -> Self {
        let handler: Handler = Box::new(move |req, params| handler(req, params).into_response());
        if let Err(err) = self.try_add(method, pattern, handler) {
            panic!("{err}");
        }
        self
    }

    pub fn get<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request, Params) -> R + 'static,
    ) -> Self {
        self.route(Method::GET, pattern, handler)
    }

    pub fn post<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request, Params) -> R + 'static,
    ) -> Self {
        self.route(Method::POST, pattern, handler)
    }

    pub fn put<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request, Params) -> R + 'static,
    ) -> Self {
        self.route(Method::PUT, pattern, handler)
    }

    pub fn delete<R: IntoResponse>(
        self,
        pattern: &str,
        handler: impl Fn(Request, Params) -> R + 'static,
    ) -> Self {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Runs the matching handler; 404, or 405 with `Allow`, otherwise.
    pub fn handle(&self, req: Request) -> Response {
        match self.at(req.method(), req.uri().path()) {
            Match::Found(handler, params) => handler(req, params),
            Match::MethodNotAllowed(allowed) => {
                let allow = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut resp = Response::new(Body::from("method not allowed\n"));
                *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(http::header::ALLOW, value);
                }
                resp
            }
            Match::NotFound => {
                let mut resp = Response::new(Body::from("not found\n"));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                resp
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        let mut router = Router::default();
        for (method, pattern, name) in [
            (Method::GET, "/", "home"),
            (Method::GET, "/users/:id", "user"),
            (Method::DELETE, "/users/:id", "delete user"),
            (Method::GET, "/users/:id/posts/:post", "post"),
            (Method::GET, "/files/*path", "file"),
        ] {
            router.try_add(method, pattern, name).unwrap();
        }
        router
    }

    fn found(
        router: &Router<&'static str>,
        method: Method,
        path: &str,
    ) -> Option<(&'static str, Params)> {
        match router.at(&method, path) {
            Match::Found(name, params) => Some((*name, params)),
            _ => None,
        }
    }

    #[test]
    fn literals_parameters_and_rest() {
        let router = router();
        assert_eq!(found(&router, Method::GET, "/").unwrap().0, "home");
        let (name, params) = found(&router, Method::GET, "/users/w%C3%B6rld").unwrap();
        assert_eq!((name, &params["id"]), ("user", "wörld"));
        let (name, params) = found(&router, Method::GET, "/users/7/posts/9").unwrap();
        assert_eq!((name, &params["id"], &params["post"]), ("post", "7", "9"));
        let (name, params) = found(&router, Method::GET, "/files/a/b%20c.txt").unwrap();
        assert_eq!((name, &params["path"]), ("file", "a/b c.txt"));
        let (_, params) = found(&router, Method::GET, "/files/").unwrap();
        assert_eq!(&params["path"], "");
        assert_eq!(found(&router, Method::HEAD, "/users/1").unwrap().0, "user");
    }

    #[test]
    fn misses_say_why() {
        let router = router();
        assert!(matches!(router.at(&Method::GET, "/users"), Match::NotFound));
        assert!(matches!(
            router.at(&Method::GET, "/users/1/x"),
            Match::NotFound
        ));
        assert!(matches!(
            router.at(&Method::GET, "/users//"),
            Match::NotFound
        ));
        // A bad escape is not a match (the handler never sees it).
        assert!(matches!(
            router.at(&Method::GET, "/users/%zz"),
            Match::NotFound
        ));
        assert!(matches!(
            router.at(&Method::GET, "/users/%FF"),
            Match::NotFound
        ));
        match router.at(&Method::POST, "/users/1") {
            Match::MethodNotAllowed(allowed) => assert_eq!(allowed, [Method::GET, Method::DELETE]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        let mut router: Router<()> = Router::default();
        for pattern in ["", "users", "/a//b", "/a/", "/:", "/*", "/*rest/more"] {
            assert!(
                router.try_add(Method::GET, pattern, ()).is_err(),
                "{pattern}"
            );
        }
    }
}
