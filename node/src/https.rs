//! What the node answers on its own at the HTTP/HTTPS boundary, around an
//! app: pending ACME HTTP-01 challenges (before routing: the CA asks
//! before the host has an app, and over plain HTTP even where the app
//! redirects; a challenge that is not pending goes to the app), the 308
//! to HTTPS an app's `https.redirect` asks for, and its `https.hsts`
//! header on HTTPS answers only (RFC 6797 §7.2).

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode};

use crate::acme::{AcmeChallenges, challenge_token, is_challenge_request};
use crate::app::HttpsPolicy;
use crate::error::{EdgeError, ResponseBody, text_response};
use crate::router::{RouteError, request_host};

pub struct HttpsAnswers {
    /// Pending challenges, swapped with the routing table.
    challenges: ArcSwap<AcmeChallenges>,
    /// `http.https_redirect_port`, else the HTTPS listener's port once bound.
    redirect_port: Option<u16>,
    https_port: OnceLock<u16>,
}

impl HttpsAnswers {
    pub fn new(redirect_port: Option<u16>) -> Self {
        Self {
            challenges: ArcSwap::from_pointee(AcmeChallenges::default()),
            redirect_port,
            https_port: OnceLock::new(),
        }
    }

    pub fn swap_challenges(&self, challenges: AcmeChallenges) {
        self.challenges.store(Arc::new(challenges));
    }

    pub fn set_https_port(&self, port: u16) {
        let _ = self.https_port.set(port);
    }

    /// For a GET or HEAD of `/.well-known/acme-challenge/{token}` whose
    /// host and token are a pending challenge: its key authorization
    /// (`text/plain`, `no-store`). `None` for anything else, which is
    /// routed as usual: the path is the app's but for the control plane's
    /// own pending tokens.
    pub fn challenge<B>(&self, request: &Request<B>) -> Option<Response<ResponseBody>> {
        if !is_challenge_request(request) {
            return None;
        }
        let token = challenge_token(request.uri().path())?;
        // A bad Host is routing's to refuse, with its own code.
        let host = request_host(request).ok()?;
        let challenges = self.challenges.load();
        let key_authorization = challenges.answer(&host, token)?;
        Some(text_response(StatusCode::OK, key_authorization.to_string()))
    }

    /// 308 to the same URL on HTTPS, on the HTTPS listener's port (or
    /// `http.https_redirect_port`), left out when it is 443.
    pub fn redirect(&self, host: &str, uri: &http::Uri) -> Response<ResponseBody> {
        let port = self
            .redirect_port
            .or_else(|| self.https_port.get().copied())
            .filter(|port| *port != 443);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/");
        let location = match port {
            Some(port) => format!("https://{host}:{port}{path}"),
            None => format!("https://{host}{path}"),
        };
        match HeaderValue::try_from(location) {
            Ok(location) => {
                // no-store (text_response): an app that turns the redirect
                // off is not stuck with it in browsers' caches.
                let mut response = text_response(StatusCode::PERMANENT_REDIRECT, "");
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
                response
            }
            Err(_) => EdgeError::from(RouteError::InvalidHost).to_response(),
        }
    }
}

/// The app's HSTS value on an answer given over HTTPS (after the cache,
/// which stores answers without it).
pub fn add_hsts(response: &mut Response<ResponseBody>, policy: &HttpsPolicy) {
    if let Some(hsts) = &policy.hsts {
        response
            .headers_mut()
            .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
}
