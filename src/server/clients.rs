//! Who the cache served: counters per client address and installer, so that a user
//! can see lms's hit rate apart from studio's (`devcache status` names the
//! containers), and pip's requests apart from a curl's from the same address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::Outcome;
use crate::api::ClientStats;

/// Clients beyond this many are not tracked one by one (a cache sees a few containers).
const MAX_CLIENTS: usize = 1024;

#[derive(Default)]
pub struct Clients {
    by_client: Mutex<HashMap<(IpAddr, String), ClientStats>>,
}

/// The installer a User-Agent names: its first word (`pip/24.0`, `uv/0.5.1`), or `-`.
pub fn installer(user_agent: Option<&str>) -> &str {
    user_agent
        .and_then(|ua| ua.split_whitespace().next())
        .unwrap_or("-")
}

impl Clients {
    pub fn record(&self, address: IpAddr, installer: &str, outcome: Outcome, bytes: u64) {
        let mut map = self.by_client.lock().expect("clients lock");
        let key = (address, installer.to_string());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&key) {
            return;
        }
        let stats = map.entry(key).or_insert_with(|| ClientStats {
            address: address.to_string(),
            user_agent: installer.to_string(),
            ..Default::default()
        });
        match outcome {
            Outcome::Hit | Outcome::Revalidated => {
                stats.hits += 1;
                stats.bytes_from_cache += bytes;
            }
            Outcome::Stale => {
                stats.stale += 1;
                stats.bytes_from_cache += bytes;
            }
            Outcome::Miss => {
                stats.misses += 1;
                stats.bytes_fetched += bytes;
            }
        }
    }

    pub fn snapshot(&self) -> Vec<ClientStats> {
        let mut all: Vec<ClientStats> = self
            .by_client
            .lock()
            .expect("clients lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.address, &a.user_agent).cmp(&(&b.address, &b.user_agent)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_installer() {
        let clients = Clients::default();
        let lms: IpAddr = "172.18.0.3".parse().unwrap();
        let pip = installer(Some("pip/24.0 {\"installer\":...}"));
        clients.record(lms, pip, Outcome::Miss, 100);
        clients.record(lms, installer(Some("pip/24.0")), Outcome::Hit, 40);
        clients.record(lms, installer(Some("curl/7.88.1")), Outcome::Hit, 5);
        clients.record(
            "172.18.0.4".parse().unwrap(),
            installer(None),
            Outcome::Stale,
            7,
        );
        let all = clients.snapshot();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].user_agent, "curl/7.88.1");
        assert_eq!(all[1].user_agent, "pip/24.0");
        assert_eq!(
            (
                all[1].hits,
                all[1].misses,
                all[1].bytes_fetched,
                all[1].bytes_from_cache
            ),
            (1, 1, 100, 40)
        );
        assert_eq!((all[2].user_agent.as_str(), all[2].stale), ("-", 1));
    }
}
