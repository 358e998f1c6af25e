//! Saves that no answer waits for: a page or a wheel's derived metadata is answered
//! from memory while it is written (temp file, rename) by a thread of its own.
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
//! Saves are queued and written, oldest first, by one thread of their own at the lowest
//! CPU priority (nice 19), started by the first save and gone after a few idle seconds.
//! A cold resolution's answers and its saves compete for the same cores; at that
//! priority the answers go first and the saves fill the gaps and the time after (a
//! cold 300-project `uv pip compile` 10 ms from its upstream: 1.21x and 1.25x of going
//! direct against 1.25x and 1.35x, medians of two series of eight alternating rounds;
//! 1.47x against 1.53x with the upstream on loopback). One writer
//! also keeps the writes from contending for the lock of the directory they all create
//! their temp files in. A machine busy for long could starve that thread: past
//! [`BACKLOG`] queued saves, a writer at normal priority on the blocking pool helps
//! until the queue is empty, so what queued saves hold in memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{BlobKey, Store};

/// A save waiting to be written, and what to call it in the log if it fails.
type Job = (String, Box<dyn FnOnce() -> std::io::Result<()> + Send>);

/// Queued saves past which a writer at normal priority helps.
const BACKLOG: usize = 4096;

/// How long the writer thread waits for another save before it ends.
const WRITER_IDLE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(super) struct Saves {
    /// How many saves are under way.
    pending: Arc<watch::Sender<usize>>,
    /// Derived metadata being saved, by its key.
    blobs: Arc<Mutex<HashMap<BlobKey, Bytes>>>,
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

/// Saves not yet started, and who is writing them.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The low-priority writer thread is running.
    writer: bool,
    /// A writer at normal priority is helping with a backlog.
    helping: bool,
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
    /// Queues `save` for the writer; a failure is logged as `what` and leaves the thing
    /// uncached, never a failed request.
    pub(super) fn spawn(
        &self,
        what: String,
        save: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) {
        self.pending.send_modify(|n| *n += 1);
        let (lock, wake) = &*self.queue;
        let (start_writer, start_helper) = {
            let mut queue = lock.lock().expect("saves queue lock");
            queue.jobs.push_back((what, Box::new(save)));
            let start_writer = !std::mem::replace(&mut queue.writer, true);
            let start_helper =
                queue.jobs.len() > BACKLOG && !std::mem::replace(&mut queue.helping, true);
            (start_writer, start_helper)
        };
        wake.notify_one();
        if start_writer {
            let this = self.clone();
            let started = std::thread::Builder::new()
                .name("devcache-saves".into())
                .spawn(move || this.write_at_low_priority());
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the saves thread; saving on the blocking pool");
                let mut queue = lock.lock().expect("saves queue lock");
                queue.writer = false;
                if !std::mem::replace(&mut queue.helping, true) {
                    drop(queue);
                    self.help();
                }
            }
        }
        if start_helper {
            self.help();
        }
    }

    /// The writer thread: saves as they come, until none has come for [`WRITER_IDLE`].
    fn write_at_low_priority(&self) {
        lower_this_threads_priority();
        let (lock, wake) = &*self.queue;
        loop {
            let job = {
                let mut queue = lock.lock().expect("saves queue lock");
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    let (guard, waited) = wake
                        .wait_timeout(queue, WRITER_IDLE)
                        .expect("saves queue lock");
                    queue = guard;
                    if waited.timed_out() && queue.jobs.is_empty() {
                        queue.writer = false;
                        return;
                    }
                }
            };
            self.write(job);
        }
    }

    /// Writes queued saves at normal priority on the blocking pool until there are none.
    fn help(&self) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (lock, _) = &*this.queue;
            loop {
                let job = {
                    let mut queue = lock.lock().expect("saves queue lock");
                    let job = queue.jobs.pop_front();
                    queue.helping = job.is_some();
                    job
                };
                match job {
                    Some(job) => this.write(job),
                    None => return,
                }
            }
        });
    }

    fn write(&self, (what, save): Job) {
        // A save that panics loses itself, not the saves queued behind it.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(save)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save {what}; it stays uncached"),
            Err(_) => tracing::warn!("saving {what} failed; it stays uncached"),
        }
        self.pending.send_modify(|n| *n -= 1);
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

/// Lowers the calling thread to nice 19. On Linux a thread has a nice value of its own;
/// elsewhere `setpriority` would lower the whole process, so it is left alone there.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `0` names the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the saves thread's priority");
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

        // The queue is empty; the next save is written too.
        let again = written.clone();
        saves.spawn("one more".into(), move || {
            again.lock().unwrap().push(50);
            Ok(())
        });
        saves.settled().await;
        assert_eq!(written.lock().unwrap().last(), Some(&50));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_falls_behind_gets_help_and_nothing_is_lost() {
        let saves = Saves::default();
        let written = Arc::new(Mutex::new(Vec::new()));
        // The writer thread is stuck in its first save, as a starved thread would be.
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        saves.spawn("stuck".into(), move || {
            let _ = stuck.recv();
            Ok(())
        });
        for i in 0..BACKLOG + 10 {
            let written = written.clone();
            saves.spawn(format!("save {i}"), move || {
                written.lock().unwrap().push(i);
                Ok(())
            });
        }
        // The helper writes the backlog while the writer is still stuck.
        for _ in 0..500 {
            if written.lock().unwrap().len() == BACKLOG + 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(written.lock().unwrap().len(), BACKLOG + 10);
        assert_eq!(saves.running(), 1);
        release.send(()).unwrap();
        saves.settled().await;
        assert_eq!(saves.running(), 0);
    }
}
