//! Saves that no answer waits for: a page, a wheel's derived metadata or a small wheel
//! read whole for it is answered from memory while it is written (temp file, rename)
//! on the blocking pool.
//!
//! An `fsync` costs from half a millisecond to several on a disk with a journal (more
//! when other writers share it), and every cold page and `.metadata` of a resolution
//! paid it before its first byte. Blobs (derived metadata, small wheels) are still
//! synced before their rename, since they are served as read and nothing could tell a
//! torn copy from a whole one.
//! Pages are not (see `Store::save_page`): a page a crash left torn does not parse
//! and is fetched again, and a stale page is fetched again anyway.
//! What is being saved is held here, so a second request for it is answered from
//! memory too, and [`Saves::settled`] lets a stopping process finish the writes, as
//! fills do for the files their clients were given.
//!
//! Saves are queued and written one after another by a single task on the blocking
//! pool: a resolution's burst of saves is then one trip to the pool rather than one
//! per save, and its writers do not contend for the lock of the directory they all
//! create their temp files in. The writer starts once the burst is over, when no save
//! has been queued for [`QUIET`], so that a resolver's requests do not share the cores
//! with the writes of the answers it already has: on two cores, that made a cold
//! resolution against an upstream without metadata about a tenth faster. It starts
//! at once when the oldest save has waited [`MAX_LAG`] (a steady load does not defer
//! them for ever), when the queue holds [`MAX_QUEUED_BYTES`], or when a stopping process
//! asks for them to be settled. A process killed meanwhile loses what is queued: it is
//! fetched again, never served torn.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::store::{BlobKey, Store};

/// How long no save is queued before the writer takes the queue.
const QUIET: Duration = Duration::from_millis(50);

/// The longest a save waits for a quiet moment.
const MAX_LAG: Duration = Duration::from_secs(1);

/// The bytes queued saves may hold (a page counts as its JSON form) before the writer
/// starts without waiting for a quiet moment.
const MAX_QUEUED_BYTES: usize = 16 << 20;

/// A save waiting to be written, and what to call it in the log if it fails.
struct Job {
    what: String,
    save: Box<dyn FnOnce() -> std::io::Result<()> + Send>,
    /// The memory the save holds until it is written.
    bytes: usize,
}

#[derive(Clone)]
pub(super) struct Saves {
    /// How many saves are under way.
    pending: Arc<watch::Sender<usize>>,
    /// Blobs being saved (derived metadata, small wheels), by key.
    blobs: Arc<Mutex<HashMap<BlobKey, Bytes>>>,
    queue: Arc<Mutex<Queue>>,
    /// Wakes a writer waiting for a quiet moment to look at the queue again.
    wake: Arc<Notify>,
}

/// Saves not yet started, and whether a writer is taking them (or waiting to).
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    writing: bool,
    /// The memory the queued saves hold.
    bytes: usize,
    /// When a save was last queued, and when the oldest queued one was.
    last_queued: Option<Instant>,
    oldest_queued: Option<Instant>,
    /// A stopping process waits for the queue: no quiet moment is waited for.
    settling: bool,
}

impl Queue {
    /// When the writer should take the queue: `None` for at once.
    fn start_at(&self) -> Option<Instant> {
        if self.settling || self.bytes >= MAX_QUEUED_BYTES {
            return None;
        }
        let (last, oldest) = (self.last_queued?, self.oldest_queued?);
        Some((last + QUIET).min(oldest + MAX_LAG))
    }
}

impl Default for Saves {
    fn default() -> Self {
        Self {
            pending: Arc::new(watch::Sender::new(0)),
            blobs: Arc::default(),
            queue: Arc::default(),
            wake: Arc::default(),
        }
    }
}

