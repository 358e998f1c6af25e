//! Saves that no answer waits for: a page or a wheel's derived metadata is answered
//! from memory while it is written (temp file, `fsync`, rename) on the blocking pool.
//!
//! An `fsync` costs from half a millisecond to several on a disk with a journal (more
//! when other writers share it), and every cold page and `.metadata` of a resolution
//! paid it before its first byte.
//! What is being saved is held here, so a second request for it is answered from
//! memory too, and [`Saves::settled`] lets a stopping process finish the writes, as
//! fills do for the files their clients were given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{BlobKey, Store};

#[derive(Clone)]
pub(super) struct Saves {
    /// How many saves are under way.
    pending: Arc<watch::Sender<usize>>,
    /// Derived metadata being saved, by its key.
    blobs: Arc<Mutex<HashMap<BlobKey, Bytes>>>,
}

impl Default for Saves {
    fn default() -> Self {
        Self {
            pending: Arc::new(watch::Sender::new(0)),
            blobs: Arc::default(),
        }
    }
}

impl Saves {
    /// Runs `save` on the blocking pool; a failure is logged as `what` and leaves the
    /// thing uncached, never a failed request.
    pub(super) fn spawn(
        &self,
        what: String,
        save: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) {
        self.pending.send_modify(|n| *n += 1);
        let pending = self.pending.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = save() {
                tracing::warn!(error = %e, "cannot save {what}; it stays uncached");
            }
            pending.send_modify(|n| *n -= 1);
        });
    }

    /// Saves `bytes` as the blob `key`, which [`Saves::blob`] answers until it is on disk.
    pub(super) fn save_blob(&self, store: &Store, key: &BlobKey, bytes: &Bytes) {
        self.blobs
            .lock()
            .expect("saves lock")
            .insert(key.clone(), bytes.clone());
        let (store, key, bytes, blobs) = (
            store.clone(),
            key.clone(),
            bytes.clone(),
            self.blobs.clone(),
        );
        self.spawn(format!("the blob {}", key.as_str()), move || {
            let saved = store.save_blob(&key, &bytes);
            blobs.lock().expect("saves lock").remove(&key);
            saved
        });
    }

    /// The bytes of a blob still being saved.
    pub(super) fn blob(&self, key: &BlobKey) -> Option<Bytes> {
        self.blobs.lock().expect("saves lock").get(key).cloned()
    }

    /// Waits until every save started so far is written.
    pub(super) async fn settled(&self) {
        let _ = self.pending.subscribe().wait_for(|n| *n == 0).await;
    }

    /// How many saves are under way.
    pub(super) fn running(&self) -> usize {
        *self.pending.borrow()
    }
}
