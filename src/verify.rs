//! `devcache verify`: every cached file re-hashed against its name, in a data
//! directory or in the running cache container (where the same command runs against
//! its volume). Damaged files are moved aside and named; the command then exits
//! non-zero, and the next request for each file fetches it again.

use anyhow::{Context, Result, bail};

use crate::api::human_bytes;
use crate::stack::names::Project;
use crate::stack::{cache, engine, exec};
use crate::store::Store;
use crate::transfer::Cache;

/// `devcache verify`.
pub async fn verify(target: &Cache) -> Result<()> {
    match target {
        Cache::DataDir(dir) => {
            let store = Store::open(dir)?;
            let checked = tokio::task::spawn_blocking(move || store.verify()).await??;
            for damaged in &checked.damaged {
                println!(
                    "damaged: {} ({}); moved to {}",
                    damaged.path.display(),
                    damaged.why,
                    damaged.moved_to.display()
                );
            }
            let unchecked = match checked.unchecked {
                0 => String::new(),
                n => format!(", {n} listed without a sha256 left unchecked"),
            };
            println!(
                "checked {} files ({}) in {}{unchecked}",
                checked.files,
                human_bytes(checked.bytes),
                dir.display()
            );
            match checked.damaged.len() {
                0 => Ok(()),
                n => bail!(
                    "{n} damaged file(s) moved to quarantine; the next request for each fetches it again"
                ),
            }
        }
        Cache::Container { project } => {
            let project = Project::new(project)?;
            let docker = engine::connect().await?;
            let cache = cache::serving(&docker, &project)
                .await
                .context("give --data-dir DIR, or start the cache container")?;
            let cmd = ["/usr/local/bin/devcache", "verify", "--data-dir", "/data"];
            let ran = exec::run(&docker, &cache.name, &cmd).await?;
            print!("{}", ran.stdout);
            if ran.code != 0 {
                bail!("{}", ran.stderr.trim().trim_start_matches("devcache: "));
            }
            Ok(())
        }
    }
}
