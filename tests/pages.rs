//! Index pages as clients receive them: each form with its own validator, gzip for
//! clients that ask, and, when the upstream cannot be asked, only what can be installed.

mod support;

use std::io::Read;

use reqwest::StatusCode;
use support::dists::{blob, wheel};
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{
    Devcache, JSON, assert_ok, get, get_text, get_text_as, http, installed_version, pip_download,
    pip_install, uv_install,
};

/// An upstream with `demo` 1.0 and 2.0 (2.0 needs `helper`) and `helper` 1.0.
async fn demo_upstream(format: PageFormat) -> TestUpstream {
    let upstream = TestUpstream::start(format, Links::Relative).await;
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", wheel("demo", "2.0", &["helper>=1.0"]));
    upstream.add("helper", wheel("helper", "1.0", &[]));
    upstream
}

/// A server in `<dir>/data` that cached demo 1.0 (and its page) from `upstream`,
/// started again `--offline` once the upstream is stopped.
async fn offline_with_demo_1(dir: &std::path::Path, upstream: &mut TestUpstream) -> Devcache {
    let mut cache = Devcache::caching(dir, upstream);
    pip_download(dir, &cache, "demo==1.0");
    support::wait_for("the page saved", || cache.has_page("demo"));
    cache.kill9();
    upstream.stop().await;
    Devcache::start(&dir.join("data"), &["--offline"])
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a gzip body");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_form_has_its_own_etag_and_gzip_is_sent_to_those_who_ask() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Both).await;
    let cache = Devcache::caching(tmp.path(), &upstream);
    let page_url = format!("{}demo/", cache.index());
    let get = |accept: &'static str, encoding: Option<&'static str>| {
        let mut request = http().get(&page_url).header("Accept", accept);
        if let Some(encoding) = encoding {
            request = request.header("Accept-Encoding", encoding);
        }
        request.send()
    };

    let html = get("text/html", None).await.unwrap();
    let json = get(JSON, None).await.unwrap();
    let json_gzip = get(JSON, Some("gzip, deflate")).await.unwrap();
    let vary = html.headers()["vary"].to_str().unwrap().to_string();
    assert!(
        vary.contains("Accept") && vary.contains("Accept-Encoding"),
        "{vary}"
    );
    let etags: Vec<String> = [&html, &json, &json_gzip]
        .iter()
        .map(|r| r.headers()["etag"].to_str().unwrap().to_string())
        .collect();
    assert!(
        etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
        "one ETag per representation: {etags:?}"
    );
    assert_eq!(json_gzip.headers()["content-encoding"], "gzip");
    assert!(json.headers().get("content-encoding").is_none());
    let plain = json.text().await.unwrap();
    assert_eq!(gunzip(&json_gzip.bytes().await.unwrap()), plain);

    // A validator of one form never confirms another.
    let html_etag = etags[0].clone();
    let json_etag = etags[1].clone();
    let confirmed = http()
        .get(&page_url)
        .header("Accept", JSON)
        .header("If-None-Match", &json_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::NOT_MODIFIED);
    let other_form = http()
        .get(&page_url)
        .header("Accept", JSON)
        .header("If-None-Match", &html_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other_form.status(), StatusCode::OK);
    assert_eq!(other_form.text().await.unwrap(), plain);

    // pip (which asks for gzip) installs through the compressed pages.
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "pip install demo",
    );
    assert_eq!(installed_version(&target, "demo"), "2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pages_list_only_what_the_cache_can_install() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = demo_upstream(PageFormat::Json).await;
    // Only demo 1.0 is cached; the upstream also has 2.0.
    let cache = offline_with_demo_1(tmp.path(), &mut upstream).await;
    let page = get_text_as(&format!("{}demo/", cache.index()), JSON).await;
    assert!(page.contains("demo-1.0-py3-none-any.whl"), "{page}");
    assert!(!page.contains("demo-2.0"), "{page}");
    let html = get_text(&format!("{}demo/", cache.index())).await;
    assert!(!html.contains("demo-2.0"), "{html}");

    // An unpinned install picks what is there, with pip and with uv.
    let target = tmp.path().join("pip-site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "offline pip install demo",
    );
    assert_eq!(installed_version(&target, "demo"), "1.0");
    let target = tmp.path().join("uv-site");
    let out = uv_install(tmp.path(), &cache, &target, "demo");
    assert_ok(&out, "offline uv pip install demo");
    assert_eq!(installed_version(&target, "demo"), "1.0");
    assert!(
        cache
            .log()
            .contains("devcache is offline: the page lists only the files the cache holds"),
        "the log says why: {}",
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_page_read_back_offline_lists_only_what_the_cache_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    // Long enough to be read back (over 256 KiB saved) and trimmed (over 500 files) off
    // the async workers.
    for i in 0..1_500 {
        upstream.add("long", blob(&format!("long-{i}.0.tar.gz"), 16 + i));
    }
    let data = tmp.path().join("data");
    let mut cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    let online = get_text(&format!("{}long/", cache.index())).await;
    assert!(online.contains("long-1499.0.tar.gz"), "every file online");
    // One file cached, as a browser or curl would fetch it.
    let kept = blob("long-7.0.tar.gz", 16 + 7);
    let fetched = get(&cache.file_url("long", &kept)).await;
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), &kept.bytes[..]);
    support::wait_for("the file saved", || cache.has_blob(&kept.sha256()));
    support::wait_for("the page saved", || cache.has_page("long"));
    cache.kill9();
    upstream.stop().await;

    let cache = Devcache::start(&data, &["--offline"]);
    for accept in [JSON, "text/html"] {
        let page = get_text_as(&format!("{}long/", cache.index()), accept).await;
        let listed = if accept == JSON {
            let page: serde_json::Value = serde_json::from_str(&page).unwrap();
            page["files"].as_array().map_or(0, Vec::len)
        } else {
            page.matches("</a>").count()
        };
        assert!(
            page.contains("long-7.0.tar.gz"),
            "the cached file, as {accept}"
        );
        assert_eq!(
            listed, 1,
            "only the cached file, as {accept}: {listed} listed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_upstream_down_stale_pages_list_only_cached_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = demo_upstream(PageFormat::Html).await;
    let cache = Devcache::revalidating(tmp.path(), &upstream);
    pip_download(tmp.path(), &cache, "demo==1.0");
    let page_url = format!("{}demo/", cache.index());
    let online = get_text(&page_url).await;
    assert!(online.contains("demo-2.0"), "online, every file: {online}");

    upstream.stop().await;
    let stale = get_text(&page_url).await;
    assert!(
        stale.contains("demo-1.0") && !stale.contains("demo-2.0"),
        "{stale}"
    );
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "pip install demo with the upstream down",
    );
    assert_eq!(installed_version(&target, "demo"), "1.0");
    assert!(
        cache
            .log()
            .contains("the upstream cannot be reached: the page lists only"),
        "{}",
        cache.log()
    );

    // Back online, the next revalidation lists everything again.
    upstream.listen().await;
    let back = get_text(&page_url).await;
    assert!(back.contains("demo-2.0"), "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_503_gets_pages_trimmed_even_before_they_go_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Json).await;
    // The default --index-ttl: the page stays fresh for the whole test.
    let cache = Devcache::start(
        &tmp.path().join("data"),
        &["--upstream", &upstream.index_url()],
    );
    pip_download(tmp.path(), &cache, "demo==1.0");

    // The upstream falls over: every page and every uncached file is a 503.
    upstream.fault_pages(Some(Fault::Status(503)));
    for dist in [
        wheel("demo", "2.0", &["helper>=1.0"]),
        wheel("helper", "1.0", &[]),
    ] {
        for name in [dist.filename.clone(), format!("{}.metadata", dist.filename)] {
            upstream.fault_file(&name, Some(Fault::Status(503)));
        }
    }
    // The fresh page still lists 2.0, so the first install may fail on it; it tells
    // devcache the upstream is failing, and from then on pages list what it holds.
    let target = tmp.path().join("site");
    let _ = pip_install(tmp.path(), &cache, &target, "demo");
    let page = get_text(&format!("{}demo/", cache.index())).await;
    assert!(
        page.contains("demo-1.0") && !page.contains("demo-2.0"),
        "{page}"
    );
    let out = pip_install(tmp.path(), &cache, &tmp.path().join("site2"), "demo");
    assert_ok(&out, "pip install demo with the upstream answering 503");
    assert_eq!(installed_version(&tmp.path().join("site2"), "demo"), "1.0");
    let status = cache.status().await;
    assert_eq!(status["upstream_reachable"], false, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_costs_the_timeout_once_not_on_every_page() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Html).await;
    let cache = Devcache::revalidating(tmp.path(), &upstream);
    pip_download(tmp.path(), &cache, "demo==1.0");

    // It takes connections and never answers in time.
    upstream.fault_pages(Some(Fault::SlowStart(std::time::Duration::from_secs(30))));
    let page_url = format!("{}demo/", cache.index());
    let asked = upstream.requests("/simple/demo/");
    let stale = get_text(&page_url).await;
    assert!(
        stale.contains("demo-1.0") && !stale.contains("demo-2.0"),
        "{stale}"
    );
    assert_eq!(upstream.requests("/simple/demo/"), asked + 1);

    // The next pages are answered from the cache without asking it again.
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "pip install demo with the upstream hanging",
    );
    assert_eq!(installed_version(&target, "demo"), "1.0");
    assert_eq!(get_text(&page_url).await, stale);
    assert_eq!(upstream.requests("/simple/demo/"), asked + 1);
    assert!(
        cache
            .log()
            .contains("the upstream ran out of time less than 30s ago"),
        "{}",
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_imported_beside_a_running_offline_server_shows_on_its_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = demo_upstream(PageFormat::Json).await;
    // A teammate's cache with demo 2.0 and helper, exported to a bundle.
    let teammate = Devcache::start(
        &tmp.path().join("teammate"),
        &["--upstream", &upstream.index_url()],
    );
    pip_download(tmp.path(), &teammate, "demo==2.0");
    support::wait_for("the pages saved", || {
        teammate.has_page("demo") && teammate.has_page("helper")
    });
    let bundle = tmp.path().join("team.tar.zst");
    let out = support::devcache_command(tmp.path())
        .arg("export")
        .arg(&bundle)
        .arg("--data-dir")
        .arg(&teammate.data_dir)
        .output()
        .unwrap();
    assert_ok(&out, "devcache export");

    // This cache has only demo 1.0, and serves offline.
    let cache = offline_with_demo_1(tmp.path(), &mut upstream).await;
    let data = cache.data_dir.clone();
    let page_url = format!("{}demo/", cache.index());
    assert!(!get_text(&page_url).await.contains("demo-2.0"));

    // Imported by another process while it runs: its pages list the new files.
    let out = support::devcache_command(tmp.path())
        .arg("import")
        .arg(&bundle)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_ok(&out, "devcache import beside the running server");
    let mut listed = false;
    for _ in 0..100 {
        if get_text(&page_url).await.contains("demo-2.0") {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(listed, "{}", get_text(&page_url).await);
    let target = tmp.path().join("site");
    assert_ok(
        &pip_install(tmp.path(), &cache, &target, "demo"),
        "offline pip install demo after the import",
    );
    assert_eq!(installed_version(&target, "demo"), "2.0");
}
