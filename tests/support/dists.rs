//! Distributions the test upstream serves: real wheels pip and uv can install, and
//! opaque files of any size for download tests.

use std::io::Write;

use base64::Engine;
use sha2::{Digest, Sha256};

/// A file on the test upstream.
#[derive(Clone)]
pub struct Dist {
    pub filename: String,
    pub bytes: Vec<u8>,
    pub requires_python: Option<String>,
    pub yanked: Option<String>,
    /// Core metadata served beside the file (PEP 658), when set.
    pub metadata: Option<Vec<u8>>,
}

impl Dist {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }
}

fn record_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A pure-Python wheel whose module `<name>` holds `VERSION = "<version>"`.
pub fn wheel(name: &str, version: &str, requires: &[&str]) -> Dist {
    wheel_with_data(name, version, requires, 0)
}

/// Like [`wheel`], with a module data file of `size` incompressible bytes (none for 0),
/// for a wheel larger than a resolver's first ranged read.
pub fn wheel_with_data(name: &str, version: &str, requires: &[&str], size: usize) -> Dist {
    wheel_with(name, version, requires, size, "")
}

/// Like [`wheel_with_data`], with a `METADATA` whose description (its body) is
/// `description`.
pub fn wheel_with(
    name: &str,
    version: &str,
    requires: &[&str],
    size: usize,
    description: &str,
) -> Dist {
    let module = name.replace('-', "_");
    let dist_info = format!("{module}-{version}.dist-info");
    let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    for requirement in requires {
        metadata.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    if !description.is_empty() {
        metadata.push_str(&format!("\n{description}"));
    }
    let mut files = vec![
        (
            format!("{module}/__init__.py"),
            format!("VERSION = \"{version}\"\n").into_bytes(),
        ),
        (format!("{dist_info}/METADATA"), metadata.clone().into_bytes()),
        (
            format!("{dist_info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: devcache-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    if size > 0 {
        files.insert(
            1,
            (format!("{module}/data.bin"), blob("data.bin", size).bytes),
        );
    }
    let mut record = String::new();
    for (path, bytes) in &files {
        record.push_str(&format!("{path},{},{}\n", record_hash(bytes), bytes.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (path, bytes) in files.iter().chain(std::iter::once(&(
        format!("{dist_info}/RECORD"),
        record.into_bytes(),
    ))) {
        zip.start_file(path.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    Dist {
        filename: format!("{module}-{version}-py3-none-any.whl"),
        bytes,
        requires_python: Some(">=3.7".into()),
        yanked: None,
        metadata: Some(metadata.into_bytes()),
    }
}

/// A file of `size` pseudo-random bytes under `filename`.
pub fn blob(filename: &str, size: usize) -> Dist {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ size as u64;
    let mut bytes = Vec::with_capacity(size);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    Dist {
        filename: filename.to_string(),
        bytes,
        requires_python: None,
        yanked: None,
        metadata: None,
    }
}

/// A static index (PEP 503 pages with sha256 fragments) of the given wheels, for an
/// index served from a container by Python's http.server.
pub fn static_index(dir: &std::path::Path, dists: &[(&str, Dist)]) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let mut pages: std::collections::BTreeMap<&str, String> = Default::default();
    for (project, dist) in dists {
        std::fs::write(dir.join("files").join(&dist.filename), &dist.bytes).unwrap();
        pages.entry(project).or_default().push_str(&format!(
            "<a href=\"../../files/{0}#sha256={1}\">{0}</a><br/>\n",
            dist.filename,
            dist.sha256()
        ));
    }
    for (project, links) in pages {
        let page_dir = dir.join("simple").join(project);
        std::fs::create_dir_all(&page_dir).unwrap();
        std::fs::write(
            page_dir.join("index.html"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n"),
        )
        .unwrap();
    }
}
