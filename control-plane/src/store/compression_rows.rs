//! Apps' compression at the edge (`PUT /v1/apps/{app}/compression`): two
//! nullable columns of `apps` (migration V8), the statement that sets them
//! and the conversions both backends share, as `cert_rows` does for the
//! HTTPS options next to them.

use edge_common::sync::AppCompression;

use super::cert_rows::{int, uint};

/// `$1`: tenant, `$2`: app, `$3`: enabled (NULL: the node's default),
/// `$4`: min bytes (NULL: the node's default), `$5`: revision.
pub(crate) const SET_APP_COMPRESSION: &str = "UPDATE apps SET compression_enabled = $3, \
     compression_min_bytes = $4, updated_revision = $5 WHERE tenant = $1 AND name = $2";

/// The columns' values of `compression`.
pub(crate) fn values(compression: &AppCompression) -> (Option<bool>, Option<i64>) {
    (compression.enabled, compression.min_bytes.map(int))
}

/// An app's compression from its columns.
pub(crate) fn from_columns(enabled: Option<bool>, min_bytes: Option<i64>) -> AppCompression {
    AppCompression {
        enabled,
        min_bytes: min_bytes.map(uint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip() {
        for compression in [
            AppCompression::default(),
            AppCompression {
                enabled: Some(false),
                min_bytes: Some(0),
            },
            AppCompression {
                enabled: Some(true),
                min_bytes: Some(1 << 30),
            },
        ] {
            let (enabled, min_bytes) = values(&compression);
            assert_eq!(from_columns(enabled, min_bytes), compression);
        }
        assert_eq!(
            crate::store::cert_rows::sqlite(SET_APP_COMPRESSION),
            "UPDATE apps SET compression_enabled = ?3, compression_min_bytes = ?4, \
             updated_revision = ?5 WHERE tenant = ?1 AND name = ?2"
        );
    }
}
