//! The HTML simple API (PEP 503 with PEP 592, 658 and 714 attributes): parsing
//! upstream pages and rendering pages for clients.

use url::Url;

use super::hashes::Hashes;
use super::name::ProjectName;
use super::page::{CoreMetadata, DistFile, ProjectPage};

pub const CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+html";

/// Parses an upstream project page. `page_url` is the URL the page was read from
/// (after redirects), against which relative links are resolved.
pub fn parse(name: ProjectName, body: &str, page_url: &Url) -> ProjectPage {
    let mut base = page_url.clone();
    let mut files = Vec::new();
    for tag in Tags::new(body) {
        match tag.name.as_str() {
            "base" => {
                if let Some(href) = tag.attr("href")
                    && let Ok(url) = page_url.join(href)
                {
                    base = url;
                }
            }
            "a" => {
                if let Some(file) = dist_file(&tag, &base) {
                    files.push(file);
                }
            }
            _ => {}
        }
    }
    ProjectPage::new(name, files, Vec::new())
}

fn dist_file(anchor: &Tag, base: &Url) -> Option<DistFile> {
    let mut url = base.join(anchor.attr("href")?).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let mut hashes = Hashes::default();
    if let Some((algorithm, digest)) = url.fragment().and_then(|f| f.split_once('=')) {
        hashes.insert(algorithm, digest);
    }
    url.set_fragment(None);
    let text = anchor.text.trim();
    let filename = if text.is_empty() {
        let last = url.path_segments()?.next_back()?;
        percent_encoding::percent_decode_str(last)
            .decode_utf8()
            .ok()?
            .into_owned()
    } else {
        text.to_string()
    };
    if filename.is_empty() || filename.contains('/') {
        return None;
    }
    // PEP 714 renamed data-dist-info-metadata to data-core-metadata; read either.
    let core_metadata = anchor
        .attr("data-core-metadata")
        .or_else(|| anchor.attr("data-dist-info-metadata"))
        .and_then(core_metadata);
    Some(DistFile {
        filename,
        url: url.into(),
        hashes,
        requires_python: anchor
            .attr("data-requires-python")
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
        yanked: anchor.attr("data-yanked").map(str::to_string),
        core_metadata,
        size: None,
        upload_time: None,
        gpg_sig: anchor.attr("data-gpg-sig").map(|v| v == "true"),
    })
}

fn core_metadata(value: &str) -> Option<CoreMetadata> {
    if value == "false" {
        return None;
    }
    let mut hashes = Hashes::default();
    if let Some((algorithm, digest)) = value.split_once('=') {
        hashes.insert(algorithm, digest);
    }
    Some(CoreMetadata { hashes })
}

/// Renders a project page. `link` gives the URL a client should fetch each file from,
/// and `offers_metadata` the files that offer core metadata (without a hash) though
/// the page gives none for them.
pub fn render(
    page: &ProjectPage,
    link: impl Fn(&DistFile) -> String,
    offers_metadata: impl Fn(&DistFile) -> bool,
) -> String {
    let offered = CoreMetadata::default();
    let title = escape(page.name.as_str());
    let mut out = String::with_capacity(256 + page.files.len() * 256);
    out.push_str("<!DOCTYPE html>\n<html>\n<head>\n");
    out.push_str("<meta name=\"pypi:repository-version\" content=\"1.1\">\n");
    out.push_str(&format!(
        "<title>Links for {title}</title>\n</head>\n<body>\n<h1>Links for {title}</h1>\n"
    ));
    for file in &page.files {
        let mut href = link(file);
        if let Some((algorithm, digest)) = file.hashes.preferred() {
            href.push_str(&format!("#{algorithm}={digest}"));
        }
        out.push_str(&format!("<a href=\"{}\"", escape(&href)));
        if let Some(requires) = &file.requires_python {
            out.push_str(&format!(" data-requires-python=\"{}\"", escape(requires)));
        }
        let metadata = file
            .core_metadata
            .as_ref()
            .or_else(|| offers_metadata(file).then_some(&offered));
        if let Some(metadata) = metadata {
            let value = match metadata.hashes.preferred() {
                Some((algorithm, digest)) => format!("{algorithm}={digest}"),
                None => "true".to_string(),
            };
            // PEP 714 allows the old attribute beside the new one in HTML (never in
            // JSON), with the same value, for HTML clients that know only the old one.
            out.push_str(&format!(
                " data-dist-info-metadata=\"{value}\" data-core-metadata=\"{value}\""
            ));
        }
        if let Some(sig) = file.gpg_sig {
            out.push_str(&format!(" data-gpg-sig=\"{sig}\""));
        }
        if let Some(reason) = &file.yanked {
            out.push_str(&format!(" data-yanked=\"{}\"", escape(reason)));
        }
        out.push_str(&format!(">{}</a><br/>\n", escape(&file.filename)));
    }
    out.push_str("</body>\n</html>\n");
    out.shrink_to_fit();
    out
}

