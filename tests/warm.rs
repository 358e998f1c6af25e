//! `devcache warm` against a real upstream, then pip installing offline from what it
//! fetched.

mod support;

use support::dists::{blob, wheel};
use support::upstream::{Fault, Links, PageFormat, TestUpstream};
use support::{Devcache, assert_ok, devcache_command, pip_install_args};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warmed_cache_installs_the_requirements_with_the_upstream_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let demo = wheel("demo", "2.0", &["helper"]);
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", demo.clone());
    upstream.add("helper", wheel("helper", "1.0", &[]));
    let mut native = wheel("fast", "1.0", &[]);
    native.filename = "fast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl".into();
    let mut other_python = native.clone();
    other_python.filename =
        "fast-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl".into();
    other_python.bytes.push(b'\n');
    upstream.add("fast", native.clone());
    upstream.add("fast", other_python.clone());
    let source_only = blob("plain-1.0.tar.gz", 2048);
    upstream.add("plain", source_only.clone());

    let reqs = tmp.path().join("requirements");
    std::fs::create_dir_all(&reqs).unwrap();
    std::fs::write(
        reqs.join("base.txt"),
        format!(
            "# what lms pins\n-r common.txt\n-c constraints.txt\n\
             demo==2.0 \\\n    --hash=sha256:{}\nhelper ; python_version >= \"3\"\n\
             ancient==1.0 ; python_version < \"3\"\nfast[speedups]==1.0\n",
            demo.sha256()
        ),
    )
    .unwrap();
    std::fs::write(reqs.join("common.txt"), "plain==1.0  # sdist only\n").unwrap();
    std::fs::write(reqs.join("constraints.txt"), "helper==1.0\nunused==3.0\n").unwrap();
    let base = reqs.join("base.txt");
    let data = tmp.path().join("data");

    let out = devcache_command(tmp.path())
        .args(["warm", "-r", base.to_str().unwrap(), "--python", "3.11"])
        .args([
            "--platform",
            "manylinux_2_28_x86_64",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--upstream", &upstream.index_url()])
        .output()
        .unwrap();
    assert_ok(&out, "devcache warm");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("4 projects"), "{said}");
    assert!(
        said.contains("excluded by their markers:") && said.contains("ancient==1.0"),
        "{said}"
    );
    let has = |sha: &str| data.join("files").join(&sha[..2]).join(sha).exists();
    assert!(
        has(&native.sha256()),
        "the wheel for this Python and platform"
    );
    assert!(
        !has(&other_python.sha256()),
        "not the wheel for another Python"
    );
    assert!(has(&source_only.sha256()), "the sdist when no wheel exists");
    assert!(has(&demo.sha256()));

    // Again: everything is already there.
    let again = devcache_command(tmp.path())
        .args([
            "warm",
            "-r",
            base.to_str().unwrap(),
            "--python",
            "3.11",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--upstream", &upstream.index_url()])
        .output()
        .unwrap();
    assert_ok(&again, "second warm");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 B fetched"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    upstream.stop().await;
    let before = upstream.total_requests();
    let cache = Devcache::start(&data, &["--offline"]);
    std::fs::write(
        reqs.join("install.txt"),
        "demo==2.0\nhelper==1.0\nfast==1.0\n",
    )
    .unwrap();
    let target = tmp.path().join("site");
    let out = pip_install_args(
        tmp.path(),
        &cache,
        &target,
        &["-r", reqs.join("install.txt").to_str().unwrap()],
    );
    assert_ok(&out, "pip install -r from the warmed cache, offline");
    assert!(
        target.join("demo").exists()
            && target.join("helper").exists()
            && target.join("fast").exists()
    );
    assert_eq!(upstream.total_requests(), before, "the upstream was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_named_and_missing_pins_fail_the_warm_up() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    upstream.add("demo", wheel("demo", "1.0", &[]));
    let req = tmp.path().join("req.txt");
    std::fs::write(&req, "demo==1.0\ndemo ===\ndemo==9.9\nnowhere==1.0\n").unwrap();
    let out = devcache_command(tmp.path())
        .args(["warm", "-r", req.to_str().unwrap(), "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--upstream", &upstream.index_url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("{}:2: ", req.display())), "{said}");
    assert!(
        said.contains("demo==9.9") && said.contains("no such version"),
        "{said}"
    );
    assert!(
        said.contains("nowhere==1.0") && said.contains("no such project"),
        "{said}"
    );
    assert!(
        said.contains("1 projects, 2 files"),
        "demo 1.0 and its metadata were still warmed: {said}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not with everything asked for"));
}

/// Lists a data directory's pages and files with their contents.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for sub in ["pages", "files", "tmp"] {
        let mut stack = vec![dir.join(sub)];
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    let name = entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .display()
                        .to_string();
                    all.push((name, std::fs::read(entry.path()).unwrap()));
                }
            }
        }
    }
    all.sort();
    all
}

