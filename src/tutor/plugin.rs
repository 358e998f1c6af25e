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

/// The failover of pip and uv, `/usr/local/bin/devcache-failover`: through the cache
/// when its port answers, else straight from the upstream, saying so in one line. It
/// runs as `devcache-failover TOOL ARGS` (Tutor's `$PIP_COMMAND` in every build step)
/// or as `pip`, `pip3` or `uv` (links in [`WRAPPERS`], first on the containers' PATH),
/// and runs the real tool with its own folder out of PATH. Each line is one shell word
/// in single quotes.
const FAILOVER: &[&str] = &[
    "#!/bin/bash",
    "# Written by devcache: pip and uv through the cache when it answers, else from the upstream.",
    "name=${0##*/}",
    "if [ \"$name\" = devcache-failover ]; then name=$1; shift; fi",
    "p=:$PATH:; p=${p//:\\/opt\\/devcache\\/bin:/:}; p=${p#:}; export PATH=${p%:}",
    "if ! timeout 3 bash -c \"exec 3<>/dev/tcp/$DEVCACHE_HOST/$DEVCACHE_PORT\" 2>/dev/null; then",
    "  echo \"devcache: the cache at $DEVCACHE_HOST:$DEVCACHE_PORT does not answer; $name installs from $DEVCACHE_UPSTREAM (start it: tutor dev start devcache)\" >&2",
    "  export PIP_INDEX_URL=$DEVCACHE_UPSTREAM UV_DEFAULT_INDEX=$DEVCACHE_UPSTREAM",
    "  case $DEVCACHE_UPSTREAM in http://*) u=${DEVCACHE_UPSTREAM#http://}; export PIP_TRUSTED_HOST=\"$PIP_TRUSTED_HOST ${u%%/*}\";; esac",
    "fi",
    "exec \"$name\" \"$@\"",
];

/// The folder of the `pip`, `pip3` and `uv` links to the failover, which the image's
/// last stages put first on PATH (before the venv's own pip).
const WRAPPERS: &str = "/opt/devcache/bin";

impl Settings {
    /// The plugin file's text.
    pub fn render(&self) -> Result<String> {
        let index = format!("http://{{{{ DEVCACHE_HOST }}}}:{{{{ DEVCACHE_PORT }}}}{INDEX_PATH}");
        let failover: Vec<String> = FAILOVER.iter().map(|l| format!("    '{l}'")).collect();
        // The first stage, which every stage inherits: the settings, the failover, and
        // Tutor's `$PIP_COMMAND` (pip or `uv pip`) run through it in every build step.
        let minimal = format!(
            "# devcache: pip and uv install through the cache (devcache tutor disable removes this)\n\
             ENV DEVCACHE_HOST={{{{ DEVCACHE_HOST }}}} DEVCACHE_PORT={{{{ DEVCACHE_PORT }}}} \
             DEVCACHE_UPSTREAM={{{{ DEVCACHE_UPSTREAM }}}}\n\
             ENV PIP_INDEX_URL={index} PIP_TRUSTED_HOST={{{{ DEVCACHE_HOST }}}} UV_DEFAULT_INDEX={index}\n\
             RUN printf '%s\\n' \\\n{} \\\n\
             \x20   > /usr/local/bin/devcache-failover && chmod 755 /usr/local/bin/devcache-failover && \\\n\
             \x20   mkdir -p {WRAPPERS} && for tool in pip pip3 uv; do \\\n\
             \x20   ln -sf /usr/local/bin/devcache-failover {WRAPPERS}/$tool; done\n\
             ENV PIP_COMMAND=\"/usr/local/bin/devcache-failover ${{PIP_COMMAND}}\"",
            failover.join(" \\\n")
        );
        // The end of the production stage, which the development and final images (and
        // so lms, cms, the workers and job containers) are made from: `pip`, `pip3` and
        // `uv` typed in a container go through the failover too.
        let production = format!(
            "# devcache: pip and uv in containers fail over to the upstream when the cache is down\n\
             ENV PATH={WRAPPERS}:${{PATH}}"
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
                ("openedx-dockerfile-minimal", minimal),
                ("openedx-dockerfile", production),
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
        assert!(
            dockerfile.contains("'exec \"$name\" \"$@\"'"),
            "{dockerfile}"
        );
        assert!(
            dockerfile
                .contains("ENV PIP_COMMAND=\"/usr/local/bin/devcache-failover ${PIP_COMMAND}\""),
            "{dockerfile}"
        );
        let production = parsed["patches"]["openedx-dockerfile"].as_str().unwrap();
        assert!(
            production.ends_with("ENV PATH=/opt/devcache/bin:${PATH}"),
            "{production}"
        );
    }

    #[test]
    fn plugins_root_follows_tutor() {
        let env = |key: &str| (key == "TUTOR_PLUGINS_ROOT").then(|| "/x/plugins".to_string());
        assert_eq!(plugins_root(&env).unwrap(), PathBuf::from("/x/plugins"));
        let env = |key: &str| (key == "TUTOR_APP").then(|| "tutor-main".to_string());
        assert!(plugins_root(&env).unwrap().ends_with("tutor-main-plugins"));
    }
}
