//! The JSON simple API (PEP 691, with PEP 700's sizes, upload times and versions, and
//! PEP 714's `core-metadata`): parsing upstream pages and rendering pages for clients.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::hashes::Hashes;
use super::name::ProjectName;
use super::page::{CoreMetadata, DistFile, ProjectPage};

pub const CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+json";

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UpstreamFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: Hashes,
    #[serde(default)]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: Option<Value>,
    #[serde(default)]
    core_metadata: Option<Value>,
    #[serde(default)]
    dist_info_metadata: Option<Value>,
    #[serde(default)]
    gpg_sig: Option<bool>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    upload_time: Option<String>,
}

/// Parses an upstream JSON page; relative file URLs are resolved against `page_url`.
/// Each file is converted as it is read, so a page of many thousands of links is never
/// held in two forms at once.
pub fn parse(name: ProjectName, body: &[u8], page_url: &Url) -> serde_json::Result<ProjectPage> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let (files, versions) = PageSeed { page_url }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(ProjectPage::new(name, files, versions))
}

/// Reads a page's `files` (through [`FilesSeed`]) and `versions`; other keys are skipped.
struct PageSeed<'u> {
    page_url: &'u Url,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = (Vec<DistFile>, Vec<String>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = (Vec<DistFile>, Vec<String>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a project page (PEP 691)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut files, mut versions) = (Vec::new(), Vec::new());
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "files" => {
                    files = map.next_value_seed(FilesSeed {
                        page_url: self.page_url,
                    })?;
                }
                "versions" => versions = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((files, versions))
    }
}

/// Reads a page's files one by one into [`DistFile`]s.
struct FilesSeed<'u> {
    page_url: &'u Url,
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_> {
    type Value = Vec<DistFile>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_> {
    type Value = Vec<DistFile>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of files")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut files = Vec::new();
        while let Some(file) = seq.next_element::<UpstreamFile>()? {
            files.extend(dist_file(file, self.page_url));
        }
        Ok(files)
    }
}

fn dist_file(file: UpstreamFile, page_url: &Url) -> Option<DistFile> {
    let mut url = page_url.join(&file.url).ok()?;
    // Only links devcache can fetch pass, as in the HTML form: never `file:`,
    // `javascript:` or `data:`.
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    // PEP 714: `core-metadata` is the new spelling of `dist-info-metadata`.
    let core_metadata = file
        .core_metadata
        .or(file.dist_info_metadata)
        .and_then(core_metadata);
    let yanked = match file.yanked {
        Some(Value::Bool(true)) => Some(String::new()),
        Some(Value::String(reason)) => Some(reason),
        _ => None,
    };
    Some(DistFile {
        filename: file.filename,
        url: url.into(),
        hashes: file.hashes,
        requires_python: file.requires_python.filter(|s| !s.is_empty()),
        yanked,
        core_metadata,
        size: file.size,
        upload_time: file.upload_time,
        gpg_sig: file.gpg_sig,
    })
}

fn core_metadata(value: Value) -> Option<CoreMetadata> {
    match value {
        Value::Bool(true) => Some(CoreMetadata::default()),
        Value::Object(map) => {
            let mut hashes = Hashes::default();
            for (name, digest) in &map {
                if let Some(digest) = digest.as_str() {
                    hashes.insert(name, digest);
                }
            }
            Some(CoreMetadata { hashes })
        }
        _ => None,
    }
}

#[derive(Serialize)]
struct Meta {
    #[serde(rename = "api-version")]
    api_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RenderedFile<'a> {
    filename: &'a str,
    url: String,
    hashes: &'a Hashes,
    #[serde(skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    /// PEP 714: only this key, never the old `dist-info-metadata`, which pip 22.3 to
    /// 23.1 read as an HTML attribute's string and crash on.
    #[serde(skip_serializing_if = "Option::is_none")]
    core_metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpg_sig: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    yanked: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(bound = "")]
struct RenderedPage<'a, F: Fn(&DistFile) -> String, O: Fn(&DistFile) -> bool> {
    meta: Meta,
    name: &'a str,
    files: RenderedFiles<'a, F, O>,
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<&'a [String]>,
}

/// The files, each rendered as it is written out: a page of many thousands of links
/// is never held twice.
struct RenderedFiles<'a, F, O> {
    files: &'a [DistFile],
    link: F,
    offers_metadata: O,
}

impl<F: Fn(&DistFile) -> String, O: Fn(&DistFile) -> bool> Serialize for RenderedFiles<'_, F, O> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.files
                .iter()
                .map(|file| rendered_file(file, &self.link, &self.offers_metadata)),
        )
    }
}

fn rendered_file<'a>(
    file: &'a DistFile,
    link: impl Fn(&DistFile) -> String,
    offers_metadata: impl Fn(&DistFile) -> bool,
) -> RenderedFile<'a> {
    let core_metadata = match &file.core_metadata {
        Some(m) if !m.hashes.is_empty() => {
            Some(serde_json::to_value(&m.hashes).unwrap_or(Value::Bool(true)))
        }
        Some(_) => Some(Value::Bool(true)),
        None => offers_metadata(file).then_some(Value::Bool(true)),
    };
    RenderedFile {
        filename: &file.filename,
        url: link(file),
        hashes: &file.hashes,
        requires_python: file.requires_python.as_deref(),
        core_metadata,
        gpg_sig: file.gpg_sig,
        yanked: file.yanked.as_ref().map(|reason| {
            if reason.is_empty() {
                Value::Bool(true)
            } else {
                Value::String(reason.clone())
            }
        }),
        size: file.size,
        upload_time: file.upload_time.as_deref(),
    }
}

