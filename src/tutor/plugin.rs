//! The Tutor plugin devcache writes: its settings (Tutor config keys `DEVCACHE_*`, so
//! `tutor config save --set DEVCACHE_HOST=...` overrides them), its patches, and the
//! folder Tutor discovers YAML plugins in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::api::INDEX_PATH;

/// The plugin's name: Tutor's config keys are `DEVCACHE_<KEY>`.
pub const NAME: &str = "devcache";

/// The first line of the plugin file, by which devcache knows its own file.
pub const MARKER: &str = "# Written by devcache";

/// What the plugin points Tutor at.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The host builds and containers reach the cache's published port on.
    pub host: String,
    /// The published port.
    pub port: u16,
    /// The index the cache caches, and the one uv falls back to.
    pub upstream: String,
    /// The image the `devcache` service runs.
    pub image: String,
}

/// A Tutor YAML plugin (Tutor's v0 "dict" plugin: name, version, config, patches).
#[derive(Serialize)]
struct PluginFile {
    name: &'static str,
    version: &'static str,
    config: Config,
    patches: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct Config {
    defaults: BTreeMap<&'static str, serde_yaml::Value>,
}

/// The `uv` wrapper: through the cache when its port answers, else straight from the
/// upstream, saying so. Tutor's builds install with `uv pip` (its `PIP_COMMAND`), so
/// this is the failover of image builds. Each line is one shell word in single quotes.
const UV_WRAPPER: &[&str] = &[
    "#!/bin/bash",
    "# Written by devcache: uv through the cache when it answers, else from the upstream.",
    "if ! timeout 3 bash -c \"exec 3<>/dev/tcp/$DEVCACHE_HOST/$DEVCACHE_PORT\" 2>/dev/null; then",
    "  echo \"devcache: the cache at $DEVCACHE_HOST:$DEVCACHE_PORT does not answer; uv installs from $DEVCACHE_UPSTREAM (start it: tutor dev start devcache)\" >&2",
    "  export UV_DEFAULT_INDEX=\"$DEVCACHE_UPSTREAM\"",
    "fi",
    "exec /usr/local/bin/uv-devcache \"$@\"",
];

impl Settings {
    /// The plugin file's text.
    pub fn render(&self) -> Result<String> {
        let index = format!("http://{{{{ DEVCACHE_HOST }}}}:{{{{ DEVCACHE_PORT }}}}{INDEX_PATH}");
        let wrapper: Vec<String> = UV_WRAPPER.iter().map(|l| format!("    '{l}'")).collect();
        let dockerfile = format!(
            "# devcache: pip and uv install through the cache (devcache tutor disable removes this)\n\
             ENV DEVCACHE_HOST={{{{ DEVCACHE_HOST }}}} DEVCACHE_PORT={{{{ DEVCACHE_PORT }}}} \
             DEVCACHE_UPSTREAM={{{{ DEVCACHE_UPSTREAM }}}}\n\
             ENV PIP_INDEX_URL={index} PIP_TRUSTED_HOST={{{{ DEVCACHE_HOST }}}} UV_DEFAULT_INDEX={index}\n\
             RUN if [ -x /usr/local/bin/uv ]; then mv /usr/local/bin/uv /usr/local/bin/uv-devcache && \\\n\
             \x20   printf '%s\\n' \\\n{} \\\n\
             \x20   > /usr/local/bin/uv && chmod 755 /usr/local/bin/uv; fi",
            wrapper.join(" \\\n")
        );
        let service = "devcache:\n  \
             image: {{ DEVCACHE_IMAGE }}\n  \
             restart: unless-stopped\n  \
             environment:\n    \
             DEVCACHE_UPSTREAM: \"{{ DEVCACHE_UPSTREAM }}\"\n  \
             ports:\n    \
             - \"{{ DEVCACHE_PORT }}:3141\"\n  \
             volumes:\n    \
             - ../../data/devcache:/data:z"
            .to_string();
        let plugin = PluginFile {
            name: NAME,
            version: env!("CARGO_PKG_VERSION"),
            config: Config {
                defaults: BTreeMap::from([
                    ("HOST", self.host.clone().into()),
                    ("PORT", u64::from(self.port).into()),
                    ("UPSTREAM", self.upstream.clone().into()),
                    ("IMAGE", self.image.clone().into()),
                ]),
            },
            patches: BTreeMap::from([
                ("openedx-dockerfile-minimal", dockerfile),
                ("local-docker-compose-services", service),
                ("local-docker-compose-lms-dependencies", "- devcache".into()),
                ("local-docker-compose-cms-dependencies", "- devcache".into()),
            ]),
        };
        let yaml = serde_yaml::to_string(&plugin).context("cannot write the Tutor plugin")?;
        Ok(format!(
            "{MARKER} (devcache tutor enable); `devcache tutor disable` removes it.\n{yaml}"
        ))
    }
}

/// Where Tutor discovers YAML plugins: `TUTOR_PLUGINS_ROOT`, else its user data
/// folder named after `TUTOR_APP` (`~/.local/share/tutor-plugins` on Linux), as
/// `tutor plugins printroot` says.
pub fn plugins_root(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(root) = env("TUTOR_PLUGINS_ROOT").filter(|r| !r.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    let app = env("TUTOR_APP").unwrap_or_else(|| "tutor".into());
    let dirs = directories::BaseDirs::new()
        .context("cannot find your home folder: set TUTOR_PLUGINS_ROOT")?;
    Ok(dirs.data_dir().join(format!("{app}-plugins")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            host: "172.17.0.1".into(),
            port: 3141,
            upstream: "https://my-index.example/simple/".into(),
            image: "devcache:0.1.0".into(),
        }
    }

    #[test]
    fn the_plugin_is_yaml_tutor_reads() {
        let text = settings().render().unwrap();
        assert!(text.starts_with(MARKER), "{text}");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["name"], "devcache");
        assert_eq!(parsed["config"]["defaults"]["PORT"], 3141);
        let dockerfile = parsed["patches"]["openedx-dockerfile-minimal"]
            .as_str()
            .unwrap();
        assert!(dockerfile.contains("UV_DEFAULT_INDEX=http://{{ DEVCACHE_HOST }}"));
        assert!(dockerfile.contains("'exec /usr/local/bin/uv-devcache \"$@\"'"));
    }

    #[test]
    fn plugins_root_follows_tutor() {
        let env = |key: &str| (key == "TUTOR_PLUGINS_ROOT").then(|| "/x/plugins".to_string());
        assert_eq!(plugins_root(&env).unwrap(), PathBuf::from("/x/plugins"));
        let env = |key: &str| (key == "TUTOR_APP").then(|| "tutor-main".to_string());
        assert!(plugins_root(&env).unwrap().ends_with("tutor-main-plugins"));
    }
}
