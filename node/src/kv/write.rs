//! A guest's writes: `POST /v1/kv/write` (node token) with a random nonce;
//! the control plane commits every op in one transaction and answers with
//! a signed [`KvWriteResult`] echoing the nonce, whose changes are applied
//! to the replica before the guest's call returns.
//!
//! Nothing is retried on another replica once one answered: a write whose
//! answer was lost may have committed, and the guest is told
//! `kv-unavailable` rather than having it applied twice (an increment).
//! Only a refused connection moves on to the next replica.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_common::api::ErrorBody;
use edge_common::kv::{
    KvError, KvErrorCode, KvOp, KvWriteRequest, KvWriteResult, MAX_WRITE_BODY_BYTES, SignedBody,
};

use super::CpLink;
use super::metrics::{KvMetrics, reason};
use super::replica::Replica;

/// Bytes of an answer the node reads: every op's result and change, with
/// values up to the largest a tenant may set, in base64.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Characters of the control plane's refusal passed on to the guest: the
/// code and the rule it names, not whatever a broken proxy sent.
const MAX_MESSAGE_CHARS: usize = 300;

/// What a write's body would be at most: keys (escaped, at most twice
/// their length) and values in base64, and a little JSON around each op.
/// Checked before the body is built, so a guest's huge batch costs no
/// memory.
pub fn estimated_body_bytes(ops: &[KvOp]) -> usize {
    const PER_OP: usize = 64;
    ops.iter()
        .map(|op| {
            let value = match op {
                KvOp::Set { value, .. } => value.0.len(),
                KvOp::CompareAndSwap {
                    expected, value, ..
                } => value.0.len() + expected.as_ref().map_or(0, |e| e.0.len()),
                KvOp::Delete { .. } | KvOp::Increment { .. } => 0,
            };
            PER_OP + 2 * op.key().len() + value.div_ceil(3) * 4
        })
        .sum()
}

fn too_large(bytes: usize) -> KvError {
    KvError::new(
        KvErrorCode::ValueTooLarge,
        format!(
            "the write is {bytes} bytes encoded; one write carries at most {MAX_WRITE_BODY_BYTES} (keys and base64 values)"
        ),
    )
}

fn truncated(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

pub struct KvWriter {
    pub link: Arc<CpLink>,
    pub timeout: Duration,
    pub replica: Arc<Replica>,
    pub metrics: KvMetrics,
}

fn unavailable(message: impl Into<String>) -> KvError {
    KvError::new(KvErrorCode::Unavailable, message)
}

/// A random nonce (128 bits, hex): an answer is accepted only for the
/// request it echoes.
fn nonce() -> Result<String, KvError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| unavailable("no randomness for the write's nonce"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Every code, to read the control plane's `error.code` back.
const CODES: [KvErrorCode; 19] = [
    KvErrorCode::StoreNameInvalid,
    KvErrorCode::StoreExists,
    KvErrorCode::StoreNotFound,
    KvErrorCode::StoreLimit,
    KvErrorCode::StoreLinked,
    KvErrorCode::NotLinked,
    KvErrorCode::KeyInvalid,
    KvErrorCode::KeyTooLong,
    KvErrorCode::KeyNotFound,
    KvErrorCode::ValueTooLarge,
    KvErrorCode::KeysLimit,
    KvErrorCode::BytesLimit,
    KvErrorCode::OpsLimit,
    KvErrorCode::NotANumber,
    KvErrorCode::Overflow,
    KvErrorCode::Unavailable,
    KvErrorCode::ReplicaFull,
    KvErrorCode::Resync,
    KvErrorCode::Invalid,
];

pub fn code_from_str(code: &str) -> Option<KvErrorCode> {
    CODES.into_iter().find(|c| c.as_str() == code)
}

impl KvWriter {
    /// Commits `ops` (one guest call) for the app's store `store` (the name
    /// it opened). The replica holds the committed changes when this
    /// returns Ok.
    pub async fn write(
        &self,
        tenant: &edge_common::names::TenantId,
        app: &edge_common::names::AppName,
        store: &str,
        ops: Vec<KvOp>,
    ) -> Result<KvWriteResult, KvError> {
        let started = Instant::now();
        let Some(key) = self.link.key.get() else {
            return Err(unavailable(
                "the node has no control-plane key yet to verify the answer",
            ));
        };
        let estimated = estimated_body_bytes(&ops);
        if estimated > MAX_WRITE_BODY_BYTES {
            return Err(too_large(estimated));
        }
        let nonce = nonce()?;
        let count = ops.len();
        let request = KvWriteRequest {
            nonce: nonce.clone(),
            tenant: tenant.clone(),
            app: app.clone(),
            store: store.to_string(),
            ops,
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| unavailable(format!("cannot encode the write: {e}")))?;
        if body.len() > MAX_WRITE_BODY_BYTES {
            return Err(too_large(body.len()));
        }
        drop(request);
        let body = Bytes::from(body);
        let result = tokio::time::timeout(self.timeout, self.exchange(body))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "the control plane did not answer within {:?}; the write may or may not have happened",
                    self.timeout
                ))
            })??;
        let signed: SignedBody = result;
        let mut answer: KvWriteResult = match signed.verify(&key) {
            Ok(answer) => answer,
            Err(e) => {
                self.metrics.failure(reason::WRITE_BAD_ANSWER);
                tracing::error!(error = %e, "refused the control plane's answer to a key-value write");
                return Err(unavailable(
                    "the control plane's answer did not verify with the pinned key",
                ));
            }
        };
        if answer.nonce != nonce || answer.results.len() != count {
            self.metrics.failure(reason::WRITE_BAD_ANSWER);
            return Err(unavailable(
                "the control plane's answer is not for this write",
            ));
        }
        let changes = std::mem::take(&mut answer.changes);
        if let Err(full) = self.replica.apply_write(&answer.epoch, changes) {
            // Committed, but this node cannot hold it: the guest learns the
            // write happened; reads say the replica is full.
            self.metrics.failure(reason::REPLICA_FULL);
            tracing::error!(error = %full, "a committed key-value write does not fit the replica");
        }
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    /// One POST, on the replica that answered last or, when it refuses the
    /// connection, the next ones.
    async fn exchange(&self, body: Bytes) -> Result<SignedBody, KvError> {
        let start = self.link.current();
        let endpoints = self.link.endpoints.len();
        let mut last_error = String::new();
        for i in 0..endpoints {
            let index = (start + i) % endpoints;
            let Some(url) = self.link.url(index, "/v1/kv/write") else {
                break;
            };
            let sent = self
                .link
                .client
                .post(url)
                .bearer_auth(&self.link.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_connect() => {
                    last_error = e.to_string();
                    continue;
                }
                Err(e) => return Err(unavailable(format!("the write failed: {e}"))),
            };
            self.link.current.store(index, Ordering::Relaxed);
            let status = response.status();
            let bytes = read_bounded(response).await?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|e| {
                    self.metrics.failure(reason::MALFORMED);
                    unavailable(format!(
                        "the control plane's answer is not a signed body: {e}"
                    ))
                });
            }
            return Err(refusal(status, &bytes));
        }
        Err(unavailable(format!(
            "no control plane reachable: {last_error}"
        )))
    }
}

