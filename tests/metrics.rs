//! `/metrics` as a dashboard reads it: Prometheus text that a real parser (the
//! `prometheus_client` Python package's) accepts, whose counters move as pip's
//! requests are answered.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use support::dists::blob;
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, get, prometheus_python};

/// Every sample, as `name{label="value",...}` (labels sorted) to its value.
type Samples = HashMap<String, f64>;

/// Reads `/metrics` and parses it with prometheus_client's OpenMetrics parser, which
/// refuses anything that is not valid exposition text.
async fn scrape(cache: &Devcache) -> Samples {
    let response = get(&format!("{}/metrics", cache.url)).await;
    assert!(response.status().is_success());
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    const PARSE: &str = "\
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))
        samples['%s{%s}' % (s.name, labels)] = s.value
print(json.dumps(samples))
";
    let mut child = Command::new(prometheus_python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(samples: &Samples, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", samples.keys()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_what_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let dist = blob("counted-1.0.tar.gz", 50_000);
    upstream.add("counted", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let before = scrape(&cache).await;

    let page = format!("{}counted/", cache.index());
    let file = format!(
        "{}/root/pypi/+f/counted/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    );
    for url in [&page, &page, &file, &file] {
        let response = get(url).await;
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
    }
    // The file is saved a moment after its last byte reaches the client.
    let mut after = scrape(&cache).await;
    for _ in 0..100 {
        if value(&after, "devcache_disk_files{}") >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&cache).await;
    }

    let moved = |key: &str| value(&after, key) - before.get(key).copied().unwrap_or(0.0);
    for (route, outcome) in [
        ("page", "miss"),
        ("page", "hit"),
        ("file", "miss"),
        ("file", "hit"),
    ] {
        let key = format!("devcache_requests_total{{outcome=\"{outcome}\",route=\"{route}\"}}");
        assert_eq!(moved(&key), 1.0, "{key}");
    }
    assert!(moved("devcache_requests_total{outcome=\"none\",route=\"metrics\"}") >= 1.0);
    let size = dist.bytes.len() as f64;
    assert!(moved("devcache_served_bytes_total{outcome=\"hit\"}") >= size);
    assert!(moved("devcache_served_bytes_total{outcome=\"miss\"}") >= size);
    assert!(moved("devcache_upstream_bytes_total{}") >= size);
    assert!(
        value(
            &after,
            "devcache_upstream_request_duration_seconds_count{request=\"page\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "devcache_upstream_request_duration_seconds_count{request=\"file\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(
            &after,
            "devcache_upstream_errors_total{error=\"transport\"}"
        ),
        0.0
    );
    assert_eq!(value(&after, "devcache_disk_files{}"), 1.0);
    assert_eq!(value(&after, "devcache_disk_bytes{}"), size);
    assert_eq!(value(&after, "devcache_pinned_bytes{}"), 0.0);
    assert_eq!(value(&after, "devcache_evictions_total{}"), 0.0);
    assert_eq!(value(&after, "devcache_fills_in_flight{}"), 0.0);
}
