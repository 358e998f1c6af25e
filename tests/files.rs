//! Files that are only looked at: `HEAD` and `Range` requests of files the cache does
//! not hold are answered without downloading them; only a full `GET` fills the cache.

mod support;

use reqwest::StatusCode;
use support::dists::{blob, wheel, wheel_with, wheel_with_data};
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{
    Devcache, JSON, assert_ok, get, get_range, get_text_as, http, installed_version, pip,
    pip_install, uv,
};

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
    let head = support::head(&url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert_eq!(upstream.requests(&path), 0);

    // Ranges come from the upstream's ranges.
    let part = get_range(&url, "bytes=10-19").await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &dist.bytes[10..20]);
    let tail = get_range(&url, "bytes=-100").await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &dist.bytes[99_900..]);
    let beyond = get_range(&url, "bytes=200000-").await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(upstream.range_requests(&path), 3);
    assert_eq!(upstream.downloads(&path), 0);
    assert_eq!(cache.status().await["files"], 0, "nothing was stored");

    // A full GET fills the cache; later ranges come from it.
    let whole = get(&url).await;
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &dist.bytes[..]);
    let cached_part = get_range(&url, "bytes=0-9").await;
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
    let head = support::head(&file_url(&cache, "sizeless", &dist)).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "54321");
    let path = format!("/files/{}", dist.filename);
    assert_eq!(upstream.requests(&path), 1);
    assert_eq!(upstream.downloads(&path), 0);
    assert_eq!(cache.status().await["files"], 0);

    // An upstream that refuses HEAD: the file is described without a length.
    upstream.fault_file(&dist.filename, Some(Fault::Status(405)));
    let head = support::head(&file_url(&cache, "sizeless", &dist)).await;
    assert_eq!(head.status(), StatusCode::OK);
    // Not "0": the GET that follows sends the whole file.
    assert_eq!(head.headers().get("content-length"), None);
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

/// An upstream with `demo` 1.0 and 2.0 (2.0 needs `helper`) and `helper` 1.0, whose
/// pages offer no core metadata.
async fn upstream_without_metadata() -> TestUpstream {
    let upstream = TestUpstream::start(PageFormat::Json, Links::Absolute).await;
    upstream.without_metadata();
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", demo_2());
    upstream.add("helper", wheel("helper", "1.0", &[]));
    upstream
}

/// `pip install demo` through `cache` installs demo 2.0 and helper 1.0.
fn pip_installs_demo_2(home: &std::path::Path, cache: &Devcache) {
    let target = home.join("site");
    assert_ok(
        &pip_install(home, cache, &target, "demo"),
        "pip install demo",
    );
    assert_eq!(installed_version(&target, "demo"), "2.0");
    assert_eq!(installed_version(&target, "helper"), "1.0");
}

/// A wheel larger than the first ranged read of its end (16 KiB).
fn demo_2() -> support::dists::Dist {
    wheel_with_data("demo", "2.0", &["helper>=1.0"], 64 * 1024)
}