/// The control plane's refusal as the guest sees it: its own kv code and
/// message when it sent one, else `kv-unavailable` naming the status.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> KvError {
    if let Ok(error) = serde_json::from_slice::<ErrorBody>(body)
        && let Some(code) = code_from_str(&error.error.code)
    {
        return KvError::new(code, truncated(&error.error.message));
    }
    let text = truncated(&String::from_utf8_lossy(body));
    // The write's body over the control plane's request limit: the
    // values are too large together, which retrying will not change.
    if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
        return KvError::new(
            KvErrorCode::ValueTooLarge,
            format!("the write is larger than the control plane accepts: {text}"),
        );
    }
    unavailable(format!("the control plane answered {status}: {text}"))
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, KvError> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(unavailable("the control plane's answer is too large"));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(unavailable(format!("reading the answer: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back() {
        for code in CODES {
            assert_eq!(code_from_str(code.as_str()), Some(code));
        }
        assert_eq!(code_from_str("not-found"), None);
        let body =
            br#"{"error":{"code":"kv-value-too-large","message":"a value is at most 10 bytes"}}"#;
        let error = refusal(reqwest::StatusCode::PAYLOAD_TOO_LARGE, body);
        assert_eq!(
            error.to_string(),
            "kv-value-too-large: a value is at most 10 bytes"
        );
        let other = refusal(
            reqwest::StatusCode::UNAUTHORIZED,
            b"{\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}",
        );
        assert_eq!(other.code, KvErrorCode::Unavailable);
        assert!(other.message.contains("401"), "{other}");
        let body = br#"{"error":{"code":"body-too-large","message":"at most 16 MiB"}}"#;
        let large = refusal(reqwest::StatusCode::PAYLOAD_TOO_LARGE, body);
        assert_eq!(large.code, KvErrorCode::ValueTooLarge);
        let long = format!(
            r#"{{"error":{{"code":"kv-keys-limit","message":"{}"}}}}"#,
            "x".repeat(10_000)
        );
        let bounded = refusal(reqwest::StatusCode::CONFLICT, long.as_bytes());
        assert_eq!(bounded.code, KvErrorCode::KeysLimit);
        assert_eq!(bounded.message.len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn a_batch_over_the_body_limit_is_measured_before_it_is_built() {
        let set = |n: usize| KvOp::Set {
            key: "k".into(),
            value: edge_common::kv::KvValue(vec![0; n]),
        };
        // 1000 values of 1 MiB: far over, known without encoding anything.
        let big: Vec<KvOp> = (0..1000).map(|_| set(1 << 20)).collect();
        assert!(estimated_body_bytes(&big) > MAX_WRITE_BODY_BYTES);
        // The estimate is never below the real body.
        let small: Vec<KvOp> = (0..100).map(|_| set(3000)).collect();
        let real = serde_json::to_vec(&small).unwrap().len();
        assert!(estimated_body_bytes(&small) >= real, "{real}");
    }

    #[test]
    fn nonces_differ() {
        let a = nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, nonce().unwrap());
    }
}
