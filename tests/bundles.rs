//! What a hostile or damaged bundle gets from `devcache import`: refused with one line
//! naming the entry, and the cache as it was. An interrupted import completes when run
//! again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::{Digest, Sha256};
use support::devcache_command;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The path a file has in a bundle (and a data directory) when stored by its sha256.
fn file_path(digest: &str) -> String {
    format!("files/{}/{digest}", &digest[..2])
}

/// An entry to write into a test bundle.
enum Entry<'a> {
    File(String, &'a [u8]),
    Symlink(String),
    Fifo(String),
    /// Only a header that declares this size, and no data.
    Declared(String, u64),
}

/// Writes a bundle whose manifest lists `manifest` (path to sha256) and whose entries
/// are `entries`, in that order.
fn write_bundle(path: &Path, manifest: &[(String, String)], entries: &[Entry]) {
    let manifest = serde_json::json!({
        "format": "devcache-bundle",
        "version": 1,
        "entries": manifest
            .iter()
            .map(|(path, digest)| (path.clone(), serde_json::Value::from(digest.as_str())))
            .collect::<serde_json::Map<_, _>>(),
    })
    .to_string();
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    append(&mut tar, "manifest.json", manifest.as_bytes());
    for entry in entries {
        match entry {
            Entry::File(name, bytes) => append(&mut tar, name, bytes),
            Entry::Symlink(name) => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, name, "/etc/passwd").unwrap();
            }
            Entry::Fifo(name) => {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_size(0);
                header.set_cksum();
                tar.append_data(&mut header, name, std::io::empty())
                    .unwrap();
            }
            Entry::Declared(name, size) => {
                let mut header = tar::Header::new_gnu();
                header.set_path(name).unwrap();
                header.set_size(*size);
                header.set_mode(0o644);
                header.set_cksum();
                tar.get_mut().write_all(header.as_bytes()).unwrap();
            }
        }
    }
    tar.finish().unwrap();
}

/// Writes a sound bundle of `contents`, each a file stored by its sha256; its manifest
/// (path to sha256) is returned.
fn bundle_of_files(path: &Path, contents: &[Vec<u8>]) -> Vec<(String, String)> {
    let manifest: Vec<(String, String)> = contents
        .iter()
        .map(|c| (file_path(&sha256(c)), sha256(c)))
        .collect();
    let entries: Vec<Entry> = manifest
        .iter()
        .zip(contents)
        .map(|((name, _), c)| Entry::File(name.clone(), c))
        .collect();
    write_bundle(path, &manifest, &entries);
    manifest
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes).unwrap();
}

fn import(dir: &Path, bundle: &Path, data: &Path) -> Output {
    devcache_command(dir)
        .arg("import")
        .arg(bundle)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// The one line a refused import printed, checked to be one line naming the cause.
fn refused(out: &Output, cause: &str) -> String {
    assert!(!out.status.success(), "the bundle was imported");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(cause), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Files under a data directory's `files/`.
fn cached_files(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("files"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|shard| std::fs::read_dir(shard.path()).unwrap().flatten())
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_file_that_does_not_hash_to_its_name_is_refused_whatever_the_manifest_says() {
    let tmp = tempfile::tempdir().unwrap();
    let good = b"the real wheel".as_slice();
    let poison = b"something else entirely".as_slice();
    let name = file_path(&sha256(good));
    let bundle = tmp.path().join("poisoned.tar");
    write_bundle(
        &bundle,
        &[(name.clone(), sha256(poison))],
        &[Entry::File(name.clone(), poison)],
    );
    let data = tmp.path().join("data");
    let line = refused(
        &import(tmp.path(), &bundle, &data),
        "does not hash to its name",
    );
    assert!(line.contains(&name), "{line}");
    assert!(cached_files(&data).is_empty());
}

#[test]
fn links_fifos_and_devices_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let name = file_path(&sha256(b""));
    for (entry, kind) in [
        (Entry::Symlink(name.clone()), "a symbolic link"),
        (Entry::Fifo(name.clone()), "a FIFO"),
    ] {
        let bundle = tmp.path().join("special.tar");
        write_bundle(&bundle, &[(name.clone(), sha256(b""))], &[entry]);
        let line = refused(&import(tmp.path(), &bundle, &data), kind);
        assert!(line.contains(&name), "{line}");
        assert!(cached_files(&data).is_empty());
    }
}

#[test]
fn an_entry_given_twice_is_refused_with_a_true_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let contents: Vec<Vec<u8>> = (0..4).map(|i| format!("file {i}").into_bytes()).collect();
    let manifest: Vec<(String, String)> = contents
        .iter()
        .map(|c| (file_path(&sha256(c)), sha256(c)))
        .collect();
    let entry = |i: usize| Entry::File(manifest[i].0.clone(), &contents[i]);

    // One entry twice, all four there.
    let bundle = tmp.path().join("twice.tar");
    write_bundle(
        &bundle,
        &manifest,
        &[entry(0), entry(0), entry(1), entry(2), entry(3)],
    );
    refused(&import(tmp.path(), &bundle, &data), "appears twice");
    // One entry twice in place of a missing one.
    write_bundle(
        &bundle,
        &manifest,
        &[entry(0), entry(1), entry(2), entry(2)],
    );
    refused(&import(tmp.path(), &bundle, &data), "appears twice");
    assert!(cached_files(&data).is_empty());
    // A missing one alone is counted right.
    write_bundle(&bundle, &manifest, &[entry(0), entry(1), entry(2)]);
    refused(
        &import(tmp.path(), &bundle, &data),
        "1 of 4 entries are missing",
    );
}

#[test]
fn a_huge_manifest_and_entries_larger_than_the_disk_are_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 100 MB of manifest in a small compressed bundle.
    let bundle = tmp.path().join("bomb.tar.zst");
    {
        let file = std::fs::File::create(&bundle).unwrap();
        let mut tar = tar::Builder::new(zstd::Encoder::new(file, 3).unwrap().auto_finish());
        let mut header = tar::Header::new_gnu();
        let size = 100u64 << 20;
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        let filler = std::io::Read::take(std::io::repeat(b' '), size);
        tar.append_data(&mut header, "manifest.json", filler)
            .unwrap();
        tar.finish().unwrap();
    }
    assert!(std::fs::metadata(&bundle).unwrap().len() < 1 << 20);
    refused(
        &import(tmp.path(), &bundle, &data),
        "manifest is larger than",
    );

    // An entry that declares more than any disk has.
    let bundle = tmp.path().join("huge.tar");
    let name = file_path(&"ab".repeat(32));
    write_bundle(
        &bundle,
        &[(name.clone(), "ab".repeat(32))],
        &[Entry::Declared(name.clone(), 1 << 50)],
    );
    let line = refused(&import(tmp.path(), &bundle, &data), "MiB free");
    assert!(line.contains(&name), "{line}");
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_text_file_named_tar_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("notes.tar");
    std::fs::write(&bundle, "these are my notes\n".repeat(100)).unwrap();
    refused(
        &import(tmp.path(), &bundle, &tmp.path().join("data")),
        "not a devcache bundle",
    );
}

