//! Choosing the page format a client asked for (PEP 691 content negotiation).

use axum::http::HeaderValue;

use crate::index::{html, json};

/// A page format and the Content-Type to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// PEP 691's HTML type, for clients that asked for it by name.
    Html,
    /// Plain `text/html`, for browsers and PEP 503 clients.
    LegacyHtml,
}

impl Format {
    /// A short name for the format, part of each representation's ETag.
    pub fn tag(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Html => "html",
            Format::LegacyHtml => "text",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => json::CONTENT_TYPE,
            Format::Html => html::CONTENT_TYPE,
            Format::LegacyHtml => "text/html; charset=utf-8",
        }
    }
}

/// The best format for an `Accept` header (q-values honoured, ties to the earlier
/// entry); `text/html` when there is no header or nothing we serve matches, which
/// is what PEP 503 clients expect.
pub fn choose(accept: Option<&str>, format_query: Option<&str>) -> Format {
    if let Some(query) = format_query
        && let Some(format) = media_format(query.trim())
    {
        return format;
    }
    let Some(accept) = accept else {
        return Format::LegacyHtml;
    };
    let mut best: Option<(f32, Format)> = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|v| v.trim().parse::<f32>().ok())
            })
            .next()
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        if let Some(format) = media_format(&media)
            && best.is_none_or(|(best_q, _)| q > best_q)
        {
            best = Some((q, format));
        }
    }
    best.map_or(Format::LegacyHtml, |(_, format)| format)
}

/// Whether an `Accept-Encoding` header accepts gzip (by name or by `*`, with a
/// non-zero q-value).
pub fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for entry in value.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let accepted = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .map(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0))
            .next()
            .unwrap_or(true);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(accepted),
            "*" => any = Some(accepted),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether an `If-None-Match` header names `etag` (weak comparison, as RFC 9110
/// asks for this header) or is `*`.
pub fn none_match(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    value
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

fn media_format(media: &str) -> Option<Format> {
    match media {
        "application/vnd.pypi.simple.v1+json" | "application/vnd.pypi.simple.latest+json" => {
            Some(Format::Json)
        }
        "application/vnd.pypi.simple.v1+html" | "application/vnd.pypi.simple.latest+html" => {
            Some(Format::Html)
        }
        "text/html" | "text/*" | "*/*" => Some(Format::LegacyHtml),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_q_values() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert_eq!(choose(Some(pip), None), Format::Json);
        let html_first =
            "application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html";
        assert_eq!(choose(Some(html_first), None), Format::Html);
        assert_eq!(choose(Some("text/html"), None), Format::LegacyHtml);
        assert_eq!(choose(Some("*/*"), None), Format::LegacyHtml);
        assert_eq!(choose(None, None), Format::LegacyHtml);
        assert_eq!(choose(Some("image/png"), None), Format::LegacyHtml);
        assert_eq!(
            choose(
                Some("application/vnd.pypi.simple.v1+json;q=0, text/html"),
                None
            ),
            Format::LegacyHtml
        );
    }

    #[test]
    fn gzip_is_chosen_by_name_or_star_unless_refused() {
        let accepts = |v: &str| accepts_gzip(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(accepts("gzip, deflate"));
        assert!(accepts("br;q=1.0, gzip;q=0.8"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0, *"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let matches = |v: &str| none_match(Some(&HeaderValue::from_str(v).unwrap()), "\"a-json\"");
        assert!(matches("\"a-json\""));
        assert!(matches("\"x\", W/\"a-json\""));
        assert!(matches("*"));
        assert!(!matches("\"a-html\""));
        assert!(!none_match(None, "\"a-json\""));
    }

    #[test]
    fn a_format_query_wins() {
        assert_eq!(
            choose(
                Some("text/html"),
                Some("application/vnd.pypi.simple.v1+json")
            ),
            Format::Json
        );
    }
}
