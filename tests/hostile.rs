//! What a hostile upstream and a hostile client get: bodies that never end, files
//! longer than their pages say, half-sent requests, write methods. Wrong bytes are
//! never served as good, and nothing grows without bound.

mod support;

use reqwest::StatusCode;
use support::dists::blob;
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{Devcache, get, http};

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

    let got = fetch(&cache.file_url("longer", &dist)).await;
    assert!(
        got.is_err(),
        "a client got a complete answer ({} bytes) from an upstream that sent more than the page said",
        got.unwrap().len()
    );
    assert!(!cache.has_blob(&dist.sha256()));
    // The page's save, after its answer, is not the fill's temp file this looks for.
    support::wait_for("the page saved", || cache.has_page("longer"));
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

    let got = fetch(&cache.file_url("unsized", &dist)).await;
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

    let response = get(&format!("{}endless/", cache.index())).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.text().await.unwrap();
    assert!(body.contains("the page cap (--max-page-mib)"), "{body}");
}

/// Connects and sends half a request line, as a stalled or hostile client does.
async fn half_sent(cache: &Devcache) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = cache.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /root/pypi/+sim").await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_timed_out() {
    use tokio::io::AsyncReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = Devcache::start(
        &tmp.path().join("data"),
        &["--offline", "--client-timeout", "1"],
    );
    let mut stream = half_sent(&cache).await;
    // The server closes it (a bound on the wait, not a timing: the default is 30 s).
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut buffer),
    )
    .await;
    assert!(read.is_ok(), "a half-sent request was kept open");
    // The server still answers others.
    let status = get(&format!("{}/+status", cache.url)).await;
    assert_eq!(status.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_do_not_hold_the_stop_and_a_download_under_way_finishes() {
    use futures::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let dist = blob("slow-1.0.tar.gz", 512 * 1024);
    upstream.add("slow", dist.clone());
    // About 2 s of transfer: still under way when the stop comes.
    upstream.fault_file(
        &dist.filename,
        Some(Fault::SlowBody(
            32 * 1024,
            std::time::Duration::from_millis(120),
        )),
    );
    // A grace and a client timeout far longer than the test waits: only connections
    // with work may use the grace, and the half-sent ones are not timed out meanwhile.
    let mut cache = Devcache::start(
        &tmp.path().join("data"),
        &[
            "--upstream",
            &upstream.index_url(),
            "--stop-grace",
            "600",
            "--client-timeout",
            "600",
        ],
    );
    let mut streams = Vec::new();
    for _ in 0..300 {
        streams.push(half_sent(&cache).await);
    }
    // An idle keep-alive connection too.
    let client = http();
    let status = client
        .get(format!("{}/+status", cache.url))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    status.bytes().await.unwrap();

    let response = client
        .get(cache.file_url("slow", &dist))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut got = body.next().await.unwrap().unwrap().to_vec();
    let rest = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(got)
    });

    let (exited, cache) = tokio::task::spawn_blocking(move || {
        let exited = cache.terminate(std::time::Duration::from_secs(60));
        (exited, cache)
    })
    .await
    .unwrap();
    assert!(
        exited.is_some(),
        "still running 60 s after SIGTERM (its grace and client timeout are 600 s): idle or half-sent connections held the stop; log: {}",
        cache.log()
    );
    let got = rest.await.unwrap().expect("the download under way was cut");
    assert!(
        got == dist.bytes,
        "the download under way got {} bytes of {}",
        got.len(),
        dist.bytes.len()
    );
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_uploads_are_405_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Devcache::start(&tmp.path().join("data"), &["--offline"]);
    let file = format!(
        "{}/root/pypi/+f/x/{}/x-1.0.tar.gz",
        cache.url,
        "a".repeat(64)
    );
    let put = http().put(&file).body("bytes").send().await.unwrap();
    let upload = http()
        .post(format!("{}/root/pypi/", cache.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(":action=file_upload&name=x&version=1.0")
        .send()
        .await
        .unwrap();
    for response in [put, upload] {
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body = response.text().await.unwrap();
        assert!(body.contains("read-only cache"), "{body}");
        assert!(body.contains("upload packages to the upstream"), "{body}");
    }
}

#[test]
fn a_read_only_data_dir_and_a_bad_host_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for dir in ["pages", "files", "tmp"] {
        std::fs::create_dir_all(data.join(dir)).unwrap();
    }
    // Tests run as root, which writes through permission bits: a read-only bind mount,
    // in a mount namespace of its own, is what a read-only volume is.
    let binary = env!("CARGO_BIN_EXE_devcache");
    let script = format!(
        "mount --bind -o ro '{d}' '{d}' && exec timeout 20 '{binary}' serve --offline --port 0 --data-dir '{d}'",
        d = data.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a read-only data directory was served"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a writable --data-dir"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let out = support::devcache_command(tmp.path())
        .args(["serve", "--offline", "--host", "not a host", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a valid address"), "{stderr}");
    assert!(!stderr.contains("another cache"), "{stderr}");
}
