//! The body of every refusal.

use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`, with a fitting status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable and kebab-case (`not-found`, `storage-quota-exceeded`): what
    /// clients match on.
    pub code: String,
    /// One line for a person; may change between versions.
    pub message: String,
}
