//! Filling a cache with what requirement files pin, through the cache's own HTTP API:
//! the same path pip takes, so what is warmed is exactly what pip will ask for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use pep508_rs::pep440_rs::Version;
use url::Url;

use super::requirements::Pin;
use super::target::Target;
use crate::api::{INDEX_PATH, OUTCOME_HEADER, PIN_HEADER};
use crate::index::page::version_in_filename;
use crate::index::{DistFile, ProjectName, ProjectPage, json};
use crate::upstream::{Caps, read_capped};

/// What a warm-up did.
#[derive(Debug, Default)]
pub struct Summary {
    pub projects: usize,
    pub files: usize,
    pub fetched_bytes: u64,
    pub already_cached: usize,
    /// Pins the upstream cannot satisfy: `name==version (where): why`.
    pub not_found: Vec<String>,
    pub failed: Vec<String>,
}

/// Fetches, through the cache at `cache` (its root URL), the pages of the pinned
/// projects and the files of each pinned version that `target` installs, asking the
/// cache to record the files in the pin set `pin`. The cache may be any server the user
/// named (`--url`), so what it sends is capped as the upstream's answers are: pages at
/// `caps.page`, files at the size their page gives, else at `caps.file`.
pub async fn warm(
    cache: &Url,
    pins: &[Pin],
    target: &Target,
    jobs: usize,
    pin: Option<&str>,
    caps: Caps,
) -> anyhow::Result<Summary> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()?;
    let mut summary = Summary::default();

    let mut names: Vec<&ProjectName> = pins.iter().map(|p| &p.name).collect();
    names.sort();
    names.dedup();
    let pages: Vec<(ProjectName, Result<ProjectPage, String>)> = futures::stream::iter(names)
        .map(|name| {
            let client = &client;
            async move { (name.clone(), fetch_page(client, cache, name, caps).await) }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    summary.projects = pages.iter().filter(|(_, page)| page.is_ok()).count();

    // Each URL with the most that may be read of it.
    let mut wanted: Vec<(String, u64)> = Vec::new();
    let mut metadata: Vec<(String, u64)> = Vec::new();
    for pin in pins {
        let page = pages
            .iter()
            .find(|(name, _)| *name == pin.name)
            .map(|(_, page)| page);
        let shown = format!("{}=={} ({})", pin.name, pin.version, pin.origin);
        match page {
            Some(Ok(page)) => match select(page, pin, target) {
                Ok(files) => {
                    for file in files {
                        // Metadata the upstream serves (it has a hash); devcache derives
                        // the rest from the cached wheels when asked, offline too.
                        if file
                            .core_metadata
                            .as_ref()
                            .is_some_and(|m| m.sha256().is_some())
                        {
                            metadata.push((format!("{}.metadata", file.url), caps.file));
                        }
                        wanted.push((file.url.clone(), file.size.unwrap_or(caps.file)));
                    }
                }
                Err(why) => summary.not_found.push(format!("{shown}: {why}")),
            },
            Some(Err(why)) => summary.not_found.push(format!("{shown}: {why}")),
            None => {}
        }
    }
    wanted.sort();
    wanted.dedup();
    metadata.sort();
    metadata.dedup();

    let progress = ProgressBar::new((wanted.len() + metadata.len()) as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} warming [{bar:30}] {pos}/{len} files, {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let bytes = AtomicU64::new(0);
    // Distributions first, then their metadata, which the cache then reads from the
    // wheels it holds rather than from the upstream.
    let fetch_all = |urls: Vec<(String, u64)>| {
        let (client, progress, bytes) = (&client, &progress, &bytes);
        futures::stream::iter(urls)
            .map(move |(url, limit)| async move {
                let result = fetch_file(client, &url, limit, bytes, pin).await;
                progress.inc(1);
                progress.set_message(format!(
                    "{} fetched",
                    crate::api::human_bytes(bytes.load(Ordering::Relaxed))
                ));
                (url, result)
            })
            .buffer_unordered(jobs)
            .collect::<Vec<_>>()
    };
    let files = fetch_all(wanted).await;
    let metadata = fetch_all(metadata).await;
    progress.finish_and_clear();
    for (url, result) in files.into_iter().chain(metadata) {
        match result {
            Ok(was_cached) => {
                summary.files += 1;
                summary.already_cached += usize::from(was_cached);
            }
            Err(why) => summary.failed.push(format!("{url}: {why}")),
        }
    }
    summary.fetched_bytes = bytes.into_inner();
    Ok(summary)
}

async fn fetch_page(
    client: &reqwest::Client,
    cache: &Url,
    name: &ProjectName,
    caps: Caps,
) -> Result<ProjectPage, String> {
    let url = cache
        .join(&format!("{}{name}/", INDEX_PATH.trim_start_matches('/')))
        .map_err(|e| e.to_string())?;
    let response = client
        .get(url.clone())
        .header("Accept", json::CONTENT_TYPE)
        .send()
        .await
        .map_err(|e| format!("the cache does not answer: {e}"))?;
    match response.status() {
        reqwest::StatusCode::NOT_FOUND => return Err("no such project on the upstream".into()),
        status if !status.is_success() => return Err(format!("the cache answered {status}")),
        _ => {}
    }
    let body = read_capped(response, caps.page, "the page cap (DEVCACHE_MAX_PAGE_MIB)")
        .await
        .map_err(|e| e.to_string().replace("the upstream", "the cache"))?;
    json::parse(name.clone(), &body, &url).map_err(|e| format!("unreadable page: {e}"))
}

/// The files of the pinned version that the target installs: every compatible wheel,
/// else the sdists. Hashes from the requirement file narrow the choice.
fn select<'a>(
    page: &'a ProjectPage,
    pin: &Pin,
    target: &Target,
) -> Result<Vec<&'a DistFile>, String> {
    let of_version: Vec<&DistFile> = page
        .files
        .iter()
        .filter(|file| {
            version_in_filename(&page.name, &file.filename)
                .and_then(|v| v.parse::<Version>().ok())
                .is_some_and(|v| v == pin.version)
        })
        .filter(|file| {
            pin.sha256.is_empty() || file.sha256().is_some_and(|d| pin.sha256.contains(&d))
        })
        .collect();
    if of_version.is_empty() {
        return Err(if pin.sha256.is_empty() {
            "the upstream has no such version".into()
        } else {
            "no file of that version has one of the given hashes".into()
        });
    }
    let wheels: Vec<&DistFile> = of_version
        .iter()
        .copied()
        .filter(|f| target.accepts_wheel(&f.filename))
        .collect();
    if !wheels.is_empty() {
        return Ok(wheels);
    }
    let sdists: Vec<&DistFile> = of_version
        .into_iter()
        .filter(|f| !f.filename.ends_with(".whl"))
        .collect();
    if sdists.is_empty() {
        return Err(format!(
            "no wheel for Python {}.{} on {} and no sdist",
            target.python.0,
            target.python.1,
            target.platforms.join(", ")
        ));
    }
    Ok(sdists)
}

/// Reads a file through the cache, at most `limit` bytes of it; `true` when the cache
/// already had it.
async fn fetch_file(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
    bytes: &AtomicU64,
    pin: Option<&str>,
) -> Result<bool, String> {
    let mut request = client.get(url);
    if let Some(set) = pin {
        request = request.header(PIN_HEADER, set);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the cache answered {}", response.status()));
    }
    let was_cached = response
        .headers()
        .get(OUTCOME_HEADER)
        .is_some_and(|v| v == "hit");
    let mut body = response.bytes_stream();
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("download broke off: {e}"))?;
        read += chunk.len() as u64;
        if read > limit {
            return Err(format!(
                "the cache sent more than {limit} bytes (the size its page gives, else DEVCACHE_MAX_FILE_MIB); stopped there"
            ));
        }
        if !was_cached {
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(was_cached)
}