fn devcache(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    devcache_command(home).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_seeds_another_cache_and_a_bad_one_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = TestUpstream::start(PageFormat::Html, Links::Relative).await;
    let demo = wheel("demo", "1.0", &["helper"]);
    upstream.add("demo", demo.clone());
    upstream.add("helper", wheel("helper", "1.0", &[]));
    let source = tmp.path().join("source");
    let req = tmp.path().join("req.txt");
    std::fs::write(&req, "demo==1.0\nhelper==1.0\n").unwrap();
    let out = devcache(
        tmp.path(),
        &[
            "warm",
            "-r",
            req.to_str().unwrap(),
            "--data-dir",
            source.to_str().unwrap(),
            "--upstream",
            &upstream.index_url(),
        ],
    );
    assert_ok(&out, "warm the source cache");
    upstream.stop().await;

    for name in ["bundle.tar.zst", "bundle.tar"] {
        let bundle = tmp.path().join(name);
        let out = devcache(
            tmp.path(),
            &[
                "export",
                bundle.to_str().unwrap(),
                "--data-dir",
                source.to_str().unwrap(),
            ],
        );
        assert_ok(&out, "export");
        assert!(String::from_utf8_lossy(&out.stdout).contains("exported 2 pages and 4 files"));
    }
    let compressed = std::fs::read(tmp.path().join("bundle.tar.zst")).unwrap();
    assert_eq!(
        &compressed[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "a .zst bundle is compressed"
    );

    // A fresh laptop: import, then pip installs with no upstream at all.
    let fresh = tmp.path().join("fresh");
    let out = devcache(
        tmp.path(),
        &[
            "import",
            tmp.path().join("bundle.tar.zst").to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "import");
    assert_eq!(snapshot(&fresh), snapshot(&source));
    let cache = Devcache::start(&fresh, &["--offline"]);
    let target = tmp.path().join("site");
    let out = pip_install_args(tmp.path(), &cache, &target, &["-r", req.to_str().unwrap()]);
    assert_ok(&out, "pip install -r from an imported bundle, offline");
    drop(cache);

    // One flipped byte in a file: refused, the entry named, and the cache untouched.
    let plain = std::fs::read(tmp.path().join("bundle.tar")).unwrap();
    let at = plain
        .windows(demo.bytes.len())
        .position(|w| w == demo.bytes.as_slice())
        .unwrap()
        + demo.bytes.len() / 2;
    let mut tampered = plain.clone();
    tampered[at] ^= 0x01;
    std::fs::write(tmp.path().join("tampered.tar"), &tampered).unwrap();
    std::fs::remove_file(
        fresh
            .join("files")
            .join(&demo.sha256()[..2])
            .join(demo.sha256()),
    )
    .unwrap();
    let before = snapshot(&fresh);
    let out = devcache(
        tmp.path(),
        &[
            "import",
            tmp.path().join("tampered.tar").to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "entry files/{}/{} is damaged",
            &demo.sha256()[..2],
            demo.sha256()
        )),
        "{said}"
    );
    assert_eq!(
        snapshot(&fresh),
        before,
        "a refused import changed the cache"
    );

    // Cut short: refused too.
    std::fs::write(tmp.path().join("short.tar"), &plain[..plain.len() / 2]).unwrap();
    let out = devcache(
        tmp.path(),
        &[
            "import",
            tmp.path().join("short.tar").to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&fresh), before);

    // The good bundle again puts back the missing file and leaves the rest.
    let out = devcache(
        tmp.path(),
        &[
            "import",
            tmp.path().join("bundle.tar").to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "import again");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already here"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(snapshot(&fresh), snapshot(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uv_lock_and_its_pylock_warm_by_hash_whatever_host_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upstream = TestUpstream::start(PageFormat::Json, Links::Relative).await;
    let demo = wheel("demo", "2.0", &["helper"]);
    let older = wheel("demo", "1.0", &[]);
    let helper = wheel("helper", "1.0", &[]);
    let windows_only = wheel("winonly", "1.0", &[]);
    for (project, dist) in [
        ("demo", &demo),
        ("demo", &older),
        ("helper", &helper),
        ("winonly", &windows_only),
    ] {
        upstream.add(project, dist.clone());
    }

    // A project locked by the real uv against the upstream, then moved to another
    // host, as a lock made against the public index names its own file host.
    let project = tmp.path().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        "[project]\nname = \"app\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
         dependencies = [\"demo==2.0\", \"winonly ; sys_platform == 'win32'\"]\n",
    )
    .unwrap();
    let in_project = |args: &[&str]| {
        let mut all = vec!["--directory", project.to_str().unwrap()];
        all.extend(args);
        assert_ok(
            &support::uv(&project, &all),
            &format!("uv {}", args.join(" ")),
        );
    };
    in_project(&["lock", "--default-index", &upstream.index_url()]);
    let upstream_root = upstream.index_url().replace("/simple/", "/");
    let locked = std::fs::read_to_string(project.join("uv.lock")).unwrap();
    assert!(locked.contains(&upstream_root), "{locked}");
    let elsewhere = locked.replace(&upstream_root, "https://files.example.invalid/");
    std::fs::write(project.join("uv.lock"), &elsewhere).unwrap();
    in_project(&[
        "export",
        "--frozen",
        "--format",
        "pylock.toml",
        "-o",
        "pylock.toml",
    ]);

    let data = tmp.path().join("data");
    let warm = |lock: &str| {
        devcache_command(tmp.path())
            .args(["warm", "--lock"])
            .arg(project.join(lock))
            .args(["--python", "3.11", "--data-dir", data.to_str().unwrap()])
            .args(["--upstream", &upstream.index_url()])
            .output()
            .unwrap()
    };
    let out = warm("uv.lock");
    assert_ok(&out, "devcache warm --lock uv.lock");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 projects"), "{said}");
    assert!(
        said.contains("excluded by their markers:") && said.contains("winonly==1.0"),
        "{said}"
    );
    let has = |sha: &str| data.join("files").join(&sha[..2]).join(sha).exists();
    assert!(has(&demo.sha256()) && has(&helper.sha256()));
    assert!(!has(&older.sha256()), "a version the lock does not pin");
    assert!(
        !has(&windows_only.sha256()),
        "a package for another platform"
    );

    let out = warm("pylock.toml");
    assert_ok(&out, "devcache warm --lock pylock.toml");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("2 projects") && said.contains("0 B fetched"),
        "{said}"
    );

    // A hash the upstream's files do not have: named, and the warm-up fails.
    let tampered = elsewhere.replace(&helper.sha256(), &"0".repeat(64));
    std::fs::write(project.join("uv.lock"), tampered).unwrap();
    let out = warm("uv.lock");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("helper==1.0")
            && said.contains("no file of that version has one of the given hashes"),
        "{said}"
    );
    std::fs::write(project.join("uv.lock"), &elsewhere).unwrap();

    // With the upstream gone, what the lock installs comes from the cache, checked
    // against the lock's hashes.
    upstream.stop().await;
    let before = upstream.total_requests();
    let cache = Devcache::start(&data, &["--offline"]);
    in_project(&[
        "export",
        "--frozen",
        "--no-emit-project",
        "-o",
        "requirements.txt",
    ]);
    let site = tmp.path().join("site");
    let out = support::uv(
        &project,
        &[
            "pip",
            "install",
            "--index-url",
            &cache.index(),
            "--target",
            site.to_str().unwrap(),
            "-r",
            project.join("requirements.txt").to_str().unwrap(),
        ],
    );
    assert_ok(&out, "uv pip install -r the lock's export, offline");
    assert_eq!(support::installed_version(&site, "demo"), "2.0");
    assert_eq!(support::installed_version(&site, "helper"), "1.0");
    assert_eq!(upstream.total_requests(), before, "the upstream was asked");
}