/// Renders a project page. `link` gives the URL a client should fetch each file from,
/// and `offers_metadata` the files that offer core metadata (without a hash) though
/// the page gives none for them.
///
/// The page claims API version 1.1 only when every file has its size, since 1.1 makes
/// `size` and `versions` required; an HTML-only upstream gives no sizes.
pub fn render(
    page: &ProjectPage,
    link: impl Fn(&DistFile) -> String,
    offers_metadata: impl Fn(&DistFile) -> bool,
) -> Vec<u8> {
    let has_sizes = page.files.iter().all(|f| f.size.is_some());
    let rendered = RenderedPage {
        meta: Meta {
            api_version: if has_sizes { "1.1" } else { "1.0" },
        },
        name: page.name.as_str(),
        files: RenderedFiles {
            files: &page.files,
            link,
            offers_metadata,
        },
        versions: has_sizes.then_some(page.versions.as_slice()),
    };
    let mut out = Vec::with_capacity(256 + page.files.len() * 320);
    serde_json::to_writer(&mut out, &rendered).expect("a page always serialises");
    out.shrink_to_fit();
    out
}

/// Renders the root index: every project devcache has a page for.
pub fn render_index<'a>(names: impl Iterator<Item = &'a ProjectName>) -> Vec<u8> {
    let projects: Vec<Value> = names
        .map(|name| serde_json::json!({ "name": name.as_str() }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "meta": { "api-version": "1.0" },
        "projects": projects,
    }))
    .expect("an index always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_demo(body: &str) -> ProjectPage {
        let url = Url::parse("https://index.test/simple/demo/").unwrap();
        parse(ProjectName::parse("demo").unwrap(), body.as_bytes(), &url).unwrap()
    }

    #[test]
    fn only_http_links_pass() {
        let page = parse_demo(
            r#"{"meta":{"api-version":"1.1"},"name":"demo","files":[
              {"filename":"demo-1.0.tar.gz","url":"file:///etc/passwd","hashes":{}},
              {"filename":"demo-1.1.tar.gz","url":"javascript:alert(1)","hashes":{}},
              {"filename":"demo-1.2.tar.gz","url":"data:,x","hashes":{}},
              {"filename":"demo-1.3.tar.gz","url":"HTTPS://x.test/demo-1.3.tar.gz","hashes":{}}
            ]}"#,
        );
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["demo-1.3.tar.gz"]);
    }

    #[test]
    fn reads_pep_691_and_700_fields() {
        let page = parse_demo(
            &r#"{"meta":{"api-version":"1.1"},"name":"demo","versions":["1.0"],
            "files":[
              {"filename":"demo-1.0-py3-none-any.whl","url":"../../f/demo-1.0-py3-none-any.whl",
               "hashes":{"sha256":"AB"},"requires-python":">=3.8","dist-info-metadata":{"sha256":"cd"},
               "yanked":"oops","size":12,"upload-time":"2024-01-01T00:00:00Z"},
              {"filename":"demo-1.0.tar.gz","url":"https://x.test/demo-1.0.tar.gz","hashes":{},
               "core-metadata":true,"yanked":false,"size":3}
            ]}"#
            .replace("AB", &"AB".repeat(32))
            .replace("cd", &"cd".repeat(32)),
        );
        let wheel = &page.files[0];
        assert_eq!(wheel.url, "https://index.test/f/demo-1.0-py3-none-any.whl");
        assert_eq!(wheel.sha256(), Some("ab".repeat(32)));
        assert_eq!(wheel.yanked.as_deref(), Some("oops"));
        assert_eq!(
            wheel.core_metadata.as_ref().unwrap().sha256(),
            Some("cd".repeat(32))
        );
        assert_eq!(wheel.size, Some(12));
        let sdist = &page.files[1];
        assert_eq!(sdist.yanked, None);
        assert_eq!(sdist.core_metadata, Some(CoreMetadata::default()));
        assert_eq!(page.versions, vec!["1.0"]);
    }

    #[test]
    fn renders_core_metadata_without_the_old_key_and_version_1_1_when_sizes_are_known() {
        let page = parse_demo(
            r#"{"files":[{"filename":"demo-1.0-py3-none-any.whl","url":"x.whl",
            "hashes":{"sha256":"ab"},"core-metadata":{"sha256":"cd"},"yanked":true,"size":5}]}"#,
        );
        let json: Value =
            serde_json::from_slice(&render(&page, |_| "/f/x.whl".into(), |_| false)).unwrap();
        assert_eq!(json["meta"]["api-version"], "1.1");
        assert_eq!(json["versions"], serde_json::json!(["1.0"]));
        let file = &json["files"][0];
        assert_eq!(file["url"], "/f/x.whl");
        assert_eq!(file["core-metadata"]["sha256"], "cd");
        assert!(file.get("dist-info-metadata").is_none(), "{file}");
        assert_eq!(file["yanked"], true);
        assert_eq!(file["size"], 5);
    }

    #[test]
    fn renders_version_1_0_without_sizes() {
        let page =
            parse_demo(r#"{"files":[{"filename":"demo-1.0.tar.gz","url":"x","hashes":{}}]}"#);
        let json: Value =
            serde_json::from_slice(&render(&page, |_| "x".into(), |_| false)).unwrap();
        assert_eq!(json["meta"]["api-version"], "1.0");
        assert!(json.get("versions").is_none());
    }
}
