//! The host side of `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` and
//! `edge:keyvalue/cas`, generated from `sdk/wit/kv` (the same files the
//! SDK's guest bindings come from).
//!
//! - `open(name)` opens a store the app's snapshot links under that name;
//!   anything else (and every name for an app from the node's own config
//!   file, which has no control plane) is `no-such-store`.
//! - Reads come from the node's replica; writes go to the control plane
//!   (one request per guest call, a batch included) and are applied to the
//!   replica before the call returns.
//! - Every op counts against the tenant's `max_ops_per_request` for the
//!   incoming request (a batch one per key); keys and values are checked
//!   against the limits before anything is sent.
//! - A refusal reaches the guest as `error::other("<code>: <message>")`.

use std::collections::VecDeque;
use std::sync::Arc;

use edge_common::kv::{
    KvError, KvErrorCode, KvOp, KvOpResult, KvValue, MAX_KEYS_PER_PAGE, MAX_OPS_PER_WRITE,
    check_key, check_value,
};
use wasmtime::component::{HasData, Resource, ResourceTable};

use super::AppKv;
use super::metrics::Op;

mod generated {
    wasmtime::component::bindgen!({
        path: "../sdk/wit/kv",
        world: "edge:keyvalue/kv",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::Failure,
        },
    });
}

use generated::edge::keyvalue::cas;
use generated::wasi::keyvalue::{atomics, batch, store};

/// `list-keys` cursors a bucket remembers: a guest paging through several
/// listings at once keeps its place; an older cursor is refused.
const MAX_CURSORS_PER_BUCKET: usize = 16;

/// An open store, as the guest holds it.
pub struct Bucket {
    /// The name the guest opened (what a write names).
    name: Arc<str>,
    /// The store's id (what the replica is keyed by).
    store: Arc<str>,
    /// `list-keys` cursors issued, oldest first, with the last key of
    /// their page: the next page starts after that key (a B-tree range),
    /// so a guest cannot make the node skip through a store by index.
    cursors: VecDeque<(u64, String)>,
    /// The last cursor issued.
    issued: u64,
}

impl Bucket {
    fn after(&self, cursor: u64) -> Result<String, KvError> {
        self.cursors
            .iter()
            .find(|(issued, _)| *issued == cursor)
            .map(|(_, key)| key.clone())
            .ok_or_else(|| {
                KvError::new(
                    KvErrorCode::Invalid,
                    format!(
                        "list-keys cursor {cursor} is not one of the last {MAX_CURSORS_PER_BUCKET} this bucket returned"
                    ),
                )
            })
    }

    fn issue(&mut self, last: String) -> u64 {
        self.issued += 1;
        if self.cursors.len() == MAX_CURSORS_PER_BUCKET {
            self.cursors.pop_front();
        }
        self.cursors.push_back((self.issued, last));
        self.issued
    }
}

/// Why a call failed: what the guest is told, or a trap.
pub enum Failure {
    NoSuchStore,
    Kv(KvError),
    Trap(wasmtime::Error),
}

impl From<KvError> for Failure {
    fn from(e: KvError) -> Self {
        Failure::Kv(e)
    }
}

impl From<wasmtime::component::ResourceTableError> for Failure {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Failure::Trap(e.into())
    }
}

/// The key-value part of one request's host state.
#[derive(Default)]
pub struct KvRequest {
    /// `None`: the app has no stores (no control plane).
    pub app: Option<Arc<AppKv>>,
    /// Ops this request made so far.
    pub ops: u64,
}

/// A call's app, and its bucket's name and store id.
type Opened = (Arc<AppKv>, Arc<str>, Arc<str>);

/// What the bindings borrow of the host state.
pub struct KvHost<'a> {
    pub table: &'a mut ResourceTable,
    pub request: &'a mut KvRequest,
}

pub struct KvData;