/// Renders the root index: one link per project.
pub fn render_index<'a>(names: impl Iterator<Item = &'a ProjectName>) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.1\">\n<title>Simple index</title>\n</head>\n<body>\n",
    );
    for name in names {
        out.push_str(&format!("<a href=\"{name}/\">{name}</a><br/>\n"));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Escapes text for use in HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One start tag with its decoded attributes and, for `<a>`, its text.
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A small scanner over the start tags of a page. Simple-API pages are flat lists
/// of anchors, so a full HTML parser buys nothing; this one copes with any
/// attribute quoting, entities, comments and case.
struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Tags<'a> {
    fn new(html: &'a str) -> Self {
        Self { rest: html }
    }
}

impl Iterator for Tags<'_> {
    type Item = Tag;

    fn next(&mut self) -> Option<Tag> {
        loop {
            let at = self.rest.find('<')?;
            self.rest = &self.rest[at + 1..];
            if let Some(after) = self.rest.strip_prefix("!--") {
                self.rest = after.find("-->").map_or("", |end| &after[end + 3..]);
                continue;
            }
            let name_len = self
                .rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(self.rest.len());
            if name_len == 0 {
                continue;
            }
            let name = self.rest[..name_len].to_ascii_lowercase();
            self.rest = &self.rest[name_len..];
            let attrs = self.attributes();
            let text = if name == "a" {
                let end = find_ignore_case(self.rest, "</a").unwrap_or(self.rest.len());
                let inner = &self.rest[..end];
                self.rest = &self.rest[end..];
                unescape(&strip_tags(inner))
            } else {
                String::new()
            };
            return Some(Tag { name, attrs, text });
        }
    }
}

