//! A wheel's core metadata (the `METADATA` member of its `.dist-info`
//! directory), read with as few and as small reads as the zip format allows.
//!
//! This module owns finding and extracting that one member, so devcache can
//! answer `<file>.metadata` (PEP 658) for wheels whose upstream serves none.
//! It does no I/O of its own: the caller hands in `read_at(offset, len)` and
//! the file's total length, so the same parsing serves ranged reads of the
//! upstream file and positioned reads of a verified cached copy.
//!
//! A zip archive is read from its end: the End Of Central Directory record
//! sits in the last 22 bytes plus a comment of at most 64 KiB, and gives the
//! place of the central directory, which lists every member with its sizes,
//! CRC and the offset of its local header. So the first read is the file's
//! last [`FIRST_TAIL_READ`] bytes (or the whole file when smaller), which for
//! most wheels holds the end record and the whole central directory and, for
//! small wheels, everything; only a long archive comment needs the tail again,
//! [`TAIL_READ`] long. Then, only when not already held: the ZIP64 end record
//! (large archives), the central directory, and one read of the member's local
//! header and data (again, whole, for the rare local extra field longer than
//! the read allowed). That makes 3 reads at most for a usual wheel, 1 for a
//! small one, and 6 at the very most. Small reads matter more than few: a
//! wheel's tail and its `METADATA` are a few KiB of a file often megabytes long.
//!
//! The zip structures are parsed here by hand: they are short and fully
//! specified, and the crates that parse them want a `Read + Seek` file or read
//! in their own chunk sizes, which would cost more round trips over HTTP.
//! Every offset and length from the file is checked before use (no panics,
//! no overflow), and the sizes are capped ([`MAX_METADATA`],
//! [`MAX_CENTRAL_DIRECTORY`]) so a hostile file cannot make us allocate or
//! inflate without bound. Inflating is flate2's (raw deflate); the result is
//! checked against the central directory's size and CRC-32.

use std::future::Future;
use std::io::{self, Read};

use bytes::Bytes;

/// The largest `METADATA` (uncompressed) this module extracts.
pub const MAX_METADATA: u64 = 16 * 1024 * 1024;

/// The largest central directory this module reads.
pub const MAX_CENTRAL_DIRECTORY: u64 = 64 * 1024 * 1024;

/// The first read: the file's last 16 KiB, which holds the end record of every
/// wheel without a long comment, and with it most wheels' central directory (uv
/// reads the same tail).
pub const FIRST_TAIL_READ: u64 = 16 * 1024;

/// The tail read again when the first did not hold the end record: its comment
/// (at most 64 KiB) and the ZIP64 locator before it.
pub const TAIL_READ: u64 = 66 * 1024;

/// What is read past a member's name for its local extra field, which is short in
/// practice (the read is made again, whole, for a longer one).
const LOCAL_EXTRA_ALLOWANCE: u64 = 1024;

/// Deflate can grow incompressible data a little (5 bytes per 64 KiB block).
const DEFLATE_SLACK: u64 = 64 * 1024;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;

/// Why a wheel's core metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("not a zip archive: {0}")]
    NotAZip(String),
    #[error("the wheel has no top-level .dist-info/METADATA")]
    NoMetadata,
    #[error("the wheel has several .dist-info/METADATA and none is the file name's: {0}")]
    Ambiguous(String),
    #[error("the {what} is {size} bytes, over the {limit} byte cap")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("unsupported zip feature: {0}")]
    Unsupported(String),
    #[error("reading the wheel: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt zip archive: {0}")]
    Corrupt(String),
}

/// True when `filename` names a wheel: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
pub fn is_wheel(filename: &str) -> bool {
    filename.strip_suffix(".whl").is_some_and(|stem| {
        matches!(stem.split('-').count(), 5 | 6) && stem.split('-').all(|part| !part.is_empty())
    })
}