impl HasData for KvData {
    type Data<'a> = KvHost<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvHost<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KvData>(linker, view)?;
    atomics::add_to_linker::<T, KvData>(linker, view)?;
    batch::add_to_linker::<T, KvData>(linker, view)?;
    cas::add_to_linker::<T, KvData>(linker, view)?;
    Ok(())
}

impl KvHost<'_> {
    fn app(&self) -> Result<Arc<AppKv>, Failure> {
        self.request.app.clone().ok_or(Failure::NoSuchStore)
    }

    /// The bucket's store, and `n` ops counted against the request's limit.
    fn begin(&mut self, bucket: &Resource<Bucket>, n: usize) -> Result<Opened, Failure> {
        let app = self.app()?;
        let bucket = self.table.get(bucket)?;
        let (name, store) = (bucket.name.clone(), bucket.store.clone());
        let ops = self.request.ops.saturating_add(n as u64);
        if ops > u64::from(app.limits.max_ops_per_request) {
            return Err(Failure::Kv(KvError::new(
                KvErrorCode::OpsLimit,
                format!(
                    "a request may make at most {} key-value operations",
                    app.limits.max_ops_per_request
                ),
            )));
        }
        self.request.ops = ops;
        Ok((app, name, store))
    }
}

/// Runs `f` after `begin`, and counts the outcome under `op`.
macro_rules! counted {
    ($self:ident, $op:expr, $bucket:expr, $n:expr, |$app:ident, $name:ident, $store:ident| $body:expr) => {{
        match $self.begin(&$bucket, $n) {
            Ok(($app, $name, $store)) => {
                let result: Result<_, KvError> = async { $body }.await;
                $app.record($op, &result);
                result.map_err(Failure::Kv)
            }
            Err(Failure::Kv(e)) => {
                if let Some(app) = &$self.request.app {
                    let result: Result<(), KvError> = Err(e.clone());
                    app.record($op, &result);
                }
                Err(Failure::Kv(e))
            }
            Err(other) => Err(other),
        }
    }};
}

fn unexpected(result: &KvOpResult) -> KvError {
    KvError::new(
        KvErrorCode::Unavailable,
        format!("the control plane answered {result:?} for this op"),
    )
}

async fn write_one(app: &AppKv, name: &str, op: KvOp) -> Result<KvOpResult, KvError> {
    let answer = app
        .service
        .writer
        .write(&app.tenant, &app.app, name, vec![op])
        .await?;
    answer.results.first().copied().ok_or_else(|| {
        KvError::new(
            KvErrorCode::Unavailable,
            "the control plane answered no result",
        )
    })
}

fn check_batch(n: usize) -> Result<(), KvError> {
    if n > MAX_OPS_PER_WRITE {
        return Err(KvError::new(
            KvErrorCode::OpsLimit,
            format!("a batch has at most {MAX_OPS_PER_WRITE} keys"),
        ));
    }
    Ok(())
}

