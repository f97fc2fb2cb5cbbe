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

    fn url(&self, path: &str) -> String {
        let mut url = format!("{}/v1{path}", self.base.trim_end_matches('/'));
        if path.starts_with("/apps")
            && let Some(tenant) = &self.tenant
        {
            url.push_str(&format!("?tenant={tenant}"));
        }
        url
    }

    /// Sends `body` and reads the answer as `T`.
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
    ) -> Result<T, Failure> {
        let mut request = self
            .client
            .request(method, self.url(path))
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
        serde_json::from_str(&text)
            .map_err(|e| Failure(format!("the API's answer to {path} is not understood: {e}")))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(Method::GET, path, Body::<()>::None).await
    }

    /// A request with a JSON body.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.send(method, path, Body::Json(body)).await
    }
}