/// The `METADATA` bytes of the wheel `filename`, `len` bytes long, read
/// through `read_at(offset, len)`, which must return exactly `len` bytes.
///
/// At most 4 calls of `read_at` (see the module header).
pub async fn core_metadata<F, Fut>(
    filename: &str,
    len: u64,
    mut read_at: F,
) -> Result<Bytes, WheelError>
where
    F: FnMut(u64, u64) -> Fut,
    Fut: Future<Output = io::Result<Bytes>>,
{
    let mut read = |offset: u64, want: u64| {
        let fut = read_at(offset, want);
        async move {
            let bytes = fut.await?;
            if bytes.len() as u64 != want {
                return Err(WheelError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("asked for {want} bytes at {offset}, got {}", bytes.len()),
                )));
            }
            Ok(Chunk { offset, bytes })
        }
    };

    if len < EOCD_LEN as u64 {
        return Err(WheelError::NotAZip("shorter than an end record".into()));
    }
    let tail_start = len.saturating_sub(FIRST_TAIL_READ);
    let mut tail = read(tail_start, len - tail_start).await?;
    let mut found = find_end(&tail);
    // An end record not in the first tail, or too near its start to see the ZIP64
    // locator before it: the longest tail a zip can need, once.
    let short = match &found {
        Ok(end) => end.offset - tail.offset < ZIP64_LOCATOR_LEN as u64,
        Err(_) => true,
    };
    if short && tail.offset > 0 {
        let tail_start = len.saturating_sub(TAIL_READ);
        tail = read(tail_start, len - tail_start).await?;
        found = find_end(&tail);
    }
    let end = found?;

    let (cd_offset, cd_size, cd_limit) = match end.zip64_record_offset {
        None => (end.cd_offset, end.cd_size, end.offset),
        Some(at) => {
            // `find_end` checked that it ends before the end record.
            let record = match tail.slice(at, ZIP64_EOCD_LEN as u64) {
                Some(bytes) => bytes,
                None => read(at, ZIP64_EOCD_LEN as u64).await?.bytes,
            };
            let (cd_offset, cd_size) = parse_zip64_end(&record)?;
            (cd_offset, cd_size, at)
        }
    };
    if cd_size > MAX_CENTRAL_DIRECTORY {
        return Err(WheelError::TooLarge {
            what: "central directory",
            size: cd_size,
            limit: MAX_CENTRAL_DIRECTORY,
        });
    }
    if cd_offset.checked_add(cd_size).is_none_or(|e| e > cd_limit) {
        return Err(corrupt("central directory is out of the file"));
    }
    let cd = match tail.slice(cd_offset, cd_size) {
        Some(bytes) => Chunk {
            offset: cd_offset,
            bytes,
        },
        None => read(cd_offset, cd_size).await?,
    };

    let member = choose_metadata(filename, central_entries(&cd.bytes)?)?;
    member.check_sizes()?;
    // Members come before the central directory: that bounds the member read.
    let before_cd = cd_offset
        .checked_sub(member.local_offset)
        .filter(|&room| room > 0)
        .ok_or_else(|| corrupt("member starts after the central directory"))?;

    // The local header, name, extra field and data; held already, or one read.
    let header_and_name = LOCAL_LEN as u64 + member.name.len() as u64;
    let exact = [&tail, &cd].into_iter().find_map(|chunk| {
        let header = chunk.slice(member.local_offset, LOCAL_LEN as u64)?;
        let extra_len = u64::from(le_u16(&header, 28)?);
        let whole = header_and_name
            .checked_add(extra_len)?
            .checked_add(member.compressed_size)?;
        chunk.slice(member.local_offset, whole)
    });
    let local = match exact {
        Some(bytes) => bytes,
        None => {
            let want = header_and_name
                .checked_add(LOCAL_EXTRA_ALLOWANCE)
                .and_then(|n| n.checked_add(member.compressed_size))
                .ok_or_else(|| corrupt("member sizes overflow"))?;
            let local = read(member.local_offset, want.min(before_cd)).await?.bytes;
            // A local extra field longer than the allowance: read the member whole.
            let whole = le_u16(&local, 28).and_then(|extra| {
                header_and_name
                    .checked_add(u64::from(extra))?
                    .checked_add(member.compressed_size)
            });
            match whole {
                Some(whole) if whole > local.len() as u64 && whole <= before_cd => {
                    read(member.local_offset, whole).await?.bytes
                }
                _ => local,
            }
        }
    };
    member.extract(&local)
}

/// [`core_metadata`] of a whole local file (the verified cached copy),
/// through positioned reads. Blocking: call it on the blocking pool.
pub fn core_metadata_of_file(filename: &str, file: &std::fs::File) -> Result<Bytes, WheelError> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let read_at = |offset: u64, want: u64| {
        let result = usize::try_from(want)
            .map_err(io::Error::other)
            .and_then(|want| {
                let mut buf = vec![0; want];
                file.read_exact_at(&mut buf, offset)?;
                Ok(Bytes::from(buf))
            });
        std::future::ready(result)
    };
    // Every read is ready at once, so this never waits on anything.
    futures::executor::block_on(core_metadata(filename, len, read_at))
}

/// [`core_metadata`] of a whole wheel held in memory (a small one, read by one `GET`).
pub fn core_metadata_of_bytes(filename: &str, wheel: &Bytes) -> Result<Bytes, WheelError> {
    let whole = Chunk {
        offset: 0,
        bytes: wheel.clone(),
    };
    let read_at = |offset: u64, want: u64| {
        let slice = whole
            .slice(offset, want)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof));
        std::future::ready(slice)
    };
    // Every read is ready at once, so this never waits on anything.
    futures::executor::block_on(core_metadata(filename, wheel.len() as u64, read_at))
}

fn corrupt(what: &str) -> WheelError {
    WheelError::Corrupt(what.to_string())
}

/// Bytes read at `offset` of the file.
struct Chunk {
    offset: u64,
    bytes: Bytes,
}

impl Chunk {
    /// The file's bytes `offset..offset + len` when this chunk holds them all.
    fn slice(&self, offset: u64, len: u64) -> Option<Bytes> {
        let start = usize::try_from(offset.checked_sub(self.offset)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.bytes.len()).then(|| self.bytes.slice(start..end))
    }
}

