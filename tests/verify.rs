//! `devcache verify`: a file damaged on disk after it was cached is found, moved aside,
//! and fetched again by the next request, instead of being served wrong forever.

mod support;

use support::dists::blob;
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, devcache_command, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_damaged_on_disk_is_quarantined_and_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let dist = blob("rotting-1.0.tar.gz", 200_000);
    upstream.add("rotting", dist.clone());
    let url = |cache: &Devcache| cache.file_url("rotting", &dist);
    let data = tmp.path().join("data");
    let cache = Devcache::caching(tmp.path(), &upstream);
    let first = get(&url(&cache)).await;
    assert_eq!(first.bytes().await.unwrap().as_ref(), dist.bytes.as_slice());
    assert!(cache.published(&dist.sha256()).await);
    drop(cache);

    // Bit rot: one byte flipped in the cached file.
    let sha = dist.sha256();
    let stored = data.join("files").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&stored, &bytes).unwrap();

    let verify = || {
        devcache_command(tmp.path())
            .args(["verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = verify();
    let said = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "damage found, yet exit 0: {said}");
    assert!(
        said.contains(&format!("damaged: {}", stored.display())),
        "{said}"
    );
    assert!(said.contains("quarantine"), "{said}");
    assert!(stderr.contains("1 damaged file(s)"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stored.exists(), "the damaged file is still in place");
    assert!(data.join("quarantine").join(&sha).exists());

    // The next request fills it again, from the upstream.
    let cache = Devcache::caching(tmp.path(), &upstream);
    let again = get(&url(&cache)).await;
    assert_eq!(again.bytes().await.unwrap().as_ref(), dist.bytes.as_slice());
    assert_eq!(upstream.downloads(&format!("/files/{}", dist.filename)), 2);
    assert!(cache.published(&dist.sha256()).await);
    drop(cache);

    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked 1 files"));
}
