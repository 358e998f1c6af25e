//! `devcache serve` against a real upstream on 127.0.0.1, with real pip and uv.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use support::dists::{blob, wheel};
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{
    Devcache, JSON, assert_ok, devcache_command, get, get_bytes, get_json, get_range, get_text,
    http, installed_version, pip, pip_download, pip_install, uv, uv_install,
};

/// An upstream with `demo` 1.0 and 2.0 (2.0 needs `helper`) and `helper` 1.0.
async fn demo_upstream(format: PageFormat, links: Links) -> TestUpstream {
    let upstream = TestUpstream::start(format, links).await;
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", wheel("demo", "2.0", &["helper>=1.0"]));
    upstream.add("helper", wheel("helper", "1.0", &[]));
    upstream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_through_the_cache_and_files_are_fetched_once() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Html, Links::Relative).await;
    let cache = Devcache::caching(tmp.path(), &upstream);

    for round in 0..2 {
        let target = tmp.path().join(format!("site{round}"));
        let out = pip_install(tmp.path(), &cache, &target, "demo");
        assert_ok(&out, "pip install demo");
        assert_eq!(installed_version(&target, "demo"), "2.0");
        assert_eq!(installed_version(&target, "helper"), "1.0");
    }
    assert_eq!(upstream.requests("/files/demo-2.0-py3-none-any.whl"), 1);
    assert_eq!(upstream.requests("/files/helper-1.0-py3-none-any.whl"), 1);
    let status = cache.status().await;
    assert_eq!(status["projects"], 2);
    assert_eq!(
        status["files"], 4,
        "two wheels and their metadata: {status}"
    );
    assert!(status["hits"].as_u64().unwrap() >= 2, "{status}");
    // One line per request on stdout, naming the client and its installer; the
    // health checks' `/+status` only at debug.
    cache.status().await;
    let requests = cache.requests();
    assert!(
        requests
            .lines()
            .any(|l| l.contains("127.0.0.1 pip/") && l.contains("/root/pypi/+f/demo/")),
        "{requests}"
    );
    assert!(requests.contains(" miss"), "{requests}");
    assert!(!requests.contains("/+status"), "{requests}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_several_threads_serves_pip_and_uv_at_once_with_one_download_each() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Json, Links::Absolute).await;
    let upstream_url = upstream.index_url();
    let data = tmp.path().join("data");
    let cache = Devcache::start(&data, &["--upstream", &upstream_url, "--threads", "3"]);

    let home = tmp.path().to_path_buf();
    let installs: Vec<_> = (0..4)
        .map(|i| {
            let (home, index) = (home.join(format!("client{i}")), cache.index());
            std::thread::spawn(move || {
                std::fs::create_dir_all(&home).unwrap();
                let target = home.join("site");
                let target_arg = target.to_str().unwrap().to_string();
                let args = [
                    "install",
                    "--index-url",
                    &index,
                    "--target",
                    &target_arg,
                    "demo",
                ];
                let out = if i % 2 == 0 {
                    pip(&home, &args)
                } else {
                    uv(&home, &[&["pip"], &args[..]].concat())
                };
                assert_ok(&out, "an install through a server of three threads");
                assert_eq!(installed_version(&target, "demo"), "2.0");
            })
        })
        .collect();
    for install in installs {
        install.join().unwrap();
    }
    assert_eq!(upstream.requests("/files/demo-2.0-py3-none-any.whl"), 1);
    assert_eq!(upstream.requests("/files/helper-1.0-py3-none-any.whl"), 1);
    let config = devcache_command(tmp.path())
        .args(["config", "--upstream", &upstream_url, "--threads", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("threads") && l.contains('3') && l.contains("command line")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_installs_and_compiles_through_the_cache_using_core_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Json, Links::Absolute).await;
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
    // Resolution read the PEP 658 metadata, not the wheels.
    assert_eq!(
        upstream.requests("/files/demo-2.0-py3-none-any.whl.metadata"),
        1
    );
    assert_eq!(upstream.requests("/files/demo-2.0-py3-none-any.whl"), 0);

    let target = tmp.path().join("site");
    let out = uv_install(tmp.path(), &cache, &target, "demo==2.0");
    assert_ok(&out, "uv pip install");
    assert_eq!(installed_version(&target, "demo"), "2.0");
    assert_eq!(installed_version(&target, "helper"), "1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upstream_answers_json_clients_with_every_attribute() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Absolute).await;
    let mut yanked = wheel("demo", "1.0", &[]);
    yanked.yanked = Some("broken build".into());
    yanked.requires_python = Some(">=3.8,<4".into());
    upstream.add("demo", yanked.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);

    let response = http()
        .get(format!("{}demo/", cache.index()))
        .header("Accept", format!("{JSON}, text/html;q=0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], JSON);
    let page: serde_json::Value = response.json().await.unwrap();
    let file = &page["files"][0];
    assert_eq!(file["filename"], yanked.filename);
    assert_eq!(file["hashes"]["sha256"], yanked.sha256());
    assert_eq!(file["requires-python"], ">=3.8,<4");
    assert_eq!(file["yanked"], "broken build");
    assert!(file["core-metadata"]["sha256"].is_string(), "{file}");
    assert!(file.get("dist-info-metadata").is_none(), "PEP 714: {file}");
    let url = file["url"].as_str().unwrap();
    assert!(
        url.starts_with("/root/pypi/+f/demo/"),
        "file links point at devcache: {url}"
    );

    let bytes = get_bytes(&format!("{}{url}", cache.url)).await;
    assert_eq!(bytes.as_ref(), yanked.bytes.as_slice());
    let metadata = get(&format!("{}{url}.metadata", cache.url)).await;
    assert_eq!(metadata.status(), StatusCode::OK);
    assert_eq!(
        metadata.bytes().await.unwrap().as_ref(),
        yanked.metadata.as_deref().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_upstream_answers_html_clients_with_every_attribute() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let mut dist = wheel("demo", "1.0", &[]);
    dist.yanked = Some(String::new());
    upstream.add("demo", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);

    let response = get(&format!("{}demo/", cache.index())).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.unwrap();
    assert!(
        html.contains(&format!("#sha256={}", dist.sha256())),
        "{html}"
    );
    assert!(html.contains("data-requires-python=\"&gt;=3.7\""), "{html}");
    assert!(html.contains("data-yanked=\"\""), "{html}");
    assert!(html.contains("data-core-metadata=\"sha256="), "{html}");
    assert!(html.contains("data-dist-info-metadata=\"sha256="), "{html}");

    let json: serde_json::Value = get_json(&format!("{}demo/", cache.index())).await;
    assert_eq!(json["meta"]["api-version"], "1.1");
    assert_eq!(json["files"][0]["size"], dist.bytes.len());
    assert_eq!(
        json["files"][0]["upload-time"],
        "2024-05-01T12:00:00.000000Z"
    );
    assert_eq!(json["versions"], serde_json::json!(["1.0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_normalised_and_unknown_projects_are_404() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    upstream.add("zope-interface", wheel("zope-interface", "1.0", &[]));
    let cache = Devcache::caching(tmp.path(), &upstream);
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    for (path, location) in [
        (
            "/root/pypi/+simple/Zope.Interface/",
            "/root/pypi/+simple/zope-interface/",
        ),
        (
            "/root/pypi/+simple/zope_interface",
            "/root/pypi/+simple/zope-interface/",
        ),
        ("/simple/ZOPE--interface/", "/simple/zope-interface/"),
    ] {
        let response = client
            .get(format!("{}{path}", cache.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(response.headers()["location"], location, "{path}");
    }
    let page = client
        .get(format!("{}/simple/zope-interface/", cache.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let missing = client
        .get(format!("{}nothing-here/", cache.index()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let out = pip(
        tmp.path(),
        &[
            "download",
            "--no-deps",
            "--index-url",
            &cache.index(),
            "-d",
            tmp.path().join("dl").to_str().unwrap(),
            "nothing-here",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No matching distribution"));

    let index = get_text(&cache.index()).await;
    assert!(
        index.contains("zope-interface/"),
        "the root index lists cached projects: {index}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_never_escape_and_client_chosen_files_are_never_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Html, Links::Relative).await;
    let cache = Devcache::caching(tmp.path(), &upstream);
    std::fs::write(tmp.path().join("secret"), "do not serve").unwrap();
    let sha = "0".repeat(64);
    for path in [
        "/root/pypi/+simple/..%2f..%2fsecret/".to_string(),
        "/root/pypi/+simple/%2e%2e/".to_string(),
        "/root/pypi/+f/demo/..%2f..%2f..%2fsecret/x".to_string(),
        "/root/pypi/+f/%2e%2e/%2e%2e/secret".to_string(),
        format!("/root/pypi/+f/demo/{sha}/..%2f..%2f..%2fsecret"),
        format!("/root/pypi/+f/demo/{sha}/evil-1.0-py3-none-any.whl"),
        "/root/pypi/+f/demo/../../../secret".to_string(),
    ] {
        let response = get(&format!("{}{path}", cache.url)).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(!body.contains("do not serve"), "{path} leaked a file");
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let asked: Vec<_> = ["/files/evil-1.0-py3-none-any.whl", "/files/secret"]
        .iter()
        .map(|p| upstream.requests(p))
        .collect();
    assert_eq!(
        asked,
        vec![0, 0],
        "the upstream was asked for a file a client chose"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_after_warm_up_installs_from_the_cache_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = demo_upstream(PageFormat::Html, Links::Relative).await;
    let data = tmp.path().join("data");
    let mut cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    pip_download(tmp.path(), &cache, "demo");
    cache.kill9();
    upstream.stop().await;
    let before = upstream.total_requests();

    let cache = Devcache::start(&data, &["--offline"]);
    let target = tmp.path().join("site");
    let out = pip_install(tmp.path(), &cache, &target, "demo");
    assert_ok(&out, "offline pip install");
    assert_eq!(installed_version(&target, "demo"), "2.0");
    assert_eq!(upstream.total_requests(), before);
    let status = cache.status().await;
    assert_eq!(status["offline"], true);
    let uncached = get(&format!("{}never-seen/", cache.index())).await;
    assert_eq!(uncached.status(), StatusCode::NOT_FOUND);
    assert!(uncached.text().await.unwrap().contains("offline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pages_are_revalidated_and_served_when_the_upstream_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = demo_upstream(PageFormat::Json, Links::Relative).await;
    let cache = Devcache::revalidating(tmp.path(), &upstream);
    let page_url = format!("{}demo/", cache.index());
    pip_download(tmp.path(), &cache, "demo==1.0");
    let not_modified_before = upstream.not_modified_answers();
    let first = get_text(&page_url).await;

    // A stale page is revalidated with the upstream's ETag: a 304, same page.
    let second = get_text(&page_url).await;
    assert_eq!(upstream.not_modified_answers(), not_modified_before + 2);
    assert_eq!(first, second);

    // Clients get 304 for their own ETag too.
    let etag = get(&page_url).await.headers()["etag"].clone();
    let conditional = http()
        .get(&page_url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);

    // A stale page lists what the cache holds: demo 1.0, not 2.0, which only the
    // failing upstream could give.
    for fault in [
        Fault::Status(500),
        Fault::Status(503),
        Fault::SlowStart(Duration::from_secs(3)),
    ] {
        upstream.fault_pages(Some(fault.clone()));
        let response = get(&page_url).await;
        assert_eq!(response.status(), StatusCode::OK, "{fault:?}");
        let stale = response.text().await.unwrap();
        assert!(first.contains("demo-2.0"), "{first}");
        assert!(
            stale.contains("demo-1.0") && !stale.contains("demo-2.0"),
            "{fault:?}: {stale}"
        );
    }
    upstream.fault_pages(None);
    upstream.stop().await;
    let target = tmp.path().join("site");
    let out = pip_install(tmp.path(), &cache, &target, "demo==1.0");
    assert_ok(&out, "pip install while the upstream is down");
    let status = cache.status().await;
    assert_eq!(status["upstream_reachable"], false, "{status}");
    assert!(status["stale"].as_u64().unwrap() >= 4, "{status}");
    assert!(cache.log().contains("serving a stale page"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_of_a_cold_file_share_one_download() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let big = blob("big-1.0.tar.gz", 4 * 1024 * 1024);
    upstream.add("big", big.clone());
    upstream.fault_file(
        &big.filename,
        Some(Fault::SlowBody(256 * 1024, Duration::from_millis(20))),
    );
    let cache = Devcache::caching(tmp.path(), &upstream);
    let page: serde_json::Value = get_json(&format!("{}big/", cache.index())).await;
    let url = format!("{}{}", cache.url, page["files"][0]["url"].as_str().unwrap());

    let downloads = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get_bytes(&url).await })
    });
    for download in futures::future::join_all(downloads).await {
        assert!(
            download.unwrap().as_ref() == big.bytes.as_slice(),
            "a client got other bytes"
        );
    }
    assert_eq!(upstream.requests(&format!("/files/{}", big.filename)), 1);
    assert!(cache.has_blob(&big.sha256()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_truncated_bytes_are_never_published() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let dist = blob("bad-1.0.tar.gz", 1024 * 1024);
    upstream.add("bad", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let url = format!(
        "{}/root/pypi/+f/bad/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    );
    get(&format!("{}bad/", cache.index())).await;

    for fault in [Fault::WrongBytes, Fault::Truncate] {
        upstream.fault_file(&dist.filename, Some(fault.clone()));
        let result = match http().get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                response.bytes().await.map(|b| b.to_vec())
            }
            Ok(response) => Ok(format!("status {}", response.status()).into_bytes()),
            Err(e) => Err(e),
        };
        if let Ok(bytes) = &result {
            assert!(
                bytes != &dist.bytes,
                "{fault:?}: complete bytes with a bad download?"
            );
            assert!(
                bytes.starts_with(b"status 5") || bytes.len() < dist.bytes.len(),
                "{fault:?}: a client got a full-length body of wrong bytes"
            );
        }
        assert!(!cache.has_blob(&dist.sha256()), "{fault:?} was published");
        assert!(cache.temp_files().is_empty(), "{fault:?} left a temp file");
    }
    upstream.fault_file(&dist.filename, None);
    let good = get_bytes(&url).await;
    assert!(good.as_ref() == dist.bytes.as_slice());
    assert!(cache.published(&dist.sha256()).await);
    assert!(cache.log().contains("do not match its sha256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_head_and_validators_on_files() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let dist = blob("ranged-1.0.tar.gz", 100_000);
    upstream.add("ranged", dist.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    let url = format!(
        "{}/root/pypi/+f/ranged/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    );

    // Once cached, ranges, HEAD and validators are answered from the cache alone.
    let whole = get(&url).await;
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &dist.bytes[..]);
    let part = get_range(&url, "bytes=10-19").await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &dist.bytes[10..20]);

    let tail = get_range(&url, "bytes=-100").await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &dist.bytes[99_900..]);
    let beyond = get_range(&url, "bytes=200000-").await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let head = support::head(&url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    let etag = head.headers()["etag"].clone();
    assert!(head.headers().contains_key("last-modified"));
    let again = http()
        .get(&url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(upstream.requests(&format!("/files/{}", dist.filename)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_download_leaves_a_cache_the_next_start_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let dist = blob("large-1.0.tar.gz", 8 * 1024 * 1024);
    upstream.add("large", dist.clone());
    upstream.fault_file(
        &dist.filename,
        Some(Fault::SlowBody(128 * 1024, Duration::from_millis(50))),
    );
    let data = tmp.path().join("data");
    let mut cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    get(&format!("{}large/", cache.index())).await;
    let url = format!("/root/pypi/+f/large/{}/{}", dist.sha256(), dist.filename);

    let mut response = get(&format!("{}{url}", cache.url)).await;
    let mut received = 0;
    while received < 512 * 1024 {
        received += response.chunk().await.unwrap().expect("more bytes").len();
    }
    assert_eq!(
        cache.temp_files().len(),
        1,
        "the download is being written to tmp/"
    );
    cache.kill9();
    assert!(response.bytes().await.is_err() || received < dist.bytes.len());
    assert!(!cache.has_blob(&dist.sha256()));

    upstream.fault_file(&dist.filename, None);
    let cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    assert!(
        cache.temp_files().is_empty(),
        "leftover temp files are cleaned at start"
    );
    let page = get(&format!("{}large/", cache.index())).await;
    assert_eq!(page.status(), StatusCode::OK, "the cached page survived");
    let bytes = get_bytes(&format!("{}{url}", cache.url)).await;
    assert!(bytes.as_ref() == dist.bytes.as_slice());
    assert!(cache.has_blob(&dist.sha256()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_and_json_say_what_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = demo_upstream(PageFormat::Both, Links::Absolute).await;
    let cache = Devcache::caching(tmp.path(), &upstream);
    pip_download(tmp.path(), &cache, "demo");

    let status = cache.status().await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["upstream"], upstream.index_url());
    assert_eq!(status["upstream_reachable"], true);
    assert_eq!(status["projects"], 2);
    assert_eq!(
        status["files"],
        4,
        "two wheels and their metadata: {status}\n{}",
        cache.log()
    );
    assert!(status["bytes"].as_u64().unwrap() > 0);
    assert!(status["misses"].as_u64().unwrap() >= 4, "{status}");
    assert!(status["uptime_seconds"].is_u64());
    let client = &status["clients"][0];
    assert_eq!(client["address"], "127.0.0.1", "{status}");
    assert!(
        client["user_agent"].as_str().unwrap().starts_with("pip/"),
        "{status}"
    );
    assert!(
        client["misses"].as_u64().unwrap() >= 4 && client["bytes_fetched"].as_u64().unwrap() > 0,
        "{status}"
    );

    let home = get_text(&format!("{}/", cache.url)).await;
    assert!(
        home.contains("<a href=\"/root/pypi/+simple/demo/\">demo</a>"),
        "{home}"
    );
    assert!(home.contains("/root/pypi/+simple/"));
    assert!(home.contains("hit rate"));
    assert!(home.contains("<td>127.0.0.1</td><td>pip/"), "{home}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_behind_a_proxy_is_reached_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    // The test upstream answers absolute-form requests too, so it doubles as the proxy:
    // `index.invalid` resolves nowhere, and only a proxied request can reach it.
    let upstream = demo_upstream(PageFormat::Html, Links::Absolute).await;
    let proxy = format!("http://{}", upstream.addr);
    let cache = Devcache::start_with_env(
        &tmp.path().join("data"),
        &["--upstream", "http://index.invalid/simple/"],
        &[("HTTP_PROXY", &proxy), ("NO_PROXY", "")],
    );
    let target = tmp.path().join("site");
    let out = pip_install(tmp.path(), &cache, &target, "demo");
    assert_ok(&out, "pip install through a proxied upstream");
    assert_eq!(installed_version(&target, "demo"), "2.0");
    assert_eq!(upstream.requests("/files/demo-2.0-py3-none-any.whl"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_signed_by_a_private_ca_is_trusted_through_ssl_cert_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("corporate-ca.pem");
    let upstream = TestUpstream::start_tls(PageFormat::Json, Links::Relative, &ca_file).await;
    upstream.add("demo", wheel("demo", "1.0", &[]));

    // Without the CA, the upstream's certificate is refused.
    let untrusting = Devcache::start(
        &tmp.path().join("plain"),
        &["--upstream", &upstream.index_url()],
    );
    let refused = get(&format!("{}demo/", untrusting.index())).await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);

    let cache = Devcache::start_with_env(
        &tmp.path().join("data"),
        &["--upstream", &upstream.index_url()],
        &[("SSL_CERT_FILE", ca_file.to_str().unwrap())],
    );
    let target = tmp.path().join("site");
    let out = pip_install(tmp.path(), &cache, &target, "demo");
    assert_ok(&out, "pip install from an https upstream with a private CA");
    assert_eq!(installed_version(&target, "demo"), "1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_index_gets_its_password_with_every_request_and_never_sees_it_shown() {
    for links in [Links::Absolute, Links::Relative] {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = demo_upstream(PageFormat::Json, links).await;
        upstream.without_metadata();
        upstream.require_basic_auth("alice", "s3cret");
        let index = upstream
            .index_url()
            .replacen("http://", "http://alice:s3cret@", 1);
        let cache = Devcache::start(&tmp.path().join("data"), &["--upstream", &index]);

        // Pages, derived metadata (by ranges) and files all carry the credentials.
        let target = tmp.path().join("site");
        let out = pip_install(tmp.path(), &cache, &target, "demo");
        assert_ok(&out, "pip install from an index that needs a password");
        assert_eq!(installed_version(&target, "demo"), "2.0");
        let out = uv_install(tmp.path(), &cache, &tmp.path().join("uv-site"), "demo");
        assert_ok(&out, "uv pip install from an index that needs a password");

        // Shown everywhere as ****: the banner, `config`, /+status, the log.
        assert!(cache.banner.contains("alice:****@"), "{}", cache.banner);
        let status = get_text(&format!("{}/+status", cache.url)).await;
        let config = devcache_command(tmp.path())
            .args(["config", "--upstream", &index])
            .output()
            .unwrap();
        let config = String::from_utf8_lossy(&config.stdout).into_owned();
        assert!(config.contains("alice:****@"), "{config}");
        let bad = devcache_command(tmp.path())
            .args(["config", "--upstream", "http://alice:s3cret@[nope/simple/"])
            .output()
            .unwrap();
        let bad = String::from_utf8_lossy(&bad.stderr).into_owned();
        assert!(bad.contains("alice:****@"), "{bad}");
        for (what, text) in [
            ("banner", &cache.banner),
            ("/+status", &status),
            ("config", &config),
            ("an error", &bad),
            ("log", &cache.log()),
            ("request lines", &cache.requests()),
        ] {
            assert!(
                !text.contains("s3cret"),
                "{what} shows the password: {text}"
            );
        }
    }
}

#[test]
fn with_no_upstream_configured_it_uses_the_index_pip_would_by_pips_own_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let venv_bin = support::venv_tool("python").parent().unwrap().to_path_buf();
    let home = tmp.path();
    let write = |path: &std::path::Path, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // The upstream line of `devcache config` with `env` set.
    let upstream = |env: &[(&str, &str)]| {
        let out = devcache_command(home)
            .arg("config")
            .env("PATH", &venv_bin)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_ok(&out, "devcache config");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        said.lines()
            .find(|l| l.starts_with("upstream"))
            .unwrap()
            .to_string()
    };

    // A value continued on the next line, as pip reads it.
    let dot_pip = home.join(".pip/pip.conf");
    write(
        &dot_pip,
        "[global]\nindex-url =\n    http://continued.test/simple/\n",
    );
    let said = upstream(&[]);
    assert!(said.contains("http://continued.test/simple/"), "{said}");
    assert!(
        said.contains(&format!("pip config {}", dot_pip.display())),
        "{said}"
    );

    // [install] beats [global], across files too.
    let xdg = home.join(".config/pip/pip.conf");
    write(&xdg, "[install]\nindex-url = http://install.test/simple/\n");
    let said = upstream(&[]);
    assert!(said.contains("http://install.test/simple/"), "{said}");
    assert!(
        said.contains(&format!("pip config {}", xdg.display())),
        "{said}"
    );

    // PIP_CONFIG_FILE naming a file: the user's files are not read.
    let own = home.join("own.conf");
    write(&own, "[global]\nindex-url = http://own.test/simple/\n");
    let said = upstream(&[("PIP_CONFIG_FILE", own.to_str().unwrap())]);
    assert!(said.contains("http://own.test/simple/"), "{said}");
    assert!(
        said.contains(&format!("pip config {}", own.display())),
        "{said}"
    );

    // PIP_INDEX_URL beats every file.
    let said = upstream(&[("PIP_INDEX_URL", "http://variable.test/simple/")]);
    assert!(said.contains("http://variable.test/simple/"), "{said}");
    assert!(said.contains("(PIP_INDEX_URL)"), "{said}");
}

#[test]
fn the_readmes_own_pip_conf_does_not_make_devcache_its_own_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let venv_bin = support::venv_tool("python").parent().unwrap().to_path_buf();
    // The pip.conf "Point pip and uv at it" writes, on the host devcache runs on.
    let pip_conf = tmp.path().join(".config/pip/pip.conf");
    std::fs::create_dir_all(pip_conf.parent().unwrap()).unwrap();
    std::fs::write(
        &pip_conf,
        "[global]\nindex-url = http://localhost:3141/root/pypi/+simple/\n",
    )
    .unwrap();
    let config = |args: &[&str]| {
        devcache_command(tmp.path())
            .arg("config")
            .args(args)
            .env("PATH", &venv_bin)
            .output()
            .unwrap()
    };

    // Found in pip's configuration, it is passed over for pip's default index.
    let out = config(&[]);
    assert_ok(&out, "devcache config with pip.conf naming devcache");
    let said = String::from_utf8_lossy(&out.stdout);
    let upstream = said.lines().find(|l| l.starts_with("upstream")).unwrap();
    assert!(!upstream.contains("localhost:3141"), "{said}");
    assert!(upstream.contains("pip's default index"), "{said}");
    assert!(upstream.contains("names this devcache"), "{said}");

    // On another port, the same pip.conf names another server: it is the upstream.
    let out = config(&["--port", "3142"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("http://localhost:3141/root/pypi/+simple/"),
        "{said}"
    );

    // Given as the upstream, it is refused in one line.
    for given in [
        "http://localhost:3141/root/pypi/+simple/",
        "http://127.0.0.1:3141/simple/",
        "http://[::1]:3141/simple/",
    ] {
        let out = config(&["--upstream", given]);
        assert!(!out.status.success(), "{given} was taken");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is this devcache itself"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn with_no_upstream_configured_it_uses_the_local_pips_default_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let python = support::venv_tool("python");
    let venv_bin = python.parent().unwrap();
    // What pip itself says its default index is, asked another way than devcache does.
    let asked = std::process::Command::new(&python)
        .args([
            "-c",
            "from pip._internal.models.index import PyPI; print(PyPI.simple_url)",
        ])
        .output()
        .unwrap();
    let pips_default = String::from_utf8_lossy(&asked.stdout).trim().to_string();
    assert!(pips_default.starts_with("https://"), "{pips_default}");

    // PIP_CONFIG_FILE=/dev/null turns pip's configuration files off, as for pip.
    let out = devcache_command(tmp.path())
        .arg("config")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PATH", venv_bin)
        .output()
        .unwrap();
    assert_ok(&out, "devcache config with no upstream configured");
    let said = String::from_utf8_lossy(&out.stdout);
    let upstream = said.lines().find(|l| l.starts_with("upstream")).unwrap();
    assert!(
        upstream.contains(&format!("{}/", pips_default.trim_end_matches('/'))),
        "{said}"
    );
    assert!(upstream.contains("pip's default index"), "{said}");

    // With no pip at all, the error names the three ways to set one.
    let out = devcache_command(tmp.path())
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PATH", tmp.path().join("no-such-dir"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for way in [
        "--upstream",
        "DEVCACHE_UPSTREAM",
        "devcache.yml",
        "no local pip",
    ] {
        assert!(stderr.contains(way), "{stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_settings_and_a_taken_port_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // What `devcache` says on stderr when it refuses to start with these arguments.
    let refused = |args: &[&str]| {
        let out = devcache_command(tmp.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "devcache {args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused(&["serve", "--upstream", "ftp://nope/"]);
    assert!(
        stderr.contains("must be an http:// or https:// URL"),
        "{stderr}"
    );

    let upstream = "http://127.0.0.1:9/simple/";
    let stderr = refused(&["serve", "--upstream", upstream, "--threads", "0"]);
    assert!(stderr.contains("'0' for '--threads"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let stderr = refused(&[
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--upstream",
        upstream,
    ]);
    assert!(stderr.contains("pick another --port"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn config_shows_each_value_and_where_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("devcache.yml"),
        "upstream: http://from-file.test/simple/\nindex_ttl: 60\n",
    )
    .unwrap();
    let out = devcache_command(tmp.path())
        .args(["config", "--port", "4000"])
        .env("DEVCACHE_INDEX_TTL", "90")
        .output()
        .unwrap();
    assert_ok(&out, "devcache config");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("upstream ").contains("http://from-file.test/simple/")
            && line("upstream ").contains("devcache.yml"),
        "{text}"
    );
    assert!(
        line("port").contains("4000") && line("port").contains("command line"),
        "{text}"
    );
    assert!(
        line("index_ttl").contains("90s") && line("index_ttl").contains("DEVCACHE_INDEX_TTL"),
        "{text}"
    );
    assert!(line("host").contains("default"), "{text}");
}
