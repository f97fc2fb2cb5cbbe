//! App secrets (write-only): set a value, list names and times, delete.
//! No body here ever carries a value back.

use serde::{Deserialize, Serialize};

/// `PUT /v1/apps/{app}/secrets/{name}`: the value, a UTF-8 string of at
/// most `edge_common::secrets::MAX_SECRET_VALUE_BYTES` bytes.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    pub value: String,
}

// The value never reaches a log line through `{:?}`.
impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret").finish_non_exhaustive()
    }
}

/// A secret as the API shows it: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub created_unix: u64,
    pub updated_unix: u64,
}

/// `GET /v1/apps/{app}/secrets`, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    pub secrets: Vec<Secret>,
}

/// The answer to `PUT /v1/apps/{app}/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSet {
    #[serde(flatten)]
    pub secret: Secret,
    /// The revision that carries it to nodes.
    pub revision: u64,
}
