//! The cache server's HTTP contract as types and paths: where the routes are, the
//! `/+status` document, the header that says how a request was answered, and how
//! sizes are written for people. The server answers with these, and the commands that
//! talk to a running cache (`stack`, `warm`, `transfer`) read with them, so both sides
//! change together.

use serde::{Deserialize, Serialize};

/// The simple index in devpi's layout: `<INDEX_PATH>[<project>/]`.
pub const INDEX_PATH: &str = "/root/pypi/+simple/";

/// The same index pages at the path pip's own default index uses.
pub const SIMPLE_PATH: &str = "/simple/";

/// Files: `<FILES_PATH><project>/<key>/<filename>[.metadata]`.
pub const FILES_PATH: &str = "/root/pypi/+f/";

/// The counters as JSON ([`Status`]), also the container's health check.
pub const STATUS_PATH: &str = "/+status";

/// Tells clients how their request was answered (`hit`, `miss`, ...): `warm` counts
/// what was already cached by it, and people debugging can see it with `curl -I`.
pub const OUTCOME_HEADER: &str = "x-devcache-cache";

/// The `/+status` document. Its field names are read by scripts: keep them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub upstream: Option<String>,
    /// Whether the upstream answered last time it was asked; `null` when offline.
    pub upstream_reachable: Option<bool>,
    pub offline: bool,
    pub projects: u64,
    pub files: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub uptime_seconds: u64,
    pub index_path: String,
    /// Per client address and installer: what was served from the cache and what was fetched.
    pub clients: Vec<ClientStats>,
}

impl Status {
    /// The share of answers that came from the cache (stale copies included), in
    /// percent; `None` before anything was served.
    pub fn hit_rate(&self) -> Option<f64> {
        let served = self.hits + self.misses + self.stale;
        (served > 0).then(|| 100.0 * (self.hits + self.stale) as f64 / served as f64)
    }
}

/// What the cache served one installer at one client address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientStats {
    pub address: String,
    /// The installer, as its User-Agent names it: `pip/24.0`, `uv/0.5.1`, `-` for none.
    pub user_agent: String,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    /// Bytes sent from the cache, and bytes that had to come from the upstream.
    pub bytes_from_cache: u64,
    pub bytes_fetched: u64,
}

/// A size as a person says it: `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_say_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn the_hit_rate_counts_stale_answers_as_served_from_the_cache() {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "version": "0", "upstream": null, "upstream_reachable": null, "offline": true,
            "projects": 0, "files": 0, "bytes": 0, "hits": 0, "misses": 0, "stale": 0,
            "uptime_seconds": 0, "index_path": INDEX_PATH, "clients": [],
        }))
        .unwrap();
        assert_eq!(status.hit_rate(), None);
        (status.hits, status.stale, status.misses) = (2, 1, 1);
        assert_eq!(status.hit_rate(), Some(75.0));
    }
}
