//! Time to apply a purge with 1 million responses stored (issue 17's purge
//! index), against the cost of what a purge used to do in the same run:
//! walk every stored entry of every tenant.
//!
//! The store holds 1,000 apps of 1,000 small responses each. Measured, each
//! as the median of `ROUNDS` purges (what a purge removed is stored again
//! between rounds, untimed):
//!
//! - `walk`: one pass over a moka cache holding the same 1M keys, checking
//!   each key's app (the old purge's loop, without the removals);
//! - `key`: a hard purge by surrogate key that 100 responses of one app
//!   carry;
//! - `url`: a hard purge of one URL;
//! - `app`: a hard purge of one app's 1,000 responses.
//!
//!   cargo bench -p edge-node --bench purge

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use edge_common::sync::PurgeTarget;
use edge_node::internals::{CacheKey, EdgeCache, Entry, Received};
use http::{HeaderMap, HeaderValue, StatusCode};

const APPS: usize = 1_000;
const PER_APP: usize = 1_000;
const TAGGED: usize = 100;
const ROUNDS: usize = 21;

fn key(app: usize, i: usize) -> CacheKey {
    CacheKey::new(
        "tenant",
        &format!("app{app}"),
        "https",
        &format!("app{app}.test"),
        &format!("/item/{i}"),
    )
}

fn entry(i: usize) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    let tags = if i < TAGGED {
        format!("item-{i} hot")
    } else {
        format!("item-{i}")
    };
    headers.insert("surrogate-key", HeaderValue::from_str(&tags).expect("tags"));
    let now = SystemTime::now();
    Entry::new(
        StatusCode::OK,
        headers,
        Bytes::from_static(b"x"),
        Received {
            request_time: now,
            response_time: now,
        },
        &HeaderMap::new(),
    )
}

fn fill(cache: &EdgeCache, app: usize, items: impl Iterator<Item = usize>) {
    for i in items {
        cache.store.insert(key(app, i), entry(i));
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time_purge(
    cache: &EdgeCache,
    target: &PurgeTarget,
    expect: usize,
    refill: impl Fn(),
) -> Duration {
    let times = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let purged = cache.purge("tenant", "app7", target, false);
            let took = start.elapsed();
            assert_eq!(purged, expect, "{target:?}");
            refill();
            took
        })
        .collect();
    median(times)
}

fn main() {
    let config = toml::from_str::<edge_node::config::CacheConfig>("capacity_bytes = 8589934592")
        .expect("cache config");
    let cache = EdgeCache::new(&config, None);
    let started = Instant::now();
    for app in 0..APPS {
        fill(&cache, app, 0..PER_APP);
    }
    cache.store.run_maintenance();
    println!(
        "stored {} responses in {:.1?}",
        APPS * PER_APP,
        started.elapsed()
    );

    // The old purge's loop over the same keys.
    let walked: moka::sync::Cache<CacheKey, ()> = moka::sync::Cache::new(u64::MAX);
    for app in 0..APPS {
        for i in 0..PER_APP {
            walked.insert(key(app, i), ());
        }
    }
    walked.run_pending_tasks();
    let walk = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let mine = walked
                    .iter()
                    .filter(|(k, _)| k.is_app("tenant", "app7"))
                    .count();
                let took = start.elapsed();
                assert_eq!(mine, PER_APP);
                took
            })
            .collect(),
    );

    let by_key = time_purge(
        &cache,
        &PurgeTarget::Key { key: "hot".into() },
        TAGGED,
        || fill(&cache, 7, 0..TAGGED),
    );
    let by_url = time_purge(
        &cache,
        &PurgeTarget::Url {
            url: "https://app7.test/item/500".into(),
        },
        1,
        || fill(&cache, 7, 500..501),
    );
    let by_app = time_purge(&cache, &PurgeTarget::All, PER_APP, || {
        fill(&cache, 7, 0..PER_APP)
    });
    println!("| what (1M responses stored) | median | vs walk |");
    println!("|---|---:|---:|");
    let ratio = |d: Duration| walk.as_secs_f64() / d.as_secs_f64();
    println!("| walk of every entry (the old purge's loop) | {walk:.1?} | 1.00x |");
    for (what, took) in [
        ("purge by surrogate key (100 responses)", by_key),
        ("purge by URL (1 response)", by_url),
        ("purge of one app (1,000 responses)", by_app),
    ] {
        println!("| {what} | {took:.1?} | {:.0}x faster |", ratio(took));
    }
}
