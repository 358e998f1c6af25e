//! Writing a file of this host safely: readers (and the next run after a crash or a
//! power loss) see the old file or the whole new one, never a torn one. For the small
//! files devcache keeps outside the store: the locked-installs CA, Tutor's plugin and
//! each project's remembered choices. The store has its own writers, through `tmp/`.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temp file beside it (`.<name>.tmp`), created
/// with `mode` (less the umask), synced, then renamed over `path`. The directory must
/// exist.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: it names no file", path.display()))?;
    let temp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    written.with_context(|| format!("cannot write {}", path.display()))
}
