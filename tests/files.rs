//! Files that are only looked at: `HEAD` and `Range` requests of files the cache does
//! not hold are answered without downloading them; only a full `GET` fills the cache.

mod support;

use reqwest::StatusCode;
use support::dists::{blob, wheel};
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, assert_ok, http, uv};

/// A cold file's URL in the cache.
fn file_url(cache: &Devcache, project: &str, dist: &support::dists::Dist) -> String {
    format!(
        "{}/root/pypi/+f/{project}/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_ranges_of_an_uncached_file_download_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let dist = blob("ranged-1.0.tar.gz", 100_000);
    upstream.add("ranged", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let url = file_url(&cache, "ranged", &dist);
    let path = format!("/files/{}", dist.filename);

    // HEAD is answered from the page's size: the upstream is not asked for the file.
    let head = http().head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert_eq!(upstream.requests(&path), 0);

    // Ranges come from the upstream's ranges.
    let part = http()
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &dist.bytes[10..20]);
    let tail = http()
        .get(&url)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &dist.bytes[99_900..]);
    let beyond = http()
        .get(&url)
        .header("Range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(upstream.range_requests(&path), 3);
    assert_eq!(upstream.downloads(&path), 0);
    assert_eq!(cache.status().await["files"], 0, "nothing was stored");

    // A full GET fills the cache; later ranges come from it.
    let whole = http().get(&url).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &dist.bytes[..]);
    let cached_part = http()
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cached_part.bytes().await.unwrap().as_ref(),
        &dist.bytes[..10]
    );
    assert_eq!(upstream.downloads(&path), 1);
    assert_eq!(upstream.range_requests(&path), 3);
    assert_eq!(cache.status().await["files"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_file_whose_page_gives_no_size_asks_the_upstream_head() {
    let tmp = tempfile::tempdir().unwrap();
    // HTML pages carry no sizes.
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let dist = blob("sizeless-1.0.tar.gz", 54_321);
    upstream.add("sizeless", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let head = http()
        .head(file_url(&cache, "sizeless", &dist))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "54321");
    let path = format!("/files/{}", dist.filename);
    assert_eq!(upstream.requests(&path), 1);
    assert_eq!(upstream.downloads(&path), 0);
    assert_eq!(cache.status().await["files"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_ranges_has_the_file_filled_once_and_ranges_served_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    upstream.refuse_ranges();
    let dist = blob("whole-1.0.tar.gz", 100_000);
    upstream.add("whole", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let url = file_url(&cache, "whole", &dist);

    for (range, expected) in [
        ("bytes=10-19", &dist.bytes[10..20]),
        ("bytes=-5", &dist.bytes[99_995..]),
    ] {
        let part = http()
            .get(&url)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(part.bytes().await.unwrap().as_ref(), expected, "{range}");
    }
    // One answer in whole was cut off in favour of a fill; the second range is a hit.
    let path = format!("/files/{}", dist.filename);
    assert_eq!(upstream.requests(&path), 2);
    assert_eq!(cache.status().await["files"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_resolves_against_an_upstream_without_metadata_reading_only_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Absolute).await;
    upstream.without_metadata();
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", wheel("demo", "2.0", &["helper>=1.0"]));
    upstream.add("helper", wheel("helper", "1.0", &[]));
    let cache = Devcache::caching(tmp.path(), &upstream);

    std::fs::write(tmp.path().join("requirements.in"), "demo\n").unwrap();
    let out = uv(
        tmp.path(),
        &[
            "pip",
            "compile",
            "--index-url",
            &cache.index(),
            tmp.path().join("requirements.in").to_str().unwrap(),
        ],
    );
    assert_ok(&out, "uv pip compile");
    let locked = String::from_utf8_lossy(&out.stdout);
    assert!(
        locked.contains("demo==2.0") && locked.contains("helper==1.0"),
        "{locked}"
    );
    for wheel in ["demo-2.0-py3-none-any.whl", "helper-1.0-py3-none-any.whl"] {
        let path = format!("/files/{wheel}");
        assert_eq!(
            upstream.downloads(&path),
            0,
            "{wheel} was not downloaded whole"
        );
    }
    assert_eq!(
        cache.status().await["files"],
        0,
        "a resolution stores nothing"
    );
}