impl Saves {
    /// Runs `save` on the blocking pool once the burst it belongs to is over; a
    /// failure is logged as `what` and leaves the thing uncached, never a failed
    /// request. `bytes` is the memory the save holds until then.
    pub(super) fn spawn(
        &self,
        what: String,
        bytes: usize,
        save: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) {
        self.pending.send_modify(|n| *n += 1);
        let (start_writer, full) = {
            let mut queue = self.queue.lock().expect("saves queue lock");
            let now = Instant::now();
            queue.last_queued = Some(now);
            queue.oldest_queued.get_or_insert(now);
            queue.bytes += bytes;
            queue.jobs.push_back(Job {
                what,
                save: Box::new(save),
                bytes,
            });
            let full = queue.bytes >= MAX_QUEUED_BYTES;
            (!std::mem::replace(&mut queue.writing, true), full)
        };
        if full {
            self.wake.notify_waiters();
        }
        if start_writer {
            let this = self.clone();
            tokio::spawn(async move {
                this.quiet_moment().await;
                tokio::task::spawn_blocking(move || this.write_queued());
            });
        }
    }

    /// Waits until the queue is to be written: see the module's header.
    async fn quiet_moment(&self) {
        loop {
            // Listening before the look, so that a wake between the two is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let start_at = self.queue.lock().expect("saves queue lock").start_at();
            match start_at {
                Some(start_at) if start_at > Instant::now() => tokio::select! {
                    () = tokio::time::sleep_until(start_at) => {}
                    () = woken => {}
                },
                _ => return,
            }
        }
    }

