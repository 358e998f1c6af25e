//! A disk budget: the least recently used files go first when the cache is over
//! `--max-size`, never what `warm` pinned, in the same order after a restart, and
//! never from under a client still reading them.

mod support;

use std::time::Duration;

use support::dists::{Dist, blob};
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, assert_ok, devcache_command, get};

const SIZE: usize = 100_000;

/// An upstream with one 100 kB file in each of `projects`.
async fn upstream_of(projects: &[&str]) -> (TestUpstream, Vec<Dist>) {
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let mut dists = Vec::new();
    for (i, project) in projects.iter().enumerate() {
        // Sizes differ a little so that every file has its own bytes.
        let dist = blob(&format!("{project}-1.0.tar.gz"), SIZE + i);
        upstream.add(project, dist.clone());
        dists.push(dist);
    }
    (upstream, dists)
}

/// Downloads a file through the cache, checking its bytes, and waits until it is saved.
async fn download(cache: &Devcache, project: &str, dist: &Dist) {
    let url = format!(
        "{}/root/pypi/+f/{project}/{}/{}",
        cache.url,
        dist.sha256(),
        dist.filename
    );
    let response = get(&url).await;
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), dist.bytes);
    wait_until(cache, dist, true).await;
}

/// Waits (a few seconds at most) until the background eviction has removed `gone`.
async fn wait_until_evicted(cache: &Devcache, gone: &Dist) {
    wait_until(cache, gone, false).await;
}

/// Waits until `dist` is in the cache (`cached`) or not; a client may have every byte
/// of a file a moment before it is saved.
async fn wait_until(cache: &Devcache, dist: &Dist, cached: bool) {
    for _ in 0..200 {
        if cache.has_blob(&dist.sha256()) == cached {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} cached: {}; log:\n{}",
        dist.filename,
        !cached,
        cache.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_budget_the_cache_evicts_the_least_recently_used_and_never_what_was_warmed() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["offline", "alpha", "beta", "gamma", "delta"];
    let (upstream, dists) = upstream_of(&names).await;
    let [offline, alpha, beta, gamma, delta] = &dists[..] else {
        unreachable!()
    };
    // Room for three and a half files.
    let cache = Devcache::start(
        &tmp.path().join("data"),
        &["--upstream", &upstream.index_url(), "--max-size", "350kB"],
    );

    // The team's offline requirement is warmed first, so it is the oldest file.
    let reqs = tmp.path().join("offline.txt");
    std::fs::write(&reqs, "offline==1.0\n").unwrap();
    let out = devcache_command(tmp.path())
        .args(["warm", "-r", reqs.to_str().unwrap(), "--url", &cache.url])
        .output()
        .unwrap();
    assert_ok(&out, "devcache warm");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("pinned in warm-offline.txt"), "{said}");

    download(&cache, "alpha", alpha).await;
    download(&cache, "beta", beta).await;
    // alpha is used again: beta is now the least recently used unpinned file.
    download(&cache, "alpha", alpha).await;
    download(&cache, "gamma", gamma).await;
    wait_until_evicted(&cache, beta).await;
    for kept in [offline, alpha, gamma] {
        assert!(
            cache.has_blob(&kept.sha256()),
            "{} was evicted",
            kept.filename
        );
    }

    download(&cache, "delta", delta).await;
    wait_until_evicted(&cache, alpha).await;
    for kept in [offline, gamma, delta] {
        assert!(
            cache.has_blob(&kept.sha256()),
            "{} was evicted",
            kept.filename
        );
    }

    let status = cache.status().await;
    assert_eq!(status["max_size"], 350_000);
    assert_eq!(status["evictions"], 2);
    assert_eq!(status["pinned_files"], 1);
    assert_eq!(status["pinned_bytes"], offline.bytes.len() as u64);
    assert_eq!(status["files"], 3);
    let home = get(&format!("{}/", cache.url)).await;
    let home = home.text().await.unwrap();
    assert!(home.contains("of 341.8 KiB used"), "{home}");

    // An evicted file comes back from the upstream when asked for again.
    download(&cache, "beta", beta).await;

    // Once unpinned, the warmed file is evictable like the others.
    let on_data_dir = |args: &[&str]| {
        let out = devcache_command(tmp.path())
            .args(args)
            .arg("--data-dir")
            .arg(&cache.data_dir)
            .output()
            .unwrap();
        assert_ok(&out, &format!("devcache {args:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pins = on_data_dir(&["pins"]);
    assert!(
        pins.contains("warm-offline.txt: 1 files cached (97.7 KiB)"),
        "{pins}"
    );
    on_data_dir(&["unpin", "warm-offline.txt"]);
    assert!(on_data_dir(&["pins"]).contains("nothing is pinned"));
    download(&cache, "alpha", alpha).await;
    wait_until_evicted(&cache, offline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_order_in_which_files_were_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, dists) = upstream_of(&["alpha", "beta", "gamma"]).await;
    let [alpha, beta, gamma] = &dists[..] else {
        unreachable!()
    };
    let data = tmp.path().join("data");
    let mut cache = Devcache::start(&data, &["--upstream", &upstream.index_url()]);
    download(&cache, "alpha", alpha).await;
    download(&cache, "beta", beta).await;
    download(&cache, "gamma", gamma).await;
    download(&cache, "alpha", alpha).await;
    cache.kill9();

    // Restarted with room for two files: beta, used longest ago, goes.
    let cache = Devcache::start(
        &data,
        &["--upstream", &upstream.index_url(), "--max-size", "250kB"],
    );
    wait_until_evicted(&cache, beta).await;
    assert!(cache.has_blob(&alpha.sha256()));
    assert!(cache.has_blob(&gamma.sha256()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_a_file_that_gc_removes_gets_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let big = blob("big-1.0.tar.gz", 12 * 1024 * 1024);
    upstream.add("big", big.clone());
    let cache = Devcache::caching(tmp.path(), &upstream);
    download(&cache, "big", &big).await;

    let gc = |args: &[&str]| {
        devcache_command(tmp.path())
            .arg("gc")
            .args(args)
            .arg("--data-dir")
            .arg(&cache.data_dir)
            .output()
            .unwrap()
    };
    let out = gc(&["--max-size", "1MiB", "--dry-run"]);
    assert_ok(&out, "devcache gc --dry-run");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("would remove big-1.0.tar.gz (12.0 MiB)"),
        "{said}"
    );
    assert!(cache.has_blob(&big.sha256()));

    let url = format!(
        "{}/root/pypi/+f/big/{}/{}",
        cache.url,
        big.sha256(),
        big.filename
    );
    let mut response = get(&url).await;
    let mut received = response.chunk().await.unwrap().unwrap().to_vec();

    let out = gc(&["--max-size", "1MiB"]);
    assert_ok(&out, "devcache gc");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("removed big-1.0.tar.gz (12.0 MiB)"), "{said}");
    assert!(said.contains("kept 0 pinned files"), "{said}");
    assert!(!cache.has_blob(&big.sha256()));

    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert!(received == big.bytes, "the reader got other bytes");
}