/// `warm --url` reads from a server the user named: a hostile one gets no more than
/// devcache's caps, an endless page stops at the page cap and a file longer than its
/// page says stops at that size, each reported, and warm ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_from_a_hostile_url_stops_at_the_caps() {
    let tmp = tempfile::tempdir().unwrap();
    // It stands in for a cache; its JSON pages give each file's size.
    let hostile = TestUpstream::start(PageFormat::Json, Links::Absolute).await;
    let dist = blob("longer-1.0.tar.gz", 4096);
    hostile.add("longer", dist.clone());
    hostile.fault_file(&dist.filename, Some(Fault::Endless(256 << 20)));
    let cache_url = hostile.index_url().replace("/simple/", "/");
    let req = tmp.path().join("requirements.txt");
    // Whether warm succeeded, and all it said.
    let warm = |req: &std::path::Path| {
        let out = devcache_command(tmp.path())
            .args(["warm", "-r", req.to_str().unwrap(), "--url", &cache_url])
            .env("DEVCACHE_MAX_PAGE_MIB", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    };

    std::fs::write(&req, "longer==1.0\n").unwrap();
    let (succeeded, said) = warm(&req);
    assert!(!succeeded, "{said}");
    assert!(said.contains("sent more than 4096 bytes"), "{said}");

    hostile.fault_pages(Some(Fault::Endless(256 << 20)));
    let (succeeded, said) = warm(&req);
    assert!(!succeeded, "{said}");
    assert!(
        said.contains("the page cap (DEVCACHE_MAX_PAGE_MIB)"),
        "{said}"
    );
}