fn le_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        buf.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        buf.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// What the end records say.
struct End {
    /// Where the End Of Central Directory record starts in the file.
    offset: u64,
    cd_offset: u64,
    cd_size: u64,
    /// Where the ZIP64 end record starts, when the archive has one.
    zip64_record_offset: Option<u64>,
}

/// Finds and reads the End Of Central Directory record (and ZIP64 locator) in the tail.
fn find_end(tail: &Chunk) -> Result<End, WheelError> {
    let buf = &tail.bytes[..];
    let last = buf
        .len()
        .checked_sub(EOCD_LEN)
        .ok_or_else(|| WheelError::NotAZip("shorter than an end record".into()))?;
    // The last signature whose comment fits in the file: a comment may hold
    // anything, so search from the end as other readers do.
    let at = (0..=last)
        .rev()
        .find(|&at| {
            le_u32(buf, at) == Some(EOCD_SIG)
                && le_u16(buf, at + 20)
                    .is_some_and(|comment| at + EOCD_LEN + usize::from(comment) <= buf.len())
        })
        .ok_or_else(|| WheelError::NotAZip("no end of central directory record".into()))?;
    let field16 = |i| le_u16(buf, at + i).unwrap_or_default();
    let field32 = |i| le_u32(buf, at + i).unwrap_or_default();
    let offset = tail.offset + at as u64;

    let locator = at
        .checked_sub(ZIP64_LOCATOR_LEN)
        .filter(|&l| le_u32(buf, l) == Some(ZIP64_LOCATOR_SIG));
    let zip64_record_offset = match locator {
        Some(l) => {
            if le_u32(buf, l + 4) != Some(0) || le_u32(buf, l + 16).is_some_and(|disks| disks > 1) {
                return Err(WheelError::Unsupported("multi-disk ZIP64 archive".into()));
            }
            let record = le_u64(buf, l + 8).unwrap_or_default();
            let locator_offset = tail.offset + l as u64;
            if record
                .checked_add(ZIP64_EOCD_LEN as u64)
                .is_none_or(|e| e > locator_offset)
            {
                return Err(corrupt("ZIP64 end record is out of the file"));
            }
            Some(record)
        }
        // The ZIP64 record says the disks of a ZIP64 archive; this one of others.
        None if field16(4) != 0 || field16(6) != 0 => {
            return Err(WheelError::Unsupported("multi-disk archive".into()));
        }
        None => None,
    };
    Ok(End {
        offset,
        cd_offset: u64::from(field32(16)),
        cd_size: u64::from(field32(12)),
        zip64_record_offset,
    })
}

/// The central directory's offset and size from a ZIP64 end record.
fn parse_zip64_end(record: &[u8]) -> Result<(u64, u64), WheelError> {
    if le_u32(record, 0) != Some(ZIP64_EOCD_SIG) {
        return Err(corrupt("no ZIP64 end record where the locator points"));
    }
    if le_u32(record, 16) != Some(0) || le_u32(record, 20) != Some(0) {
        return Err(WheelError::Unsupported("multi-disk ZIP64 archive".into()));
    }
    let size = le_u64(record, 40).ok_or_else(|| corrupt("short ZIP64 end record"))?;
    let offset = le_u64(record, 48).ok_or_else(|| corrupt("short ZIP64 end record"))?;
    Ok((offset, size))
}

/// A member as the central directory describes it.
#[derive(Debug)]
struct Member {
    name: String,
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    uncompressed_size: u64,
    local_offset: u64,
}

/// The central directory's entries named `<something>.dist-info/METADATA`.
fn central_entries(cd: &[u8]) -> Result<Vec<Member>, WheelError> {
    let mut found = Vec::new();
    let mut at = 0usize;
    while at < cd.len() {
        let short = || corrupt("central directory entry runs past its end");
        let fixed = cd
            .get(at..at.checked_add(CENTRAL_LEN).ok_or_else(short)?)
            .ok_or_else(short)?;
        if le_u32(fixed, 0) != Some(CENTRAL_SIG) {
            return Err(corrupt("bad central directory entry signature"));
        }
        let f16 = |i| le_u16(fixed, i).unwrap_or_default();
        let f32 = |i| le_u32(fixed, i).unwrap_or_default();
        let (name_len, extra_len, comment_len) = (
            usize::from(f16(28)),
            usize::from(f16(30)),
            usize::from(f16(32)),
        );
        let name_start = at + CENTRAL_LEN;
        let extra_start = name_start + name_len;
        let next = extra_start + extra_len + comment_len;
        let name = cd.get(name_start..extra_start).ok_or_else(short)?;
        let extra = cd
            .get(extra_start..extra_start + extra_len)
            .ok_or_else(short)?;
        if next > cd.len() {
            return Err(short());
        }
        at = next;

        // Names that are not UTF-8 cannot be a dist-info directory's.
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if dist_info_stem(name).is_none() {
            continue;
        }
        let mut member = Member {
            name: name.to_string(),
            flags: f16(8),
            method: f16(10),
            crc32: f32(16),
            compressed_size: u64::from(f32(20)),
            uncompressed_size: u64::from(f32(24)),
            local_offset: u64::from(f32(42)),
        };
        apply_zip64_extra(&mut member, extra)?;
        found.push(member);
    }
    Ok(found)
}

