//! `[compression]`: compression at the edge, the node's defaults (an app
//! may override `enabled` and `min_bytes`). Used by `cache::compress`.

use serde::Deserialize;

use super::{ConfigError, invalid};
use edge_common::sync::MAX_COMPRESSION_MIN_BYTES;

/// A content coding the node can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Every coding, in the server's order of preference among equal
    /// q-values: brotli compresses text best, zstd is next and cheaper,
    /// gzip is what every client has.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// Its `Content-Encoding` token (and metrics label).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// Its place in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Coding::Br => 0,
            Coding::Zstd => 1,
            Coding::Gzip => 2,
        }
    }
}

/// `[compression]` in the node's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress compressible answers (text, JSON, JavaScript, XML, SVG,
    /// wasm, ...) for clients that accept one of `encodings`, unless the
    /// app turns it off. Default: true.
    pub enabled: bool,
    /// Answers with fewer bytes than this are sent as they are (compressing
    /// them costs more than it saves). An answer of unknown length is
    /// compressed as it streams. Default: 1024.
    pub min_bytes: u64,
    /// The codings offered, any of `"br"`, `"zstd"`, `"gzip"`. Among
    /// codings the client accepts with the same q-value the node prefers
    /// br, then zstd, then gzip, whatever the order here. Default: all three.
    pub encodings: Vec<Coding>,
    /// Answers compressed as they stream (misses, pass-throughs, hits on
    /// disk) whose declared length is above this are sent as they are:
    /// streamed compression runs on the request's own task, and a large
    /// body from disk would be compressed again on every hit. An answer of
    /// unknown length is compressed. Hits on memory are compressed once,
    /// into a kept copy, whatever their size. Default: 16 MiB.
    pub max_stream_bytes: u64,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_bytes: 1024,
            encodings: Coding::ALL.to_vec(),
            max_stream_bytes: 16 << 20,
        }
    }
}

impl CompressionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_bytes > MAX_COMPRESSION_MIN_BYTES {
            return Err(invalid(
                "compression.min_bytes",
                format!("must be at most {MAX_COMPRESSION_MIN_BYTES} (1 GiB)"),
            ));
        }
        for (i, coding) in self.encodings.iter().enumerate() {
            if self.encodings[..i].contains(coding) {
                return Err(invalid(
                    "compression.encodings",
                    format!("`{}` is listed twice", coding.token()),
                ));
            }
        }
        Ok(())
    }
}
