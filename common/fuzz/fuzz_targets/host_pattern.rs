//! Hostnames and host patterns (`HostPattern`, `check_dns_name`): never a
//! panic; an exact pattern matches its own name, a wildcard never matches
//! its bare suffix, and overlap is symmetric.
#![no_main]

use edge_common::names::{HostPattern, check_dns_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (a, b) = input;
    let _ = check_dns_name(a);
    let (Ok(pa), Ok(pb)) = (
        HostPattern::try_from(a.to_string()),
        HostPattern::try_from(b.to_string()),
    ) else {
        return;
    };
    assert_eq!(pa.overlaps(&pb), pb.overlaps(&pa), "{pa:?} {pb:?}");
    match &pa {
        HostPattern::Exact(name) => assert!(pa.matches(name)),
        HostPattern::Wildcard(suffix) => assert!(!pa.matches(suffix)),
        HostPattern::Any => {}
    }
    if pa.matches(b) {
        assert!(pa.overlaps(&pb) || !matches!(pb, HostPattern::Exact(_)));
    }
});
