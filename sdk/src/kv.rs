//! The tenant's key-value stores, through `wasi:keyvalue@0.2.0-draft` (the
//! version wasmtime 48 defines) and this platform's `edge:keyvalue/cas`.
//!
//! ```ignore
//! use edge_sdk::kv::Store;
//!
//! let store = Store::open("sessions")?;
//! store.set("user:42", b"{\"plan\":\"pro\"}")?;
//! let hits = store.increment("hits", 1)?;
//! let won = store.compare_and_swap("lock", None, b"node-a")?;
//! ```
//!
//! What a call promises (README, "Key-value stores"):
//! - reads (`get`, `exists`, `list_keys`, `get_many`) come from the node's
//!   replica of the store: fast, and they keep working while the control
//!   plane is down; a write made on another node shows up within the
//!   propagation time;
//! - writes (`set`, `delete`, the batches, `increment`,
//!   `compare_and_swap`) are committed on the control plane before the
//!   call returns, and this node reads them back at once;
//! - `increment` and `compare_and_swap` run on the control plane, so they
//!   are atomic across all nodes;
//! - a batch is one write: all of it happens or none;
//! - when the control plane cannot be reached a write fails with
//!   [`Error::code`] `kv-unavailable` and nothing was written.
//!
//! An app opens only the stores its tenant linked to it
//! (`edgectl kv link APP STORE`); any other name is [`Error::NoSuchStore`].

mod bindings {
    wit_bindgen::generate!({
        path: "wit/kv",
        world: "edge:keyvalue/kv@0.1.0",
        // The wasi:keyvalue interfaces are from another package than the
        // world; nothing else provides bindings for them.
        generate_all,
    });
}

use bindings::edge::keyvalue::cas;
use bindings::wasi::keyvalue::{atomics, batch, store};

/// A refused key-value call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The app does not link a store of that name.
    NoSuchStore,
    AccessDenied,
    /// Anything else: the platform's messages start with a stable code
    /// (`kv-value-too-large: a value is at most ...`), parsed into `code`.
    Other {
        code: Option<String>,
        message: String,
    },
}

impl Error {
    /// The stable code: `no-such-store`, `access-denied`, or the platform's
    /// `kv-*` code (`kv-unavailable`, `kv-ops-limit`, `kv-value-too-large`,
    /// `kv-key-too-long`, ...); `other` for a message without one.
    pub fn code(&self) -> &str {
        match self {
            Error::NoSuchStore => "no-such-store",
            Error::AccessDenied => "access-denied",
            Error::Other {
                code: Some(code), ..
            } => code,
            Error::Other { code: None, .. } => "other",
        }
    }

    fn parse(message: String) -> Self {
        // Codes are lowercase kebab-case words starting `kv-`; anything
        // else is a message without one.
        let code = message.split_once(": ").and_then(|(code, _)| {
            (code.starts_with("kv-") && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
                .then(|| code.to_string())
        });
        Error::Other { code, message }
    }
}

impl From<store::Error> for Error {
    fn from(err: store::Error) -> Self {
        match err {
            store::Error::NoSuchStore => Error::NoSuchStore,
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::Other(message) => Error::parse(message),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str("no-such-store: the app does not link this store"),
            Error::AccessDenied => f.write_str("access-denied"),
            // The message already starts with its code.
            Error::Other { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// One page of [`Store::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// Pass to the next `list_keys` call; `None` after the last page.
    pub cursor: Option<u64>,
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens the store the app's tenant linked under `name`.
    pub fn open(name: &str) -> Result<Store, Error> {
        Ok(Store {
            bucket: store::open(name)?,
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        Ok(self.bucket.set(key, value)?)
    }

    /// Deleting an absent key succeeds.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// One page of the store's keys; start with `None` and pass the
    /// returned cursor until it is `None`. Each page counts as one
    /// operation against the request's limit.
    pub fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, Error> {
        let page = self.bucket.list_keys(cursor)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    /// Adds `delta` to the decimal number stored at `key` (an absent key
    /// counts from 0) and returns the new value; atomic across nodes.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Sets `key` to `value` if its current value is `expected` (`None`:
    /// the key must be absent). Returns whether it did; atomic across
    /// nodes.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, Error> {
        Ok(cas::compare_and_swap(&self.bucket, key, expected, value)?)
    }

    /// The values of `keys`, in order (`None` for an absent key).
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let found = batch::get_many(&self.bucket, &keys)?;
        Ok(found.into_iter().map(|e| e.map(|(_, v)| v)).collect())
    }

    /// Sets every pair in one write: all or none.
    pub fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), Error> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        Ok(batch::set_many(&self.bucket, &entries)?)
    }

    /// Deletes every key in one write: all or none.
    pub fn delete_many(&self, keys: &[&str]) -> Result<(), Error> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        Ok(batch::delete_many(&self.bucket, &keys)?)
    }
}
