//! Saves that no answer waits for: a page or a wheel's derived metadata is answered
//! from memory while it is written (temp file, rename) on the blocking pool.
//!
//! An `fsync` costs from half a millisecond to several on a disk with a journal (more
//! when other writers share it), and every cold page and `.metadata` of a resolution
//! paid it before its first byte. Derived metadata is still synced before its rename,
//! since it is served as read and nothing could tell a torn copy from a whole one.
//! Pages are not (see `Store::save_page`): a page a crash left torn does not parse
//! and is fetched again, and a stale page is fetched again anyway.
//! What is being saved is held here, so a second request for it is answered from
//! memory too, and [`Saves::settled`] lets a stopping process finish the writes, as
//! fills do for the files their clients were given.
//!
//! Saves are queued and written one after another by a single task on the blocking
//! pool, started when the queue was empty: a resolution's burst of saves is then one
//! trip to the pool rather than one per save, and its writers do not contend for the
//! lock of the directory they all create their temp files in.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{BlobKey, Store};

/// A save waiting to be written, and what to call it in the log if it fails.
type Job = (String, Box<dyn FnOnce() -> std::io::Result<()> + Send>);

#[derive(Clone)]
pub(super) struct Saves {
    /// How many saves are under way.
    pending: Arc<watch::Sender<usize>>,
    /// Derived metadata being saved, by its key.
    blobs: Arc<Mutex<HashMap<BlobKey, Bytes>>>,
    queue: Arc<Mutex<Queue>>,
}

/// Saves not yet started, and whether a writer is taking them.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    writing: bool,
}

impl Default for Saves {
    fn default() -> Self {
        Self {
            pending: Arc::new(watch::Sender::new(0)),
            blobs: Arc::default(),
            queue: Arc::default(),
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
        let start_writer = {
            let mut queue = self.queue.lock().expect("saves queue lock");
            queue.jobs.push_back((what, Box::new(save)));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.write_queued());
        }
    }

    /// Writes queued saves, oldest first, until there are none.
    fn write_queued(&self) {
        loop {
            let Some((what, save)) = self.next_job() else {
                return;
            };
            // A save that panics loses itself, not the saves queued behind it.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(save)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save {what}; it stays uncached"),
                Err(_) => tracing::warn!("saving {what} failed; it stays uncached"),
            }
            self.pending.send_modify(|n| *n -= 1);
        }
    }

    /// The next save to write; `None` also tells [`Saves::spawn`] that the writer has
    /// stopped, so that its next save starts one.
    fn next_job(&self) -> Option<Job> {
        let mut queue = self.queue.lock().expect("saves queue lock");
        let job = queue.jobs.pop_front();
        queue.writing = job.is_some();
        job
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_saves_is_written_in_order_past_failures() {
        let saves = Saves::default();
        let written = Arc::new(Mutex::new(Vec::new()));
        for i in 0..50 {
            let written = written.clone();
            saves.spawn(format!("save {i}"), move || {
                match i {
                    10 => return Err(std::io::Error::other("disk full")),
                    20 => panic!("a bug in one save"),
                    _ => {}
                }
                written.lock().unwrap().push(i);
                Ok(())
            });
        }
        saves.settled().await;
        assert_eq!(saves.running(), 0);
        let expected: Vec<i32> = (0..50).filter(|i| ![10, 20].contains(i)).collect();
        assert_eq!(*written.lock().unwrap(), expected);

        // The writer stopped with the queue empty; the next save starts another.
        let again = written.clone();
        saves.spawn("one more".into(), move || {
            again.lock().unwrap().push(50);
            Ok(())
        });
        saves.settled().await;
        assert_eq!(written.lock().unwrap().last(), Some(&50));
    }
}
