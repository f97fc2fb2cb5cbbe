//! Token refusals over HTTP: 401 with a JSON error and a stable code. (The
//! whole matrix — expired, nbf, missing claims, alg none, HS256, wrong
//! audience — is in the `auth` module's unit tests.)

use std::time::Duration;

use edge_common::api::{ErrorBody, Whoami};
use edge_cp::auth::{Auth, Role};

use crate::common::{Client, TestCp, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_a_json_error() {
    let cp = TestCp::start().await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/v1/whoami", cp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "token-missing");

    let (status, body) = Client::new(&cp, "not.a.jwt".into())
        .call("GET", "/v1/whoami", None)
        .await;
    assert_error(status, &body, 401, "token-invalid");

    // Signed by another control plane.
    let other = Auth::new(&edge_common::signing::SigningKey::generate_pkcs8().unwrap()).unwrap();
    let foreign = other
        .issue(Role::Admin, "admin", None, Duration::from_secs(60))
        .unwrap();
    let (status, body) = Client::new(&cp, foreign)
        .call("GET", "/v1/tenants", None)
        .await;
    let error = assert_error(status, &body, 401, "token-invalid");
    assert!(error.message.contains("signature"), "{error:?}");

    // A valid token works, and says who it is.
    let whoami: Whoami = cp.tenant("acme").get("/v1/whoami").await;
    assert_eq!(whoami.role, Role::Tenant);
    assert_eq!(whoami.tenant, Some("acme".parse().unwrap()));
    // A tenant token for a tenant that does not exist acts on nothing.
    let (status, body) = cp.tenant("ghost").call("GET", "/v1/apps", None).await;
    assert_error(status, &body, 404, "not-found");
    // Unknown endpoints and health.
    let (status, body) = cp.admin().call("GET", "/v1/nope", None).await;
    assert_error(status, &body, 404, "not-found");
    let health = http
        .get(format!("{}/healthz", cp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