    /// Writes queued saves, oldest first, until there are none.
    fn write_queued(&self) {
        let mut written_one = false;
        loop {
            let job = self.next_job();
            // A save counts as done only once the writer has taken the next one or
            // stopped: whoever sees none pending (`settled`) then finds the writer
            // stopped, and the next save waits for a quiet moment of its own rather than
            // being taken by a writer that was about to stop.
            if std::mem::replace(&mut written_one, true) {
                self.pending.send_modify(|n| *n -= 1);
            }
            let Some(Job { what, save, .. }) = job else {
                return;
            };
            // A save that panics loses itself, not the saves queued behind it.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(save)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save {what}; it stays uncached"),
                Err(_) => tracing::warn!("saving {what} failed; it stays uncached"),
            }
        }
    }

    /// The next save to write; `None` also tells [`Saves::spawn`] that the writer has
    /// stopped, so that its next save starts one.
    fn next_job(&self) -> Option<Job> {
        let mut queue = self.queue.lock().expect("saves queue lock");
        let job = queue.jobs.pop_front();
        queue.writing = job.is_some();
        match &job {
            Some(job) => queue.bytes -= job.bytes,
            None => {
                (queue.last_queued, queue.oldest_queued) = (None, None);
                queue.settling = false;
            }
        }
        job
    }

    /// Saves `bytes` as the blob `key`, which [`Saves::blob`] answers until it is on disk.
    /// A blob being saved, or already saved, is not saved again: two clients that asked
    /// for it at once count it once in the store's totals.
    pub(super) fn save_blob(&self, store: &Store, key: &BlobKey, bytes: &Bytes) {
        let queued = self
            .blobs
            .lock()
            .expect("saves lock")
            .insert(key.clone(), bytes.clone())
            .is_some();
        if queued {
            return;
        }
        let (store, key, bytes, blobs) = (
            store.clone(),
            key.clone(),
            bytes.clone(),
            self.blobs.clone(),
        );
        self.spawn(
            format!("the blob {}", key.as_str()),
            bytes.len(),
            move || {
                let saved = if store.has_blob(&key) {
                    Ok(())
                } else {
                    store.save_blob(&key, &bytes)
                };
                blobs.lock().expect("saves lock").remove(&key);
                saved
            },
        );
    }

    /// The bytes of a blob still being saved.
    pub(super) fn blob(&self, key: &BlobKey) -> Option<Bytes> {
        self.blobs.lock().expect("saves lock").get(key).cloned()
    }

    /// Writes every save queued so far, without waiting for a quiet moment, and waits
    /// until they are written.
    pub(super) async fn settled(&self) {
        {
            let mut queue = self.queue.lock().expect("saves queue lock");
            queue.settling = queue.writing;
        }
        self.wake.notify_waiters();
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
            saves.spawn(format!("save {i}"), 0, move || {
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
        saves.spawn("one more".into(), 0, move || {
            again.lock().unwrap().push(50);
            Ok(())
        });
        saves.settled().await;
        assert_eq!(written.lock().unwrap().last(), Some(&50));
    }

    /// Queues a save that records `i` in `written` when it is written.
    fn queue(saves: &Saves, written: &Arc<Mutex<Vec<i32>>>, i: i32, bytes: usize) {
        let written = written.clone();
        saves.spawn(format!("save {i}"), bytes, move || {
            written.lock().unwrap().push(i);
            Ok(())
        });
    }

    /// Waits until every queued save is written, without asking for it to hurry.
    async fn written_when_due(saves: &Saves) {
        let _ = saves.pending.subscribe().wait_for(|n| *n == 0).await;
    }

    #[tokio::test(start_paused = true)]
    async fn saves_wait_until_no_save_has_been_queued_for_a_while() {
        let (saves, written) = (Saves::default(), Arc::new(Mutex::new(Vec::new())));
        let started = Instant::now();
        queue(&saves, &written, 1, 0);
        tokio::time::sleep(QUIET * 3 / 4).await;
        assert!(
            written.lock().unwrap().is_empty(),
            "written during the burst"
        );
        queue(&saves, &written, 2, 0);
        tokio::time::sleep(QUIET * 3 / 4).await;
        assert!(
            written.lock().unwrap().is_empty(),
            "written during the burst"
        );
        written_when_due(&saves).await;
        assert_eq!(*written.lock().unwrap(), [1, 2]);
        assert!(started.elapsed() >= QUIET * 3 / 4 + QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_saves_is_written_within_the_longest_lag() {
        let (saves, written) = (Saves::default(), Arc::new(Mutex::new(Vec::new())));
        let mut i = 0;
        let started = Instant::now();
        while started.elapsed() < MAX_LAG * 2 {
            queue(&saves, &written, i, 0);
            i += 1;
            // Paused time does not move while a save is being written.
            tokio::time::sleep(QUIET / 2).await;
        }
        let first_written = written.lock().unwrap().first().copied();
        assert_eq!(
            first_written,
            Some(0),
            "nothing written in twice the longest lag"
        );
        written_when_due(&saves).await;
        assert_eq!(written.lock().unwrap().len(), i as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_process_has_the_queue_written_at_once() {
        let (saves, written) = (Saves::default(), Arc::new(Mutex::new(Vec::new())));
        let started = Instant::now();
        queue(&saves, &written, 1, 0);
        saves.settled().await;
        assert_eq!(*written.lock().unwrap(), [1]);
        assert!(started.elapsed() < QUIET, "waited for a quiet moment");
        // The next burst waits for its quiet moment again.
        queue(&saves, &written, 2, 0);
        tokio::time::sleep(QUIET / 2).await;
        assert_eq!(*written.lock().unwrap(), [1]);
        written_when_due(&saves).await;
        assert_eq!(*written.lock().unwrap(), [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn saves_holding_too_much_memory_are_written_at_once() {
        let (saves, written) = (Saves::default(), Arc::new(Mutex::new(Vec::new())));
        let started = Instant::now();
        queue(&saves, &written, 1, MAX_QUEUED_BYTES / 2);
        tokio::time::sleep(QUIET / 4).await;
        queue(&saves, &written, 2, MAX_QUEUED_BYTES / 2);
        written_when_due(&saves).await;
        assert_eq!(*written.lock().unwrap(), [1, 2]);
        assert!(started.elapsed() < QUIET, "waited for a quiet moment");
        assert_eq!(saves.queue.lock().unwrap().bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blob_saved_twice_at_once_or_after_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let saves = Saves::default();
        let key = BlobKey::parse(&"ab".repeat(32)).unwrap();
        let bytes = Bytes::from_static(b"Metadata-Version: 2.1\nName: demo\n");
        saves.save_blob(&store, &key, &bytes);
        saves.save_blob(&store, &key, &bytes);
        assert_eq!(saves.blob(&key), Some(bytes.clone()));
        written_when_due(&saves).await;
        assert!(store.has_blob(&key));
        saves.save_blob(&store, &key, &bytes);
        written_when_due(&saves).await;
        assert_eq!(store.file_totals(), (1, bytes.len() as u64));
        assert_eq!(saves.blob(&key), None);
    }
}