fn uv_compile(home: &std::path::Path, cache: &Devcache) -> String {
    let requirements = home.join("requirements.in");
    std::fs::write(&requirements, "demo\n").unwrap();
    let out = uv(
        home,
        &[
            "pip",
            "compile",
            "--no-cache",
            "--index-url",
            &cache.index(),
            requirements.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "uv pip compile");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolvers_get_core_metadata_for_wheels_the_upstream_gives_none_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = upstream_without_metadata().await;
    let cache = Devcache::caching(tmp.path(), &upstream);

    // The pages offer metadata for every wheel.
    let page = get_text_as(&format!("{}demo/", cache.index()), JSON).await;
    assert!(page.contains("\"core-metadata\":true"), "{page}");

    // uv and pip resolve from it; the upstream's wheels are read by ranges, never whole.
    let locked = uv_compile(tmp.path(), &cache);
    assert!(
        locked.contains("demo==2.0") && locked.contains("helper==1.0"),
        "{locked}"
    );
    let out = pip(
        tmp.path(),
        &[
            "install",
            "--dry-run",
            "--ignore-installed",
            "--index-url",
            &cache.index(),
            "demo",
        ],
    );
    assert_ok(&out, "pip install --dry-run demo");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("demo-2.0") && said.contains("helper-1.0"),
        "{said}"
    );
    // A larger wheel is read by ranges, never whole, and not stored.
    let demo = demo_2();
    let path = format!("/files/{}", demo.filename);
    assert_eq!(
        upstream.downloads(&path),
        0,
        "{} downloaded whole",
        demo.filename
    );
    assert!(
        upstream.range_requests(&path) > 0,
        "{} read by ranges",
        demo.filename
    );
    assert!(!cache.has_blob(&demo.sha256()), "{} stored", demo.filename);
    // A wheel no longer than the first ranged read would be is downloaded whole, once,
    // and kept, so installing it later needs no upstream.
    let helper = wheel("helper", "1.0", &[]);
    let path = format!("/files/{}", helper.filename);
    assert!(helper.bytes.len() < 16 * 1024);
    assert_eq!(
        upstream.downloads(&path),
        1,
        "{} downloaded whole",
        helper.filename
    );
    assert_eq!(
        upstream.range_requests(&path),
        0,
        "{} read by ranges",
        helper.filename
    );
    wait_for_blob(&cache, &helper).await;

    // The metadata is cached: resolving again needs no upstream.
    upstream.stop().await;
    let again = uv_compile(tmp.path(), &cache);
    assert_eq!(again, locked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_reading_metadata_from_an_upstream_without_any_gets_each_wheel_downloaded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_without_metadata().await;
    let cache = Devcache::caching(tmp.path(), &upstream);

    // pip reads each wheel's metadata, then downloads the wheel: the cache downloads
    // it once, for both, where ranges and a download would ask the upstream in turn.
    pip_installs_demo_2(tmp.path(), &cache);
    let demo = demo_2();
    assert!(demo.bytes.len() > 16 * 1024);
    for dist in [demo, wheel("helper", "1.0", &[])] {
        let path = format!("/files/{}", dist.filename);
        assert_eq!(upstream.downloads(&path), 1, "{} downloads", dist.filename);
        assert_eq!(
            upstream.range_requests(&path),
            0,
            "{} ranges",
            dist.filename
        );
        wait_for_blob(&cache, &dist).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ranges_either_the_wheel_is_downloaded_once_for_its_metadata_and_install() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_without_metadata().await;
    upstream.refuse_ranges();
    let cache = Devcache::caching(tmp.path(), &upstream);

    pip_installs_demo_2(tmp.path(), &cache);
    for dist in [demo_2(), wheel("helper", "1.0", &[])] {
        let path = format!("/files/{}", dist.filename);
        assert_eq!(upstream.downloads(&path), 1, "{}", dist.filename);
        wait_for_blob(&cache, &dist).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_wheel_read_whole_for_its_metadata_is_served_only_when_its_bytes_are_right() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = upstream_without_metadata().await;
    let cache = Devcache::caching(tmp.path(), &upstream);
    let helper = wheel("helper", "1.0", &[]);
    assert!(helper.bytes.len() < 16 * 1024);
    let (url, path) = (
        file_url(&cache, "helper", &helper),
        format!("/files/{}", helper.filename),
    );
    let metadata_url = format!("{url}.metadata");
    get(&format!("{}helper/", cache.index())).await;

    for fault in [Fault::WrongBytes, Fault::Truncate] {
        upstream.fault_file(&helper.filename, Some(fault.clone()));
        let answer = get(&metadata_url).await;
        assert!(
            answer.status().is_server_error(),
            "{fault:?}: metadata answered {}",
            answer.status()
        );
        let wheel_answer = get(&url).await;
        let bytes = wheel_answer.bytes().await.unwrap_or_default();
        assert_ne!(bytes.as_ref(), &helper.bytes[..], "{fault:?}: served whole");
        assert!(!cache.has_blob(&helper.sha256()), "{fault:?}: cached");
    }
    assert!(cache.log().contains("do not match its sha256"));

    // Right bytes: the metadata is the wheel's, and the wheel, read whole once for it,
    // is then served without the upstream, from memory or from disk.
    upstream.fault_file(&helper.filename, None);
    let before = upstream.downloads(&path);
    let answer = get(&metadata_url).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.bytes().await.unwrap().as_ref(),
        helper.metadata.as_deref().unwrap()
    );
    let whole = get(&url).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &helper.bytes[..]);
    assert_eq!(upstream.downloads(&path), before + 1);
    assert_eq!(upstream.range_requests(&path), 0);
    wait_for_blob(&cache, &helper).await;
    let again = get(&url).await;
    assert_eq!(again.bytes().await.unwrap().as_ref(), &helper.bytes[..]);
    assert_eq!(upstream.downloads(&path), before + 1);
}

/// Waits for `dist` to be in the cache: the last byte may reach a client just before
/// the file is published.
async fn wait_for_blob(cache: &Devcache, dist: &support::dists::Dist) {
    assert!(
        cache.published(&dist.sha256()).await,
        "{} cached",
        dist.filename
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_a_cached_wheel_answers_for_its_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = TestUpstream::start(PageFormat::Json, Links::Absolute).await;
    let demo = wheel("demo", "1.0", &[]);
    upstream.add("demo", demo.clone());
    let data = tmp.path().join("data");
    let mut cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    // The wheel alone is fetched (as a browser or curl would), not its metadata.
    let whole = get(&file_url(&cache, "demo", &demo)).await;
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &demo.bytes[..]);
    wait_for_blob(&cache, &demo).await;
    support::wait_for("the page saved", || cache.has_page("demo"));
    cache.kill9();
    upstream.stop().await;

    let cache = Devcache::start(&data, &["--offline"]);
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "offline pip install demo",
    );
    assert_eq!(installed_version(&target, "demo"), "1.0");
    let metadata = get(&format!("{}.metadata", file_url(&cache, "demo", &demo))).await;
    assert_eq!(metadata.status(), StatusCode::OK);
    assert_eq!(
        metadata.bytes().await.unwrap().as_ref(),
        demo.metadata.as_deref().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cached_file_is_served_whole_and_in_ranges_across_its_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    // Larger than the files mapped whole (8 MiB): read a MiB at a time.
    let dist = blob("large-1.0.tar.gz", 9 * 1024 * 1024 + 12_345);
    upstream.add("large", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let url = file_url(&cache, "large", &dist);

    let filled = get(&url).await;
    assert_eq!(filled.bytes().await.unwrap().as_ref(), &dist.bytes[..]);
    wait_for_blob(&cache, &dist).await;
    let cached = get(&url).await;
    assert_eq!(cached.headers()["x-devcache-cache"], "hit");
    assert_eq!(cached.bytes().await.unwrap().as_ref(), &dist.bytes[..]);
    let len = dist.bytes.len();
    for (range, start, end) in [
        ("bytes=1048000-3146000", 1_048_000, 3_146_001),
        ("bytes=-20000", len - 20_000, len),
        ("bytes=9437180-", 9_437_180, len),
    ] {
        let part = get_range(&url, range).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes {start}-{}/{len}", end - 1).as_str()
        );
        assert_eq!(
            part.bytes().await.unwrap().as_ref(),
            &dist.bytes[start..end],
            "{range}"
        );
    }
    let path = format!("/files/{}", dist.filename);
    assert_eq!(upstream.downloads(&path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_read_by_ranges_gives_way_to_the_wheels_own_once_the_wheel_is_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    upstream.without_metadata();
    let genuine = demo_2();
    // Ranges that read as another wheel of the same size, with another dependency.
    let (liar, other) = ('a'..='z')
        .flat_map(|c| ('a'..='z').map(move |d| format!("help{c}{d}")))
        .filter(|name| name != "helper")
        .find_map(|name| {
            let other = wheel_with_data("demo", "2.0", &[&format!("{name}>=1.0")], 64 * 1024);
            (other.bytes.len() == genuine.bytes.len()).then_some((name, other))
        })
        .expect("a wheel of the same size with another dependency");
    upstream.add("demo", genuine.clone());
    upstream.lie_in_ranges(&genuine.filename, other.bytes.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let metadata_url = format!("{}.metadata", file_url(&cache, "demo", &genuine));

    // Before the wheel is cached, only its ranges can be read: the zip's CRC-32 holds.
    let ranged = get(&metadata_url).await.text().await.unwrap();
    assert!(
        ranged.contains(&format!("Requires-Dist: {liar}>=1.0")),
        "{ranged}"
    );

    // The whole wheel is checked against its sha256 and cached; from then on its own
    // METADATA is the answer.
    let wheel = support::get_bytes(&file_url(&cache, "demo", &genuine)).await;
    assert_eq!(wheel.as_ref(), &genuine.bytes[..]);
    let mut answered = String::new();
    for _ in 0..50 {
        answered = get(&metadata_url).await.text().await.unwrap();
        if !answered.contains(&liar) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        answered.contains("Requires-Dist: helper>=1.0"),
        "{answered}"
    );
    assert!(!answered.contains(&liar), "{answered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wheel_whose_metadata_devcache_cannot_read_is_offered_without_it_and_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    upstream.without_metadata();
    // A valid wheel pip installs, whose METADATA (17 MiB of description) is over
    // devcache's 16 MiB cap.
    let huge = wheel_with(
        "huge",
        "1.0",
        &[],
        64 * 1024,
        &"long text\n".repeat(1_800_000),
    );
    upstream.add("huge", huge.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let page_url = format!("{}huge/", cache.index());
    assert!(get_text_as(&page_url, JSON).await.contains("core-metadata"));

    // Its central directory, read by ranges, says so: a 404, and no download.
    let metadata = get(&format!("{}.metadata", file_url(&cache, "huge", &huge))).await;
    assert_eq!(metadata.status(), StatusCode::NOT_FOUND);
    let path = format!("/files/{}", huge.filename);
    assert_eq!(upstream.downloads(&path), 0);

    // The page stops offering it, so clients download the wheel, and install it.
    let mut page = String::new();
    for _ in 0..50 {
        page = get_text_as(&page_url, JSON).await;
        if !page.contains("core-metadata") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!page.contains("core-metadata"), "{page}");
    let html = support::get_text(&page_url).await;
    assert!(!html.contains("data-core-metadata"), "{html}");
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "huge"),
        "pip install huge",
    );
    assert_eq!(installed_version(&target, "huge"), "1.0");
    let out = support::uv_install(tmp.path(), &cache, &tmp.path().join("uv-site"), "huge");
    assert_ok(&out, "uv pip install huge");
    assert!(
        cache.log().contains("the wheel's METADATA cannot be read"),
        "{}",
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_asking_at_once_for_one_wheels_metadata_share_one_read_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    upstream.without_metadata();
    let wheel = demo_2();
    upstream.add("demo", wheel.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    // The page first, so that the requests below meet at the metadata.
    get_text_as(&format!("{}demo/", cache.index()), JSON).await;

    let url = format!("{}.metadata", file_url(&cache, "demo", &wheel));
    let answers = futures::future::join_all((0..8).map(|_| async {
        let response = get(&url).await;
        (response.status(), response.text().await.unwrap())
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(body.contains("Requires-Dist: helper>=1.0"), "{body}");
    }
    // One derivation: the end of the zip, then (if it was not in that read) the member.
    let path = format!("/files/{}", wheel.filename);
    assert!(
        upstream.range_requests(&path) <= 2,
        "{}",
        upstream.range_requests(&path)
    );
    assert_eq!(upstream.downloads(&path), 0);
}
