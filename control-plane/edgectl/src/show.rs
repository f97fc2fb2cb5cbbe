//! How values are printed.

use std::time::{Duration, UNIX_EPOCH};

use edge_common::api::AppHttps;
use edge_common::names::HostPattern;

/// `bytes` in the largest binary unit that keeps it at or above 1.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How an origin app with `forward_override_headers` is shown (nothing
/// for the default).
pub fn forwarding_note(forward_override_headers: bool) -> &'static str {
    if forward_override_headers {
        " (forwarding override headers)"
    } else {
        ""
    }
}

pub fn join_hosts(hosts: &[HostPattern]) -> String {
    hosts
        .iter()
        .map(HostPattern::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Unix time as its UTC date, `2026-03-01`.
pub fn date(unix: u64) -> String {
    let mut text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string();
    text.truncate(10);
    text
}

/// An app's HTTPS options in a few words.
pub fn https_summary(https: &AppHttps) -> String {
    format!(
        "redirect to https {}, hsts {}",
        if https.redirect { "on" } else { "off" },
        https.hsts.as_deref().unwrap_or("off")
    )
}

/// A number the API may leave out, printed as its JSON (`null` when
/// absent), as edgectl always has.
pub fn or_null(value: Option<u64>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_bytes(5_000_000_000), "4.7 GiB");
        assert_eq!(human_bytes(12_897_484), "12.3 MiB");
    }

    #[test]
    fn hosts_and_absent_numbers_print_as_before() {
        let hosts: Vec<HostPattern> = ["web.test", "*.web.test"]
            .into_iter()
            .filter_map(|h| HostPattern::try_from(h.to_string()).ok())
            .collect();
        assert_eq!(join_hosts(&hosts), "web.test, *.web.test");
        assert_eq!(or_null(None), "null");
        assert_eq!(or_null(Some(3)), "3");
    }

    #[test]
    fn dates_and_https_options_print_briefly() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_772_323_200), "2026-03-01");
        assert_eq!(
            https_summary(&AppHttps::default()),
            "redirect to https off, hsts off"
        );
        let https = AppHttps {
            redirect: true,
            hsts: Some("max-age=60".into()),
        };
        assert_eq!(
            https_summary(&https),
            "redirect to https on, hsts max-age=60"
        );
    }
}
