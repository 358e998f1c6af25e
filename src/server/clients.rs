//! Who the cache served: counters per client address, so that a user can see lms's
//! hit rate apart from studio's (`devcache status` names the containers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::Outcome;
use crate::api::ClientStats;

/// Clients beyond this many are not tracked one by one (a cache sees a few containers).
const MAX_CLIENTS: usize = 1024;

#[derive(Default)]
pub struct Clients {
    by_address: Mutex<HashMap<IpAddr, ClientStats>>,
}

impl Clients {
    pub fn record(&self, address: IpAddr, user_agent: Option<&str>, outcome: Outcome, bytes: u64) {
        let mut map = self.by_address.lock().expect("clients lock");
        if map.len() >= MAX_CLIENTS && !map.contains_key(&address) {
            return;
        }
        let stats = map.entry(address).or_insert_with(|| ClientStats {
            address: address.to_string(),
            ..Default::default()
        });
        if let Some(agent) = user_agent.and_then(|ua| ua.split_whitespace().next()) {
            stats.user_agent = agent.to_string();
        }
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
            .by_address
            .lock()
            .expect("clients lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.address.cmp(&b.address));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_with_the_installer_named() {
        let clients = Clients::default();
        let lms: IpAddr = "172.18.0.3".parse().unwrap();
        clients.record(
            lms,
            Some("pip/24.0 {\"installer\":...}"),
            Outcome::Miss,
            100,
        );
        clients.record(lms, Some("pip/24.0"), Outcome::Hit, 40);
        clients.record("172.18.0.4".parse().unwrap(), None, Outcome::Stale, 7);
        let all = clients.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].user_agent, "pip/24.0");
        assert_eq!(
            (
                all[0].hits,
                all[0].misses,
                all[0].bytes_fetched,
                all[0].bytes_from_cache
            ),
            (1, 1, 100, 40)
        );
        assert_eq!((all[1].stale, all[1].bytes_from_cache), (1, 7));
    }
}
