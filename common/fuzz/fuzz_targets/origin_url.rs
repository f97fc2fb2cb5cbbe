//! Origin URLs as tenants write them (`parse_origin`): never a panic, and
//! what it accepts is a fixed point (nodes get one spelling of each).
#![no_main]

use edge_common::origin::parse_origin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    if let Ok(normalized) = parse_origin(url) {
        assert_eq!(
            parse_origin(&normalized).as_deref(),
            Ok(normalized.as_str())
        );
    }
});