/// Replaces the 32-bit fields that say "see ZIP64" (all ones) with the ZIP64
/// extra field's values, which hold only those fields, in this order.
fn apply_zip64_extra(member: &mut Member, extra: &[u8]) -> Result<(), WheelError> {
    let uncompressed = member.uncompressed_size == u64::from(u32::MAX);
    let compressed = member.compressed_size == u64::from(u32::MAX);
    let offset = member.local_offset == u64::from(u32::MAX);
    if !(uncompressed || compressed || offset) {
        return Ok(());
    }
    let mut at = 0usize;
    let data = loop {
        let (Some(id), Some(size)) = (le_u16(extra, at), le_u16(extra, at + 2)) else {
            return Err(corrupt("ZIP64 sizes without a ZIP64 extra field"));
        };
        let start = at + 4;
        let end = start + usize::from(size);
        let data = extra
            .get(start..end)
            .ok_or_else(|| corrupt("extra field runs past its end"))?;
        if id == ZIP64_EXTRA_ID {
            break data;
        }
        at = end;
    };
    let mut fields = data
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
    let mut next = || {
        fields
            .next()
            .ok_or_else(|| corrupt("short ZIP64 extra field"))
    };
    if uncompressed {
        member.uncompressed_size = next()?;
    }
    if compressed {
        member.compressed_size = next()?;
    }
    if offset {
        member.local_offset = next()?;
    }
    Ok(())
}

/// `stem` when `path` is `<stem>.dist-info/METADATA` at the top level.
fn dist_info_stem(path: &str) -> Option<&str> {
    let (dir, file) = path.split_once('/')?;
    (file == "METADATA").then_some(())?;
    dir.strip_suffix(".dist-info")
        .filter(|stem| !stem.is_empty())
}

