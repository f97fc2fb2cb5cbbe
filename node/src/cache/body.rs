//! A stored response's body, wherever it is kept. Every reader goes
//! through these methods, so that a tier keeping bodies somewhere other
//! than memory (the disk tier) adds a variant here and nothing else in the
//! cache changes.

use std::ops::Range;

use bytes::Bytes;

use crate::body::{ResponseBody, full_body};

/// The body of a stored response.
#[derive(Debug, Clone)]
pub enum StoredBody {
    /// Held in memory whole.
    Memory(Bytes),
}

impl StoredBody {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            StoredBody::Memory(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes it holds in memory (what the memory tier's weight counts).
    pub fn memory_bytes(&self) -> usize {
        match self {
            StoredBody::Memory(bytes) => bytes.len(),
        }
    }

    /// The whole body, as a response body.
    pub fn full(&self) -> ResponseBody {
        match self {
            StoredBody::Memory(bytes) => full_body(bytes.clone()),
        }
    }

    /// The bytes in `range` (already checked against [`Self::len`]), as a
    /// response body.
    pub fn range(&self, range: Range<u64>) -> ResponseBody {
        match self {
            StoredBody::Memory(bytes) => {
                let end = (range.end as usize).min(bytes.len());
                let start = (range.start as usize).min(end);
                full_body(bytes.slice(start..end))
            }
        }
    }

    /// The whole body in memory, if it is held there (tests, and callers
    /// that must have all of it, such as compression).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            StoredBody::Memory(bytes) => Some(bytes),
        }
    }
}

impl From<Bytes> for StoredBody {
    fn from(bytes: Bytes) -> Self {
        StoredBody::Memory(bytes)
    }
}
