//! The cache core: every answer the server gives about a page or a file is decided
//! here, as cached, joined to a download under way, or fetched from the upstream.
//!
//! ```text
//! server/   routes and HTTP representation      (above: asks this module)
//! cache/    pages.rs  pages fresh, revalidated or stale; one upstream fetch per page
//!           fills.rs  one upstream download per file, streamed to every client
//!           files.rs  the decision for a file request
//!           metadata.rs  core metadata for every wheel, derived when the upstream has none
//!           budget.rs  eviction in the background when the files exceed --max-size
//!           saves.rs  pages, derived metadata and small wheels, written once a burst of
//!                     answers is over
//! store/    disk only                            (below)
//! upstream  network only                         (below)
//! ```
//!
//! The single-flights (pages, files, and derived metadata) live here together, so that
//! what is cached, what is being fetched and what is asked of the upstream are decided
//! in one place.

mod budget;
mod files;
mod fills;
mod metadata;
mod pages;
mod saves;

pub use files::{CachedFile, FileAnswer, FileError, FileRequest, Want};
pub use fills::{Fill, FillError};
pub use pages::{Form, PageError, ReadyPage};

use std::sync::Arc;
use std::time::Duration;

use crate::index::ProjectName;
use crate::store::Store;
use crate::upstream::Upstream;
use fills::Fills;
use metadata::{Derivations, Unreadable};
use pages::Pages;
use saves::Saves;

/// How a request was answered, for the access log and the hit counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache without asking the upstream.
    Hit,
    /// Fetched from the upstream (and cached).
    Miss,
    /// The upstream confirmed the cached page (304).
    Revalidated,
    /// The upstream could not answer; the cached copy was served.
    Stale,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Revalidated => "revalidated",
            Outcome::Stale => "stale",
        }
    }
}

/// A data directory and (unless offline) the upstream it caches. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    store: Store,
    pages: Pages,
    fills: Fills,
    saves: Saves,
    unreadable: Unreadable,
    derivations: Derivations,
    upstream: Option<Upstream>,
}

impl Cache {
    /// A cache of `store`; pages younger than `index_ttl` are served without asking
    /// `upstream`, and with no upstream only what is cached is served.
    pub fn new(store: Store, upstream: Option<Upstream>, index_ttl: Duration) -> Self {
        let saves = Saves::default();
        let unreadable = Unreadable::default();
        Self {
            pages: Pages::new(
                store.clone(),
                upstream.clone(),
                index_ttl,
                saves.clone(),
                unreadable.clone(),
            ),
            fills: Fills::default(),
            saves,
            unreadable,
            derivations: Derivations::default(),
            store,
            upstream,
        }
    }

    /// The page to serve for `name`, and how it was obtained. When the upstream cannot
    /// be asked, it lists only the files the cache holds.
    pub async fn page(&self, name: &ProjectName) -> Result<(Arc<ReadyPage>, Outcome), PageError> {
        let (page, outcome) = self.pages.get(name).await?;
        Ok((self.pages.servable(page, outcome).await, outcome))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The upstream, or `None` when offline.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    /// How many downloads are under way.
    pub fn downloads_running(&self) -> usize {
        self.fills.running()
    }

    /// How many downloads and saves of answered pages and metadata are under way.
    pub fn writes_running(&self) -> usize {
        self.fills.running() + self.saves.running()
    }

    /// Waits until everything a client was given is saved: a client may have had every
    /// byte of a file before its download was synced and published, and pages and
    /// derived metadata are answered before they are written.
    pub async fn settled(&self) {
        self.fills.settled().await;
        self.saves.settled().await;
    }
}
