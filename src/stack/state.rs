//! What the user already said, remembered per project in a small file under the
//! user's state directory: which consumers are enabled or disabled, so `up` and
//! `watch` wire the same set again after containers are recreated, and the upstream
//! of the last `up`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::names::{self, DEFAULT_CONSUMERS, Project};
use crate::config::{file_config, process_env};
use crate::local_file;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Choices {
    /// The upstream the last `up` gave the cache, for the next `up` that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Services wired beyond the defaults.
    #[serde(default)]
    pub enabled: BTreeSet<String>,
    /// Services never to wire, defaults included.
    #[serde(default)]
    pub disabled: BTreeSet<String>,
    /// Services with locked installs, and their locks' file hosts (`enable --locked-installs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locked: BTreeMap<String, BTreeSet<String>>,
    /// Services devcache.yml names (`services:`): wired like the defaults.
    #[serde(skip)]
    configured: BTreeSet<String>,
}

impl Choices {
    /// The remembered choices, with the services devcache.yml (found as for `serve`,
    /// or at `config`) names.
    pub fn load(project: &Project, config: Option<&Path>) -> Result<Self> {
        let path = path(project)?;
        let mut choices: Self = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged; delete it to start afresh", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        // Files written before `studio` was the one name may say `cms`.
        choices.enabled = canonical(&choices.enabled);
        choices.disabled = canonical(&choices.disabled);
        let file = file_config(config, &process_env)?;
        for word in &file.services {
            let service = names::service(word).context("in devcache.yml `services:`")?;
            choices.configured.insert(service);
        }
        Ok(choices)
    }

    pub fn save(&self, project: &Project) -> Result<()> {
        let path = path(project)?;
        let dir = path.parent().expect("state path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // 0o666 less the umask, as `std::fs::write` made it.
        local_file::write_atomically(&path, &serde_json::to_vec_pretty(self)?, 0o666)
    }

    pub fn enable(&mut self, service: &str) {
        self.disabled.remove(service);
        self.enabled.insert(service.to_string());
    }

    pub fn disable(&mut self, service: &str) {
        self.enabled.remove(service);
        self.locked.remove(service);
        self.disabled.insert(service.to_string());
    }

    pub fn is_enabled(&self, service: &str) -> bool {
        !self.disabled.contains(service)
            && (self.enabled.contains(service)
                || self.configured.contains(service)
                || DEFAULT_CONSUMERS.contains(&service))
    }

    /// The services to wire: the defaults, the configured and the enabled ones, less the
    /// disabled.
    pub fn consumers(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = DEFAULT_CONSUMERS.iter().map(|s| s.to_string()).collect();
        all.extend(self.enabled.iter().cloned());
        all.extend(self.configured.iter().cloned());
        all.retain(|s| !self.disabled.contains(s));
        all.into_iter().collect()
    }
}

fn canonical(services: &BTreeSet<String>) -> BTreeSet<String> {
    services
        .iter()
        .map(|s| names::service(s).unwrap_or_else(|_| s.clone()))
        .collect()
}

fn path(project: &Project) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set: devcache has nowhere to remember enabled services")?;
    Ok(base
        .join("devcache")
        .join(format!("{}.json", project.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_wired_unless_disabled_and_more_can_be_enabled() {
        let mut choices = Choices::default();
        assert_eq!(choices.consumers(), vec!["lms", "studio"]);
        choices.disable("lms");
        choices.enable("ecommerce");
        assert_eq!(choices.consumers(), vec!["ecommerce", "studio"]);
        assert!(!choices.is_enabled("lms"));
        choices.enable("lms");
        assert!(choices.is_enabled("lms"));
    }
}