/// Lowercase, with runs of `-`, `_` and `.` folded to one `-` (PEP 503, and
/// the escaping wheel tools apply to names in file and directory names).
fn fold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Picks the `METADATA` member: the only one, else the one whose directory
/// names the file's distribution and version, else the only one naming the
/// distribution.
fn choose_metadata(filename: &str, mut found: Vec<Member>) -> Result<Member, WheelError> {
    if found.len() <= 1 {
        return found.pop().ok_or(WheelError::NoMetadata);
    }
    let mut fields = filename.strip_suffix(".whl").unwrap_or(filename).split('-');
    let (name, version) = (
        fold(fields.next().unwrap_or_default()),
        fields.next().unwrap_or_default(),
    );
    let parts = |m: &Member| {
        let stem = dist_info_stem(&m.name).unwrap_or_default();
        let (n, v) = stem.rsplit_once('-').unwrap_or((stem, ""));
        (fold(n) == name, v.eq_ignore_ascii_case(version))
    };
    let exact: Vec<usize> = (0..found.len())
        .filter(|&i| parts(&found[i]) == (true, true))
        .collect();
    let by_name: Vec<usize> = (0..found.len()).filter(|&i| parts(&found[i]).0).collect();
    match (exact.as_slice(), by_name.as_slice()) {
        ([i], _) | ([], [i]) => Ok(found.swap_remove(*i)),
        _ => Err(WheelError::Ambiguous(
            found
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

impl Member {
    fn check_sizes(&self) -> Result<(), WheelError> {
        if self.flags & 1 != 0 {
            return Err(WheelError::Unsupported(format!(
                "{} is encrypted",
                self.name
            )));
        }
        let too_large = |size, limit| WheelError::TooLarge {
            what: "METADATA",
            size,
            limit,
        };
        if self.uncompressed_size > MAX_METADATA {
            return Err(too_large(self.uncompressed_size, MAX_METADATA));
        }
        if self.compressed_size > MAX_METADATA + DEFLATE_SLACK {
            return Err(too_large(
                self.compressed_size,
                MAX_METADATA + DEFLATE_SLACK,
            ));
        }
        match self.method {
            0 if self.compressed_size != self.uncompressed_size => {
                Err(corrupt("stored member whose sizes differ"))
            }
            0 | 8 => Ok(()),
            other => Err(WheelError::Unsupported(format!(
                "{} uses compression method {other} (only stored and deflate are read)",
                self.name
            ))),
        }
    }

    /// Checks the local header in `local` (read at the member's offset) and
    /// returns the member's uncompressed, CRC-checked bytes.
    fn extract(&self, local: &[u8]) -> Result<Bytes, WheelError> {
        if le_u32(local, 0) != Some(LOCAL_SIG) {
            return Err(corrupt(
                "no local header where the central directory points",
            ));
        }
        let name_len = usize::from(le_u16(local, 26).unwrap_or_default());
        let extra_len = usize::from(le_u16(local, 28).unwrap_or_default());
        let name_end = LOCAL_LEN + name_len;
        if local.get(LOCAL_LEN..name_end) != Some(self.name.as_bytes()) {
            return Err(corrupt(
                "local header names another member than the central directory",
            ));
        }
        let data_start = name_end + extra_len;
        let data = usize::try_from(self.compressed_size)
            .ok()
            .and_then(|n| local.get(data_start..data_start.checked_add(n)?))
            .ok_or_else(|| corrupt("member data runs into the central directory"))?;
        let expected = usize::try_from(self.uncompressed_size).map_err(io::Error::other)?;
        let out = if self.method == 0 {
            data.to_vec()
        } else {
            let mut out = Vec::with_capacity(expected);
            // One byte more than promised, to notice a member that inflates past its size.
            flate2::read::DeflateDecoder::new(data)
                .take(self.uncompressed_size + 1)
                .read_to_end(&mut out)
                .map_err(|e| WheelError::Corrupt(format!("inflating {}: {e}", self.name)))?;
            out
        };
        if out.len() != expected {
            return Err(WheelError::Corrupt(format!(
                "{} is {} bytes, the central directory says {expected}",
                self.name,
                out.len()
            )));
        }
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        if crc.sum() != self.crc32 {
            return Err(WheelError::Corrupt(format!(
                "{} fails its CRC-32 check ({:08x}, expected {:08x})",
                self.name,
                crc.sum(),
                self.crc32
            )));
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::{Cursor, Write};

    use zip::CompressionMethod::{Deflated, Stored};
    use zip::write::SimpleFileOptions;

    use super::*;

    const METADATA: &[u8] =
        b"Metadata-Version: 2.1\nName: friendly-bard\nVersion: 1.0\nRequires-Dist: idna\n";

    fn deflated() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(Deflated)
    }

    fn stored() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(Stored)
    }

    /// A zip of `members` in order, each with its options.
    fn zip_of(members: &[(&str, &[u8], SimpleFileOptions)]) -> Vec<u8> {
        zip_with(members, |_| {})
    }

    fn zip_with(
        members: &[(&str, &[u8], SimpleFileOptions)],
        tweak: impl FnOnce(&mut zip::ZipWriter<Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes, options) in members {
            zip.start_file(*name, *options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        tweak(&mut zip);
        zip.finish().unwrap().into_inner()
    }

    /// A plain small wheel with its METADATA compressed by `options`.
    fn small_wheel(options: SimpleFileOptions) -> Vec<u8> {
        zip_of(&[
            ("friendly_bard/__init__.py", b"print('hi')\n", deflated()),
            ("friendly_bard-1.0.dist-info/METADATA", METADATA, options),
            (
                "friendly_bard-1.0.dist-info/WHEEL",
                b"Wheel-Version: 1.0\n",
                deflated(),
            ),
            ("friendly_bard-1.0.dist-info/RECORD", b"", deflated()),
        ])
    }

    /// Bytes deflate cannot shrink (an xorshift stream).
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    const FILENAME: &str = "friendly_bard-1.0-py3-none-any.whl";

    /// Reads through ranged reads of `bytes`, returning the result and the
    /// reads made; also checks the local-file and in-memory paths give the same answer.
    fn ranged(filename: &str, bytes: &[u8]) -> (Result<Bytes, WheelError>, Vec<(u64, u64)>) {
        let file = Bytes::copy_from_slice(bytes);
        let reads = RefCell::new(Vec::new());
        let result = futures::executor::block_on(core_metadata(
            filename,
            file.len() as u64,
            |offset, len| {
                reads.borrow_mut().push((offset, len));
                let (start, end) = (offset as usize, (offset + len) as usize);
                std::future::ready(Ok(file.slice(start..end)))
            },
        ));

        let mut local = tempfile::tempfile().unwrap();
        local.write_all(bytes).unwrap();
        let from_file = core_metadata_of_file(filename, &local);
        assert_eq!(
            format!("{from_file:?}"),
            format!("{result:?}"),
            "ranged and local reads disagree"
        );
        let from_memory = core_metadata_of_bytes(filename, &file);
        assert_eq!(
            format!("{from_memory:?}"),
            format!("{result:?}"),
            "ranged and in-memory reads disagree"
        );
        (result, reads.into_inner())
    }

    /// What the zip crate reads for `member` (an independent reader).
    fn oracle(bytes: &[u8], member: &str) -> Vec<u8> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        archive
            .by_name(member)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Where the central directory entry for `member` starts.
    fn central_entry(bytes: &[u8], member: &str) -> usize {
        let name = member.as_bytes();
        (0..bytes.len() - CENTRAL_LEN)
            .rev()
            .find(|&at| {
                le_u32(bytes, at) == Some(CENTRAL_SIG)
                    && bytes.get(at + CENTRAL_LEN..at + CENTRAL_LEN + name.len()) == Some(name)
            })
            .expect("central entry")
    }

    fn patch_u32(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn names_wheels() {
        assert!(is_wheel(FILENAME));
        assert!(is_wheel(
            "numpy-2.1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl"
        ));
        assert!(!is_wheel("friendly_bard-1.0.tar.gz"));
        assert!(!is_wheel("friendly_bard-1.0.whl"));
        assert!(!is_wheel("friendly_bard-1.0--none-any.whl"));
        assert!(!is_wheel("a-1-2-3-4-5-6.whl"));
    }

    #[test]
    fn reads_a_small_wheel_in_one_read() {
        for options in [deflated(), stored(), deflated().with_alignment(4096)] {
            let wheel = small_wheel(options);
            let (result, reads) = ranged(FILENAME, &wheel);
            assert_eq!(result.unwrap(), METADATA);
            assert_eq!(reads, [(0, wheel.len() as u64)], "the whole file, once");
        }
    }

    /// A wheel whose central directory is larger than the tail read, with
    /// METADATA first (outside both) behind a padded local header.
    fn big_wheel() -> Vec<u8> {
        let padded = deflated().with_alignment(4096);
        let modules: Vec<String> = (0..1500)
            .map(|i| format!("friendly_bard/a/rather/long/package/path/module_{i:05}.py"))
            .collect();
        let mut members = vec![
            ("friendly_bard-1.0.dist-info/METADATA", METADATA, padded),
            ("friendly_bard/data.bin", &[][..], stored()),
        ];
        let data = noise(300 * 1024);
        members[1].1 = &data;
        members.extend(
            modules
                .iter()
                .map(|m| (m.as_str(), &b"x = 1\n"[..], deflated())),
        );
        zip_of(&members)
    }

    #[test]
    fn reads_a_big_wheel_with_a_long_local_extra_field_in_four_small_reads() {
        let wheel = big_wheel();
        assert!(
            le_u16(&wheel, 28).unwrap() > 1000,
            "a long local extra field"
        );
        let (result, reads) = ranged(FILENAME, &wheel);
        assert_eq!(result.unwrap(), METADATA);
        assert_eq!(
            reads.len(),
            4,
            "tail, central directory, member, member whole: {reads:?}"
        );
        let len = wheel.len() as u64;
        assert_eq!(reads[0], (len - FIRST_TAIL_READ, FIRST_TAIL_READ));
        assert!(
            reads[1].1 > FIRST_TAIL_READ,
            "the central directory is beyond the tail"
        );
        assert_eq!(reads[2].0, 0, "METADATA is the first member");
        assert_eq!(reads[3].0, 0, "read again, whole");
        assert!(
            reads[2].1 < 2 * 1024 && reads[3].1 < 8 * 1024,
            "small member reads: {reads:?}"
        );
    }

    #[test]
    fn reads_a_member_outside_the_tail_in_two_reads() {
        let data = noise(200 * 1024);
        let wheel = zip_of(&[
            ("friendly_bard-1.0.dist-info/METADATA", METADATA, deflated()),
            ("friendly_bard/data.bin", &data, stored()),
            ("friendly_bard-1.0.dist-info/RECORD", b"", deflated()),
        ]);
        let (result, reads) = ranged(FILENAME, &wheel);
        assert_eq!(result.unwrap(), METADATA);
        assert_eq!(
            reads.len(),
            2,
            "tail (with the central directory), member: {reads:?}"
        );
    }

    #[test]
    fn reads_zip64_archives() {
        let zip64 = deflated().large_file(true);
        let wheel = zip_with(
            &[
                ("friendly_bard/__init__.py", b"", zip64),
                ("friendly_bard-1.0.dist-info/METADATA", METADATA, zip64),
            ],
            |zip| zip.set_raw_zip64_extensible_data_sector(Box::new([])),
        );
        let entry = central_entry(&wheel, "friendly_bard-1.0.dist-info/METADATA");
        assert_eq!(
            le_u32(&wheel, entry + 24),
            Some(u32::MAX),
            "sizes in the ZIP64 extra"
        );
        let locator = wheel.len() - EOCD_LEN - ZIP64_LOCATOR_LEN;
        assert_eq!(le_u32(&wheel, locator), Some(ZIP64_LOCATOR_SIG));
        let (result, reads) = ranged(FILENAME, &wheel);
        assert_eq!(result.unwrap(), METADATA);
        assert_eq!(reads.len(), 1);
    }

    #[test]
    fn reads_a_zip64_end_record_outside_the_tail_within_four_reads() {
        let zip64 = deflated().large_file(true);
        let data = noise(200 * 1024);
        let wheel = zip_with(
            &[
                ("friendly_bard-1.0.dist-info/METADATA", METADATA, zip64),
                ("friendly_bard/data.bin", &data, stored()),
            ],
            |zip| zip.set_raw_zip64_extensible_data_sector(vec![0; 80 * 1024].into()),
        );
        let (result, reads) = ranged(FILENAME, &wheel);
        assert_eq!(result.unwrap(), METADATA);
        assert_eq!(
            reads.len(),
            4,
            "tail, ZIP64 end, central directory, member: {reads:?}"
        );
        assert_eq!(reads[1].1, ZIP64_EOCD_LEN as u64);
    }

    #[test]
    fn matches_the_zip_crate_on_every_shape() {
        for wheel in [small_wheel(deflated()), small_wheel(stored()), big_wheel()] {
            let (result, _) = ranged(FILENAME, &wheel);
            assert_eq!(
                result.unwrap(),
                oracle(&wheel, "friendly_bard-1.0.dist-info/METADATA")
            );
        }
    }

    fn wheel_with_dist_infos(dirs: &[&str]) -> Vec<u8> {
        let names: Vec<String> = dirs
            .iter()
            .map(|d| format!("{d}.dist-info/METADATA"))
            .collect();
        let members: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), n.as_bytes(), deflated()))
            .collect();
        zip_of(&members)
    }

    fn chosen(dirs: &[&str]) -> Result<String, WheelError> {
        let (result, _) = ranged(FILENAME, &wheel_with_dist_infos(dirs));
        result.map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn finds_the_dist_info_of_the_file_name() {
        // The only one is used, whatever its spelling.
        for dir in [
            "FrIeNdLy-._.-bArD-1.0",
            "friendly.bard-1.0",
            "Friendly_Bard-1.0+local",
        ] {
            assert_eq!(chosen(&[dir]).unwrap(), format!("{dir}.dist-info/METADATA"));
        }
        // Among several, the one naming the distribution and version...
        assert_eq!(
            chosen(&["other-1.0", "FrIeNdLy-._.-bArD-1.0", "friendly_bard-2.0"]).unwrap(),
            "FrIeNdLy-._.-bArD-1.0.dist-info/METADATA"
        );
        // ...else the only one naming the distribution.
        assert_eq!(
            chosen(&["other-1.0", "friendly_bard-1.0.post0"]).unwrap(),
            "friendly_bard-1.0.post0.dist-info/METADATA"
        );
    }

    #[test]
    fn refuses_several_dist_infos_that_do_not_single_one_out() {
        for dirs in [
            &["other-1.0", "another-1.0"][..],
            &["friendly_bard-1.0", "Friendly.Bard-1.0"],
            &["friendly_bard-1.1", "friendly_bard-1.2"],
        ] {
            assert!(
                matches!(chosen(dirs), Err(WheelError::Ambiguous(_))),
                "{dirs:?}"
            );
        }
    }

    #[test]
    fn needs_a_top_level_metadata() {
        let wheel = zip_of(&[
            ("friendly_bard/__init__.py", b"", deflated()),
            (
                "vendored/other-1.0.dist-info/METADATA",
                METADATA,
                deflated(),
            ),
            ("friendly_bard-1.0.dist-info/metadata", METADATA, deflated()),
            (
                "friendly_bard-1.0.dist-info/METADATA/x",
                METADATA,
                deflated(),
            ),
            ("friendly_bard-1.0.data/METADATA", METADATA, deflated()),
            ("friendly_bard-1.0.dist-info/WHEEL", b"", deflated()),
        ]);
        assert!(matches!(
            ranged(FILENAME, &wheel).0,
            Err(WheelError::NoMetadata)
        ));
        assert!(matches!(
            ranged(FILENAME, &zip_of(&[])).0,
            Err(WheelError::NoMetadata)
        ));
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        let (result, reads) = ranged(FILENAME, b"");
        assert!(matches!(result, Err(WheelError::NotAZip(_))));
        assert!(reads.is_empty());
        for garbage in [noise(100), noise(200 * 1024), b"PK\x05\x06".repeat(10)] {
            let (result, reads) = ranged(FILENAME, &garbage);
            assert!(matches!(result, Err(WheelError::NotAZip(_))), "{result:?}");
            // The first tail, and for a larger file the longest tail a comment allows.
            let tails = if garbage.len() as u64 > FIRST_TAIL_READ {
                2
            } else {
                1
            };
            assert_eq!(reads.len(), tails);
        }
    }

    #[test]
    fn refuses_truncated_files() {
        for wheel in [small_wheel(deflated()), big_wheel()] {
            for keep in [wheel.len() - 1, wheel.len() - 30, wheel.len() / 2, 10] {
                let (result, _) = ranged(FILENAME, &wheel[..keep]);
                assert!(
                    matches!(result, Err(WheelError::NotAZip(_) | WheelError::Corrupt(_))),
                    "{keep}: {result:?}"
                );
            }
            // Bytes lost at the start: every offset points at the wrong place.
            let (result, _) = ranged(FILENAME, &wheel[100..]);
            assert!(matches!(result, Err(WheelError::Corrupt(_))), "{result:?}");
        }
    }

    #[test]
    fn caps_what_a_member_claims() {
        let member = "friendly_bard-1.0.dist-info/METADATA";
        for stored_member in [false, true] {
            let mut wheel = small_wheel(if stored_member { stored() } else { deflated() });
            let entry = central_entry(&wheel, member);
            patch_u32(&mut wheel, entry + 24, 0xffff_fffe);
            let (result, _) = ranged(FILENAME, &wheel);
            assert!(
                matches!(
                    result,
                    Err(WheelError::TooLarge {
                        size: 0xffff_fffe,
                        ..
                    })
                ),
                "{result:?}"
            );
        }

        // ZIP64 sizes are capped alike.
        let zip64 = deflated().large_file(true);
        let mut wheel = zip_of(&[(member, METADATA, zip64)]);
        let entry = central_entry(&wheel, member);
        let extra = entry + CENTRAL_LEN + member.len();
        assert_eq!(le_u16(&wheel, extra), Some(ZIP64_EXTRA_ID));
        wheel[extra + 4..extra + 12].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            ranged(FILENAME, &wheel).0,
            Err(WheelError::TooLarge {
                size: 0x100_0000_0000,
                ..
            })
        ));
    }

    #[test]
    fn checks_size_and_crc() {
        let member = "friendly_bard-1.0.dist-info/METADATA";
        let wheel = small_wheel(deflated());
        let entry = central_entry(&wheel, member);

        let mut bad_crc = wheel.clone();
        bad_crc[entry + 16] ^= 1;
        assert!(matches!(
            ranged(FILENAME, &bad_crc).0,
            Err(WheelError::Corrupt(_))
        ));

        // A member that inflates past the size the directory promises.
        let mut short = wheel.clone();
        patch_u32(&mut short, entry + 24, 10);
        assert!(matches!(
            ranged(FILENAME, &short).0,
            Err(WheelError::Corrupt(_))
        ));

        // Compressed bytes changed under a good directory.
        let mut data = wheel.clone();
        let local = le_u32(&wheel, entry + 42).unwrap() as usize;
        data[local + LOCAL_LEN + member.len() + 3] ^= 0x55;
        assert!(matches!(
            ranged(FILENAME, &data).0,
            Err(WheelError::Corrupt(_))
        ));
    }

    #[test]
    fn refuses_other_compression_methods() {
        let member = "friendly_bard-1.0.dist-info/METADATA";
        let mut wheel = small_wheel(deflated());
        let entry = central_entry(&wheel, member);
        wheel[entry + 10] = 12; // bzip2
        let (result, _) = ranged(FILENAME, &wheel);
        assert!(
            matches!(result, Err(WheelError::Unsupported(_))),
            "{result:?}"
        );
    }

    #[test]
    fn refuses_a_local_header_naming_another_member() {
        let member = "friendly_bard-1.0.dist-info/METADATA";
        let mut wheel = small_wheel(deflated());
        let entry = central_entry(&wheel, member);
        let local = le_u32(&wheel, entry + 42).unwrap() as usize;
        wheel[local + LOCAL_LEN] = b'X';
        assert!(matches!(
            ranged(FILENAME, &wheel).0,
            Err(WheelError::Corrupt(_))
        ));
    }

    /// Whatever byte is damaged, reading ends in a result or an error, never
    /// a panic, and asks only for bytes inside the file, in at most 6 reads.
    #[test]
    fn survives_any_damaged_byte() {
        let zip64 = deflated().large_file(true);
        let zip64_wheel = zip_with(
            &[("friendly_bard-1.0.dist-info/METADATA", METADATA, zip64)],
            |zip| zip.set_raw_zip64_extensible_data_sector(Box::new([])),
        );
        for wheel in [small_wheel(deflated()), small_wheel(stored()), zip64_wheel] {
            for at in 0..wheel.len() {
                for value in [0x00, 0xff, wheel[at] ^ 0x01] {
                    let mut damaged = wheel.clone();
                    damaged[at] = value;
                    let (_, reads) = ranged(FILENAME, &damaged);
                    assert!(reads.len() <= 6, "{at}: {reads:?}");
                }
            }
        }
    }

    #[test]
    fn reports_short_reads() {
        let wheel = Bytes::from(small_wheel(deflated()));
        let result = futures::executor::block_on(core_metadata(
            FILENAME,
            wheel.len() as u64,
            |offset, len| {
                let end = (offset + len - 1) as usize;
                std::future::ready(Ok(wheel.slice(offset as usize..end)))
            },
        ));
        assert!(
            matches!(&result, Err(WheelError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{result:?}"
        );
    }

    /// Real wheels, from every build backend `.ci/wheels` pins, read by ranges
    /// and checked against the zip crate. `.ci/wheels` (run by `.ci/run`) puts
    /// them in target/real-wheels; DEVCACHE_TEST_WHEELS names another folder.
    #[test]
    fn reads_real_wheels() {
        let dir = std::env::var_os("DEVCACHE_TEST_WHEELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/real-wheels")
            });
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `bash .ci/wheels` once (`bash .ci/run` does), or set DEVCACHE_TEST_WHEELS",
                dir.display()
            )
        });
        let mut seen = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let filename = path.file_name().unwrap().to_str().unwrap().to_string();
            if !is_wheel(&filename) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let (result, reads) = ranged(&filename, &bytes);
            let metadata = result.unwrap_or_else(|e| panic!("{filename}: {e}"));
            let archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
            let member = archive
                .file_names()
                .filter_map(|n| Some(n.ok()?.into_owned()))
                .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)
                .unwrap();
            assert_eq!(metadata, oracle(&bytes, &member), "{filename}");
            assert!(reads.len() <= 3, "{filename}: {reads:?}");
            seen += 1;
        }
        assert!(
            seen > 0,
            "{}: no wheels; `.ci/wheels` fetches 16",
            dir.display()
        );
    }
}