impl Tags<'_> {
    /// Reads attributes up to the end of the current start tag.
    fn attributes(&mut self) -> Vec<(String, String)> {
        let mut attrs = Vec::new();
        loop {
            self.rest = self
                .rest
                .trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if self.rest.is_empty() {
                return attrs;
            }
            if let Some(after) = self.rest.strip_prefix('>') {
                self.rest = after;
                return attrs;
            }
            let key_len = self
                .rest
                .find(|c: char| c.is_whitespace() || matches!(c, '=' | '>' | '/'))
                .unwrap_or(self.rest.len())
                .max(1);
            let key = self.rest[..key_len].to_ascii_lowercase();
            self.rest = self.rest[key_len..].trim_start();
            let mut value = String::new();
            if let Some(after) = self.rest.strip_prefix('=') {
                let after = after.trim_start();
                let (raw, rest) = match after.chars().next() {
                    Some(quote @ ('"' | '\'')) => {
                        let body = &after[1..];
                        let end = body.find(quote).unwrap_or(body.len());
                        (&body[..end], body.get(end + 1..).unwrap_or(""))
                    }
                    _ => {
                        let end = after
                            .find(|c: char| c.is_whitespace() || c == '>')
                            .unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                value = unescape(raw);
                self.rest = rest;
            }
            attrs.push((key, value));
        }
    }
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> ProjectPage {
        let url = Url::parse("https://index.test/simple/demo/").unwrap();
        parse(ProjectName::parse("demo").unwrap(), body, &url)
    }

    #[test]
    fn reads_every_attribute_clients_use() {
        let body = r#"<!DOCTYPE html><html><body>
            <!-- <a href="commented-out.whl">no</a> -->
            <A HREF="../../files/demo-1.0-py3-none-any.whl#sha256=ABCD" data-requires-python="&gt;=3.8"
               data-dist-info-metadata="sha256=BEEF" data-yanked="broken &amp; bad">demo-1.0-py3-none-any.whl</A><br/>
            <a href='https://other.test/demo-1.0.tar.gz#md5=0f' data-core-metadata=true>demo-1.0.tar.gz</a>
            <a href=demo-2.0.zip data-yanked>demo-2.0.zip</a>
            </body></html>"#
            .replace("ABCD", &"AB".repeat(32))
            .replace("BEEF", &"be".repeat(32));
        let page = page(&body);
        assert_eq!(page.files.len(), 3);
        let wheel = &page.files[0];
        assert_eq!(wheel.filename, "demo-1.0-py3-none-any.whl");
        assert_eq!(
            wheel.url,
            "https://index.test/files/demo-1.0-py3-none-any.whl"
        );
        assert_eq!(wheel.sha256(), Some("ab".repeat(32)));
        assert_eq!(wheel.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(wheel.yanked.as_deref(), Some("broken & bad"));
        assert_eq!(
            wheel.core_metadata.as_ref().unwrap().sha256(),
            Some("be".repeat(32))
        );
        let sdist = &page.files[1];
        assert_eq!(sdist.hashes.preferred(), Some(("md5", "0f".to_string())));
        assert_eq!(sdist.core_metadata, Some(CoreMetadata::default()));
        assert_eq!(sdist.yanked, None);
        let zip = &page.files[2];
        assert_eq!(zip.url, "https://index.test/simple/demo/demo-2.0.zip");
        assert_eq!(zip.yanked.as_deref(), Some(""));
        assert_eq!(page.versions, vec!["1.0", "2.0"]);
    }

    #[test]
    fn honours_a_base_tag_and_names_files_from_urls() {
        let page = page(r#"<base href="https://cdn.test/pkgs/"><a href="demo-1.0.tar.gz"></a>"#);
        assert_eq!(page.files[0].url, "https://cdn.test/pkgs/demo-1.0.tar.gz");
        assert_eq!(page.files[0].filename, "demo-1.0.tar.gz");
    }

    #[test]
    fn ignores_links_that_are_not_files() {
        let page = page(r#"<a href="mailto:x@y">x</a><a>no href</a><a href="javascript:x">y</a>"#);
        assert!(page.files.is_empty());
    }

    #[test]
    fn rendering_then_parsing_keeps_every_attribute() {
        let original = page(
            r#"<a href="demo-1.0-py3-none-any.whl#sha256=ab" data-requires-python="&lt;4,&gt;=3.8"
               data-core-metadata="sha256=cd" data-yanked="it&#39;s &quot;bad&quot;">demo-1.0-py3-none-any.whl</a>"#,
        );
        let html = render(&original, |f| format!("/files/{}", f.filename), |_| false);
        assert!(
            html.contains(r#"data-requires-python="&lt;4,&gt;=3.8""#),
            "{html}"
        );
        assert!(
            html.contains(r#"data-dist-info-metadata="sha256=cd" data-core-metadata="sha256=cd""#),
            "{html}"
        );
        let again = page(&html);
        assert_eq!(
            again.files[0].requires_python,
            original.files[0].requires_python
        );
        assert_eq!(again.files[0].yanked, original.files[0].yanked);
        assert_eq!(
            again.files[0].core_metadata,
            original.files[0].core_metadata
        );
        assert_eq!(again.files[0].hashes, original.files[0].hashes);
        assert_eq!(
            again.files[0].url,
            "https://index.test/files/demo-1.0-py3-none-any.whl"
        );
    }
}
