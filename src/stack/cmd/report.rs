//! The status report: what `devcache status` found, as JSON for scripts (`--json`)
//! or as lines for people. Kept apart from the gathering so the wording of one does
//! not hide in the Engine calls of the other.

use serde::Serialize;

use crate::api::{ClientStats, INDEX_PATH, Status, human_bytes};

#[derive(Serialize)]
pub struct StatusReport {
    pub project: String,
    pub cache: CacheReport,
    pub consumers: Vec<ConsumerReport>,
}

#[derive(Serialize)]
pub struct CacheReport {
    pub container: String,
    /// Who runs it: `devcache up`, or Tutor from devcache's plugin; none when absent.
    pub run_by: Option<&'static str>,
    pub state: String,
    pub health: Option<String>,
    pub url: Option<String>,
    pub image: Option<String>,
    pub volume: String,
    /// The server's own `/+status`, when it answers.
    pub server: Option<Status>,
}

#[derive(Serialize)]
pub struct ConsumerReport {
    pub service: String,
    pub container: Option<String>,
    pub running: bool,
    pub enabled: bool,
    /// Disabled by the user (as opposed to never enabled).
    pub disabled: bool,
    pub pip: String,
    /// What the cache served this container (matched by its address on the network),
    /// all its installers together; `user_agent` lists them, busiest first.
    pub served: Option<ClientStats>,
    /// The file hosts of its lock the cache answers (`enable --locked-installs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked_installs: Vec<String>,
}

impl StatusReport {
    /// The report as lines for people.
    pub fn describe(&self) -> String {
        let cache = &self.cache;
        let mut out = format!("project {}\n", self.project);
        let health = cache
            .health
            .as_deref()
            .map(|h| format!(", {h}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "cache     {} ({}{health}{})\n",
            cache.container,
            cache.state,
            cache
                .run_by
                .map(|by| format!("; run by {by}"))
                .unwrap_or_default()
        ));
        if let Some(url) = &cache.url {
            let index = INDEX_PATH.trim_start_matches('/');
            out.push_str(&format!("          {url}  index {url}{index}\n"));
        }
        if let Some(image) = &cache.image {
            out.push_str(&format!("          image {image}, data {}\n", cache.volume));
        }
        if let Some(server) = &cache.server {
            let rate = server
                .hit_rate()
                .map_or("no requests yet".to_string(), |rate| {
                    format!("hit rate {rate:.0}%")
                });
            out.push_str(&format!(
                "          {} projects, {} files, {} cached; {rate}; upstream {}\n",
                server.projects,
                server.files,
                human_bytes(server.bytes),
                server.upstream.as_deref().unwrap_or("none"),
            ));
            out.push_str(&format!("          disk: {}\n", server.disk_budget()));
        }
        for consumer in &self.consumers {
            let running = if consumer.running {
                "running"
            } else {
                "not running"
            };
            let enabled = match (consumer.enabled, consumer.disabled) {
                (true, _) => "enabled",
                (false, true) => "disabled",
                (false, false) => "not enabled",
            };
            let served = consumer.served.as_ref().map_or(String::new(), |s| {
                format!(
                    "; served {} hits, {} misses ({} from the cache, {} fetched)",
                    s.hits + s.stale,
                    s.misses,
                    human_bytes(s.bytes_from_cache),
                    human_bytes(s.bytes_fetched),
                )
            });
            let locked = match consumer.locked_installs.as_slice() {
                [] => String::new(),
                hosts => format!("; locked installs from {}", hosts.join(", ")),
            };
            out.push_str(&format!(
                "{:<9} {} ({running}, {enabled}): {}{locked}{served}\n",
                consumer.service,
                consumer.container.as_deref().unwrap_or("-"),
                consumer.pip
            ));
        }
        out
    }
}
