//! The log shipper's way to the control plane: the sync client (its
//! pooled connections, the node's token, the CA it trusts), posting to
//! `POST /v1/logs` on the replica that answered last and failing over to
//! the next like the long poll does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edge_common::api::BatchAccepted;

use crate::logs::ship::Uplink;

/// A batch that takes longer is given up (and its lines counted dropped):
/// the queue behind it must not wait on a stuck replica.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct LogUplink {
    pub(super) client: reqwest::Client,
    pub(super) endpoints: Arc<Vec<String>>,
    pub(super) token: String,
    pub(super) current: AtomicUsize,
}

impl Uplink for LogUplink {
    async fn post(&self, body: Vec<u8>) -> Result<BatchAccepted, String> {
        let mut last_error = String::new();
        let start = self.current.load(Ordering::Relaxed);
        for i in 0..self.endpoints.len() {
            let index = (start + i) % self.endpoints.len();
            let url = format!("{}/v1/logs", self.endpoints[index]);
            let sent = self
                .client
                .post(url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(POST_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.current.store(index, Ordering::Relaxed);
                    return response.json().await.map_err(|e| e.to_string());
                }
                // The replica answered: another would answer the same.
                Ok(response) => {
                    return Err(format!("the control plane answered {}", response.status()));
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(format!("no control plane reachable: {last_error}"))
    }
}
