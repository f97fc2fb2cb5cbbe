//! The API client: one token, typed requests and answers, and every
//! refusal turned into one line (`<message> [<status> <code>]`).

use std::path::Path;
use std::time::Duration;

use edge_common::api::ErrorBody;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failure, printed as one line.
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
    tenant: Option<String>,
}

/// What a request sends.
pub enum Body<'a, B: Serialize> {
    None,
    Json(&'a B),
    Wasm(Vec<u8>),
}

impl Api {
    pub fn new(
        base: String,
        token: String,
        tenant: Option<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, Failure> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = ca_cert {
            let pem = std::fs::read(ca).map_err(|e| Failure(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Self {
            client: builder.build()?,
            base,
            token,
            tenant,
        })
    }

    /// `{base}/v1/{segments...}`, each segment percent-encoded, so that a
    /// name can never change which resource is addressed: reqwest (as RFC
    /// 3986 asks) removes `.` and `..` segments from a URL written as
    /// text, and `DELETE .../secrets/..` would have deleted the app.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, Failure> {
        if let Some(bad) = segments
            .iter()
            .find(|s| s.is_empty() || **s == "." || **s == "..")
        {
            return Err(Failure(format!(
                "`{bad}` cannot name anything in an API path"
            )));
        }
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| Failure(format!("the API address {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| Failure(format!("the API address {} cannot take a path", self.base)))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        if matches!(segments.first(), Some(&"apps" | &"kv"))
            && let Some(tenant) = &self.tenant
        {
            url.query_pairs_mut().append_pair("tenant", tenant);
        }
        Ok(url)
    }

    /// Sends `body` and reads the answer as `T`.
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &[&str],
        body: Body<'_, B>,
    ) -> Result<T, Failure> {
        let mut request = self
            .client
            .request(method, self.url(path)?)
            .bearer_auth(&self.token);
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(value),
            Body::Wasm(bytes) => request
                .header("content-type", "application/wasm")
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure(format!("cannot reach the API at {}: {e}", self.base)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure(format!("reading the API's answer: {e}")))?;
        if !status.is_success() {
            let (message, code) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(ErrorBody { error }) => (error.message, error.code),
                // Not the API's refusal (a proxy's page, say): its start.
                Err(_) => (text.trim().chars().take(300).collect(), String::new()),
            };
            return Err(Failure(format!("{message} [{} {code}]", status.as_u16())));
        }
        serde_json::from_str(&text).map_err(|e| {
            Failure(format!(
                "the API's answer to /{} is not understood: {e}",
                path.join("/")
            ))
        })
    }

    /// A GET whose answer is read as it comes (a log stream); a refusal
    /// is a [`Failure`] as for [`Api::send`].
    pub async fn stream(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, Failure> {
        let response = self
            .client
            .get(self.url(path)?)
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Failure(format!("cannot reach the API at {}: {e}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let (message, code) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody { error }) => (error.message, error.code),
            Err(_) => (text.trim().chars().take(300).collect(), String::new()),
        };
        Err(Failure(format!("{message} [{} {code}]", status.as_u16())))
    }

    /// A request with raw bytes in and out (key-value entries) and query
    /// values (percent-encoded here); `None`: the answer had no body to
    /// keep (204).
    pub async fn raw(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Failure> {
        let mut url = self.url(path)?;
        for (name, value) in query {
            url.query_pairs_mut().append_pair(name, value);
        }
        let mut request = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/octet-stream")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure(format!("cannot reach the API at {}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure(format!("reading the API's answer: {e}")))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (message, code) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => (error.message, error.code),
            Err(_) => (
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
                String::new(),
            ),
        };
        Err(Failure(format!("{message} [{} {code}]", status.as_u16())))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &[&str]) -> Result<T, Failure> {
        self.send(Method::GET, path, Body::<()>::None).await
    }

    /// A request with a JSON body.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.send(method, path, Body::Json(body)).await
    }
}