impl store::Host for KvHost<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Failure> {
        let app = self.app()?;
        let Some(store) = app.store_id(&identifier) else {
            return Err(Failure::NoSuchStore);
        };
        let bucket = Bucket {
            store: Arc::from(store),
            name: Arc::from(identifier),
            cursors: VecDeque::new(),
            issued: 0,
        };
        Ok(self.table.push(bucket)?)
    }

    fn convert_error(&mut self, err: Failure) -> wasmtime::Result<store::Error> {
        match err {
            Failure::NoSuchStore => Ok(store::Error::NoSuchStore),
            Failure::Kv(e) => Ok(store::Error::Other(e.to_string())),
            Failure::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvHost<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        counted!(self, Op::Get, bucket, 1, |app, _name, store| {
            check_key(&key, &app.limits)?;
            Ok(app.service.replica.get(&store, &key)?.map(|v| v.to_vec()))
        })
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        counted!(self, Op::Set, bucket, 1, |app, name, _store| {
            check_key(&key, &app.limits)?;
            check_value(&value, &app.limits)?;
            match write_one(
                &app,
                &name,
                KvOp::Set {
                    key,
                    value: KvValue(value),
                },
            )
            .await?
            {
                KvOpResult::Done => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Failure> {
        counted!(self, Op::Delete, bucket, 1, |app, name, _store| {
            check_key(&key, &app.limits)?;
            match write_one(&app, &name, KvOp::Delete { key }).await? {
                KvOpResult::Done => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Failure> {
        counted!(self, Op::Exists, bucket, 1, |app, _name, store| {
            check_key(&key, &app.limits)?;
            app.service.replica.exists(&store, &key)
        })
    }

    /// Keys in byte order, [`MAX_KEYS_PER_PAGE`] a page; the cursor names
    /// the last key of the page it came with (see [`Bucket`]).
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Failure> {
        counted!(self, Op::ListKeys, bucket, 1, |app, _name, store| {
            let open = self
                .table
                .get_mut(&bucket)
                .map_err(|e| KvError::new(KvErrorCode::Invalid, e.to_string()))?;
            let after = cursor.map(|c| open.after(c)).transpose()?;
            let page =
                app.service
                    .replica
                    .list_keys(&store, after.as_deref(), MAX_KEYS_PER_PAGE)?;
            let cursor = match page.keys.last() {
                Some(last) if page.more => Some(open.issue(last.clone())),
                _ => None,
            };
            Ok(store::KeyResponse {
                keys: page.keys,
                cursor,
            })
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvHost<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Failure> {
        counted!(self, Op::Increment, bucket, 1, |app, name, _store| {
            check_key(&key, &app.limits)?;
            match write_one(&app, &name, KvOp::Increment { key, delta }).await? {
                KvOpResult::Incremented { value } => Ok(value),
                other => Err(unexpected(&other)),
            }
        })
    }
}

impl cas::Host for KvHost<'_> {
    async fn compare_and_swap(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, Failure> {
        counted!(self, Op::CompareAndSwap, bucket, 1, |app, name, _store| {
            check_key(&key, &app.limits)?;
            check_value(&value, &app.limits)?;
            // No stored value can be larger: refused here, not sent.
            if let Some(expected) = &expected {
                check_value(expected, &app.limits)?;
            }
            let op = KvOp::CompareAndSwap {
                key,
                expected: expected.map(KvValue),
                value: KvValue(value),
            };
            match write_one(&app, &name, op).await? {
                KvOpResult::CompareAndSwap { swapped } => Ok(swapped),
                other => Err(unexpected(&other)),
            }
        })
    }
}

impl batch::Host for KvHost<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Failure> {
        let n = keys.len();
        counted!(self, Op::GetMany, bucket, n, |app, _name, store| {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                check_key(&key, &app.limits)?;
                let value = app.service.replica.get(&store, &key)?;
                out.push(value.map(|v| (key, v.to_vec())));
            }
            Ok(out)
        })
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let n = key_values.len();
        counted!(self, Op::SetMany, bucket, n, |app, name, _store| {
            check_batch(key_values.len())?;
            if key_values.is_empty() {
                return Ok(());
            }
            let mut ops = Vec::with_capacity(key_values.len());
            for (key, value) in key_values {
                check_key(&key, &app.limits)?;
                check_value(&value, &app.limits)?;
                ops.push(KvOp::Set {
                    key,
                    value: KvValue(value),
                });
            }
            app.service
                .writer
                .write(&app.tenant, &app.app, &name, ops)
                .await
                .map(|_| ())
        })
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Failure> {
        let n = keys.len();
        counted!(self, Op::DeleteMany, bucket, n, |app, name, _store| {
            check_batch(keys.len())?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut ops = Vec::with_capacity(keys.len());
            for key in keys {
                check_key(&key, &app.limits)?;
                ops.push(KvOp::Delete { key });
            }
            app.service
                .writer
                .write(&app.tenant, &app.app, &name, ops)
                .await
                .map(|_| ())
        })
    }
}