#[test]
fn an_interrupted_import_completes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let contents: Vec<Vec<u8>> = (0..3).map(|i| format!("wheel {i}").into_bytes()).collect();
    let bundle = tmp.path().join("cache.tar");
    let manifest = bundle_of_files(&bundle, &contents);
    let data = tmp.path().join("data");
    let out = import(tmp.path(), &bundle, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A kill -9 while publishing leaves some files published and the rest not.
    std::fs::remove_file(data.join(&manifest[1].0)).unwrap();
    std::fs::remove_file(data.join(&manifest[2].0)).unwrap();

    let out = import(tmp.path(), &bundle, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 added"), "{said}");
    assert!(said.contains("1 already here"), "{said}");
    for (name, c) in manifest.iter().zip(&contents) {
        assert_eq!(&std::fs::read(data.join(&name.0)).unwrap(), c);
    }
}

/// Imports `bundle` into a data directory on a tmpfs of its own (mounted in a mount
/// namespace of the import alone, with `options`), and says what the import printed
/// and what its data directory's `tmp/` and `files/` hold after it.
fn import_onto_tmpfs(dir: &Path, bundle: &Path, options: &str) -> (Output, String) {
    let mount = dir.join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let binary = env!("CARGO_BIN_EXE_devcache");
    let script = format!(
        "mount -t tmpfs -o {options} tmpfs '{m}' || exit 99
         '{binary}' import '{b}' --data-dir '{m}/data' >&2
         code=$?
         echo \"tmp $(ls -A '{m}/data/tmp' | wc -l) files $(find '{m}/data/files' -type f | wc -l)\"
         exit $code",
        m = mount.display(),
        b = bundle.display()
    );
    // The environment devcache_command gives, around unshare.
    let devcache = devcache_command(dir);
    let mut command = std::process::Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]).current_dir(dir);
    for (key, value) in devcache.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let out = command.output().unwrap();
    assert_ne!(out.status.code(), Some(99), "cannot mount a tmpfs");
    let left = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out, left)
}

/// Imports a bundle of `count` small distinct files (stored by hash) onto a tmpfs
/// mounted with `options`, as `import_onto_tmpfs` does.
fn small_files_onto_tmpfs(dir: &Path, count: usize, options: &str) -> (Output, String) {
    let contents: Vec<Vec<u8>> = (0..count)
        .map(|i| format!("small file {i}").into_bytes())
        .collect();
    let bundle = dir.join("many.tar");
    bundle_of_files(&bundle, &contents);
    import_onto_tmpfs(dir, &bundle, options)
}

#[test]
fn a_bundle_larger_than_the_disk_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    // 3,000 files of a few bytes: tiny as declared, but each takes a whole 4 KiB page
    // of an 8 MiB tmpfs, about 12 MiB in all.
    let (out, left) = small_files_onto_tmpfs(tmp.path(), 3000, "size=8m");
    let line = refused(&out, "MiB free");
    assert!(line.contains("nothing was imported"), "{line}");
    assert_eq!(left, "tmp 0 files 0", "{line}");
}

#[test]
fn a_disk_that_fills_during_an_import_stops_it_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for the bytes, but not for as many files: the disk fills while the entries
    // are written, after the check of their sizes.
    let (out, left) = small_files_onto_tmpfs(tmp.path(), 200, "size=8m,nr_inodes=64");
    let line = refused(&out, "cannot write entry files/");
    assert!(line.contains("nothing was imported"), "{line}");
    assert!(line.contains("free some space"), "{line}");
    assert_eq!(left, "tmp 0 files 0", "{line}");
}
