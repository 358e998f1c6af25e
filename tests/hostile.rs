//! What a hostile upstream and a hostile client get: bodies that never end, files
//! longer than their pages say, half-sent requests, write methods. Wrong bytes are
//! never served as good, and nothing grows without bound.

mod support;

use reqwest::StatusCode;
use support::dists::{Dist, blob};
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{Devcache, http};

/// A cold file's URL in the cache.
fn file_url(cache: &Devcache, project: &str, dist: &Dist) -> String {
    format!(
        "{}/root/pypi/+f/{project}/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    )
}

/// What a client gets for `url`: the body when it arrived whole, else why not.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = http().get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_longer_than_its_page_says_breaks_the_connection_at_that_size() {
    let tmp = tempfile::tempdir().unwrap();
    // JSON pages give each file's size.
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let dist = blob("longer-1.0.tar.gz", 65536);
    upstream.add("longer", dist.clone());
    upstream.fault_file(&dist.filename, Some(Fault::Endless(64 << 20)));
    let cache = Devcache::caching(tmp.path(), &upstream);

    let got = fetch(&file_url(&cache, "longer", &dist)).await;
    assert!(
        got.is_err(),
        "a client got a complete answer ({} bytes) from an upstream that sent more than the page said",
        got.unwrap().len()
    );
    assert!(!cache.has_blob(&dist.sha256()));
    assert!(cache.temp_files().is_empty(), "a temp file was left");
    assert!(
        cache
            .log()
            .contains("sent more than the 65536 bytes it announced"),
        "{}",
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_unknown_size_stops_at_the_file_cap() {
    let tmp = tempfile::tempdir().unwrap();
    // HTML pages give no size.
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let dist = blob("unsized-1.0.tar.gz", 1000);
    upstream.add("unsized", dist.clone());
    upstream.fault_file(&dist.filename, Some(Fault::Endless(64 << 20)));
    let cache = Devcache::start(
        &tmp.path().join("data"),
        &["--upstream", &upstream.index_url(), "--max-file-mib", "1"],
    );

    let got = fetch(&file_url(&cache, "unsized", &dist)).await;
    assert!(got.is_err(), "an endless file was answered whole");
    assert!(cache.temp_files().is_empty(), "a temp file was left");
    assert!(
        cache.log().contains("the file cap (--max-file-mib)"),
        "{}",
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_page_is_refused_at_the_page_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    upstream.add("endless", blob("endless-1.0.tar.gz", 100));
    upstream.fault_pages(Some(Fault::Endless(64 << 20)));
    let cache = Devcache::start_with_env(
        &tmp.path().join("data"),
        &["--upstream", &upstream.index_url()],
        &[("DEVCACHE_MAX_PAGE_MIB", "1")],
    );

    let response = http()
        .get(format!("{}endless/", cache.index()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.text().await.unwrap();
    assert!(body.contains("the page cap (--max-page-mib)"), "{body}");
}
