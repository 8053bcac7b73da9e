//! A folder as HTML, for a browser that asks for `text/html` (`/files/dir/`): names
//! escaped, links percent-encoded, a link up and into the web UI; no script.

use std::fmt::Write as _;

/// Whether the request prefers HTML to JSON (a browser's navigation does; `fetch`, curl
/// and ferry's client do not).
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let at = |t: &str| accept.find(t);
    match (at("text/html"), at("application/json")) {
        (Some(_), None) => true,
        (Some(h), Some(j)) => h < j,
        _ => false,
    }
}

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// One path segment percent-encoded for a URL.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One row of the page.
#[derive(Debug)]
pub struct Row<'a> {
    /// The entry's name.
    pub name: &'a str,
    /// A folder.
    pub dir: bool,
    /// Bytes.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
}

/// The page for folder `path` (`/a/b`, the tree path with a leading `/`).
pub fn page(path: &str, rows: &[Row<'_>]) -> String {
    let title = escape(if path.is_empty() { "/" } else { path });
    let ui = path.split('/').filter(|s| !s.is_empty()).map(encode_segment).collect::<Vec<_>>().join("/");
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — ferry</title><link rel=\"stylesheet\" href=\"/ui/app.css\"></head>\
         <body class=\"plain\"><main><h1>{title}</h1>\
         <p><a href=\"/#/files/{ui}\">Open in ferry's web app</a> (upload, rename, send)</p>\
         <table><thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr></thead><tbody>\n"
    );
    // Absolute links: the page may have been asked for without its trailing slash.
    let base = if ui.is_empty() { "/files".to_owned() } else { format!("/files/{ui}") };
    if let Some((parent, _)) = base.rsplit_once('/')
        && !ui.is_empty()
    {
        let _ = writeln!(out, "<tr><td><a href=\"{parent}/\">../</a></td><td></td><td></td></tr>");
    }
    for r in rows {
        let (href, shown) = if r.dir {
            (format!("{base}/{}/", encode_segment(r.name)), format!("{}/", escape(r.name)))
        } else {
            (format!("{base}/{}", encode_segment(r.name)), escape(r.name))
        };
        let size = if r.dir { String::new() } else { r.size.to_string() };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{href}\">{shown}</a></td><td>{size}</td><td>{}</td></tr>",
            ferry_core::utc::format_minute(r.mtime as i64)
        );
    }
    out.push_str("</tbody></table></main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_inert() {
        let rows = [Row { name: "<img src=x onerror=alert(1)>", dir: false, size: 3, mtime: 0 }];
        let html = page("/~alice/<b>", &rows);
        assert!(!html.contains("<img") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("href=\"/files/~alice/%3Cb%3E/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""), "{html}");
        assert!(html.contains("href=\"/files/~alice/\">../"), "{html}");
    }

    #[test]
    fn accept() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert("accept", "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap());
        assert!(wants_html(&h));
        h.insert("accept", "application/json, text/html".parse().unwrap());
        assert!(!wants_html(&h));
    }
}
