//! `devcache pins`, `devcache unpin` and `devcache gc`: what is pinned, releasing it,
//! and trimming a cache to a disk budget once, on a data directory or in the running
//! cache container (where the same commands run against its volume).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::api::human_bytes;
use crate::config::{ServeConfig, ServeSettings, process_env};
use crate::stack::names::Project;
use crate::stack::{cache, engine};
use crate::store::eviction::Report;
use crate::store::{BlobKey, Store};
use crate::transfer::Cache;

/// `devcache pins`: each pin set with its files and bytes.
pub async fn pins(target: &Cache) -> Result<()> {
    match target {
        Cache::DataDir(dir) => {
            let store = open(dir)?;
            let sets = store.pin_sets();
            if sets.is_empty() {
                println!("nothing is pinned (`warm` and `import` pin what they bring in)");
            }
            for (name, set) in sets {
                let (files, bytes) = set
                    .keys
                    .iter()
                    .filter_map(|key| store.blob_size(key))
                    .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size));
                println!(
                    "{name}: {files} files cached ({}), {} pinned",
                    human_bytes(bytes),
                    set.keys.len()
                );
            }
            Ok(())
        }
        Cache::Container { project } => in_container(project, &["pins"]).await,
    }
}

/// `devcache unpin SET...` (or every set with `all`): eviction may remove their files.
pub async fn unpin(target: &Cache, sets: &[String], all: bool) -> Result<()> {
    if sets.is_empty() != all {
        bail!("name the pin sets to drop (`devcache pins` lists them), or give --all");
    }
    match target {
        Cache::DataDir(dir) => {
            let store = open(dir)?;
            let sets: Vec<String> = if all {
                store.pin_sets().into_keys().collect()
            } else {
                sets.to_vec()
            };
            let mut unknown = Vec::new();
            for set in &sets {
                if store.unpin(set)? {
                    println!("unpinned {set}: its files may now be evicted");
                } else {
                    unknown.push(set.as_str());
                }
            }
            if !unknown.is_empty() {
                bail!(
                    "no pin set {}; `devcache pins` lists them",
                    unknown.join(", ")
                );
            }
            Ok(())
        }
        Cache::Container { project } => {
            let mut args = vec!["unpin"];
            if all {
                args.push("--all");
            }
            args.extend(sets.iter().map(String::as_str));
            in_container(project, &args).await
        }
    }
}

/// `devcache gc`: the least recently used unpinned files removed until the cache fits
/// `max_size` (by default the budget the cache is configured with).
pub async fn gc(
    target: &Cache,
    max_size: Option<u64>,
    dry_run: bool,
    serve: ServeSettings,
) -> Result<()> {
    match target {
        Cache::DataDir(dir) => {
            let max_size = match max_size {
                Some(size) => size,
                None => ServeConfig::load(&serve, &process_env)?
                    .max_size
                    .value
                    .context("give a budget: devcache gc --max-size 20GiB (or set DEVCACHE_MAX_SIZE or max_size: in devcache.yml)")?,
            };
            let store = open(dir)?;
            let report = tokio::task::spawn_blocking(move || {
                let report = store.evict(max_size, dry_run);
                (report, names_of_files(&store))
            })
            .await?;
            print!("{}", describe(&report.0, &report.1, max_size, dry_run));
            Ok(())
        }
        Cache::Container { project } => {
            let max_size = match max_size {
                Some(size) => size,
                None => {
                    let docker = engine::connect().await?;
                    let cache = cache::serving(&docker, &Project::new(project)?).await?;
                    cache::wait_ready(cache.port).await?.max_size.context(
                        "the cache container has no budget: give one, devcache gc --max-size 20GiB",
                    )?
                }
            };
            let size = max_size.to_string();
            let mut args = vec!["gc", "--max-size", &size];
            if dry_run {
                args.push("--dry-run");
            }
            in_container(project, &args).await
        }
    }
}

fn open(dir: &Path) -> Result<Store> {
    if !dir.join("files").is_dir() {
        bail!(
            "{} is not a devcache data directory; give the one `serve` uses (--data-dir)",
            dir.display()
        );
    }
    Store::open(dir)
}

/// Runs the same command in the project's cache container and prints what it said.
async fn in_container(project: &str, args: &[&str]) -> Result<()> {
    let project = Project::new(project)?;
    let docker = engine::connect().await?;
    let cache = cache::serving(&docker, &project)
        .await
        .context("give --data-dir DIR, or start the cache container")?;
    let said = cache::run_devcache(&docker, &cache.name, args).await?;
    print!("{said}");
    Ok(())
}

/// The file names the cached pages give each key, for saying what was removed.
fn names_of_files(store: &Store) -> HashMap<BlobKey, String> {
    let mut names = HashMap::new();
    for project in store.page_names() {
        let Some(stored) = store.load_page(&project) else {
            continue;
        };
        for file in &stored.page.files {
            names.insert(BlobKey::for_file(file, false), file.filename.clone());
            let metadata = format!("{}.metadata", file.filename);
            if let Some(verified) = BlobKey::for_verified_metadata(file) {
                names.insert(verified, metadata.clone());
            }
            names.insert(BlobKey::for_file(file, true), metadata);
        }
    }
    names
}

fn describe(
    report: &Report,
    names: &HashMap<BlobKey, String>,
    max_size: u64,
    dry_run: bool,
) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for blob in &report.removed {
        let name = names
            .get(&blob.key)
            .map_or(blob.key.as_str(), String::as_str);
        out.push_str(&format!("{verb} {name} ({})\n", human_bytes(blob.size)));
    }
    out.push_str(&format!(
        "{verb} {} files ({}), least recently used first; kept {} pinned files ({})\n",
        report.removed.len(),
        human_bytes(report.removed_bytes),
        report.pinned_files,
        human_bytes(report.pinned_bytes),
    ));
    let fits = if report.bytes_after <= max_size {
        "within"
    } else {
        "still over (what is pinned does not fit; `devcache pins` lists it)"
    };
    out.push_str(&format!(
        "files {} {}: {fits} the budget of {}\n",
        if dry_run { "would be" } else { "now" },
        human_bytes(report.bytes_after),
        human_bytes(max_size)
    ));
    out
}
