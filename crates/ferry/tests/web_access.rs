//! Issue 15, the server's side of browsers: the embedded web app and its headers, CORS for
//! apps on other origins (preflights, exposed headers, listed origins), the web session
//! cookie with its CSRF token and origin check, and HTML folder listings with inert names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use common::*;

fn login_cookie(addr: &str, user: &str, origin: Option<&str>) -> Resp {
    let body = format!(r#"{{"user":"{user}","password":"{user}-pw","cookie":true}}"#);
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(o) = origin {
        h.push(("Origin", o));
    }
    request(addr, "POST", "/api/login", &h, body.as_bytes())
}

/// The session cookie (`name=value`) and CSRF token of a web login.
fn session(addr: &str, user: &str) -> (String, String) {
    let r = login_cookie(addr, user, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_owned();
    for part in ["ferry_session=fy_", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{part} in {set}");
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v.get("token").is_none(), "the page never sees the token: {v}");
    (set.split(';').next().unwrap().to_owned(), v["csrf"].as_str().unwrap().to_owned())
}

#[test]
fn the_web_app_is_served_whole_with_a_strict_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_auth(&tmp.path().join("data"), &[]);
    let page = request(&s.addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    for part in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    // WebAssembly may be compiled (the SHA-256); JavaScript may not be evaluated.
    let script_src = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src")).unwrap();
    assert_eq!(script_src, "script-src 'self' 'wasm-unsafe-eval'", "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains(" 'unsafe-eval'"), "{csp}");
    let html = page.text();
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
    // Every file the page names is served, with its type; nothing from another host.
    let mut named = 0;
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let url = piece.split('"').next().unwrap();
            if url.starts_with('#') || url.starts_with("data:") {
                continue;
            }
            assert!(url.starts_with("/ui/"), "only the server's own files: {url}");
            let r = request(&s.addr, "GET", url, &[], b"");
            assert_eq!(r.status, 200, "{url}");
            let kind = r.header("content-type").unwrap();
            assert!(
                kind.starts_with(if url.ends_with(".css") { "text/css" } else { "text/javascript" }),
                "{url}: {kind}"
            );
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            named += 1;
        }
    }
    assert_eq!(named, 4, "app.css, tus.min.js, hash-wasm-sha256.min.js, app.js");
    assert_eq!(request(&s.addr, "GET", "/ui/../Cargo.toml", &[], b"").status, 404);
    assert_eq!(request(&s.addr, "GET", "/ui/vendor/LICENSE-tus-js-client", &[], b"").status, 200);
}

#[test]
fn cors_lets_apps_on_other_origins_use_tus_and_downloads_with_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let s = Server::start_auth(&data, &[]);
    let origin = ("Origin", "https://app.example");
    let pre = request(
        &s.addr,
        "OPTIONS",
        "/tus/",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization,tus-resumable,upload-length,upload-metadata"),
        ],
        b"",
    );
    assert_eq!(pre.status, 204, "{}", pre.text());
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let methods = pre.header("access-control-allow-methods").unwrap();
    for m in ["POST", "PATCH", "HEAD", "DELETE", "GET"] {
        assert!(methods.contains(m), "{m} in {methods}");
    }
    let allowed = pre.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    for h in [
        "authorization",
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-checksum",
        "x-http-method-override",
        "range",
        "if-range",
    ] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    // tus discovery (no preflight header) still answers tus's capabilities.
    let discovery = tus(&s.addr, "OPTIONS", "/tus/", &[origin], b"");
    assert!(discovery.header("tus-version").is_some(), "{:?}", discovery.headers);

    let auth = basic_auth("alice");
    let created = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[
            origin,
            ("Authorization", &auth),
            ("Upload-Length", "5"),
            ("Upload-Metadata", &metadata(&[("filename", b"c.txt")])),
        ],
        b"",
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), Some("*"));
    let exposed = created.header("access-control-expose-headers").unwrap().to_ascii_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "upload-metadata",
        "tus-resumable",
        "etag",
        "content-range",
        "repr-digest",
    ] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    assert!(created.header("access-control-allow-credentials").is_none(), "no cookies for any origin");
    let at = created.header("location").unwrap().trim_start_matches(&s.url()).to_owned();
    let at = if at.starts_with('/') { at } else { format!("/{}", at.split_once('/').unwrap().1) };
    let r = tus(
        &s.addr,
        "PATCH",
        &at,
        &[
            origin,
            ("Authorization", &auth),
            ("Upload-Offset", "0"),
            ("Content-Type", "application/offset+octet-stream"),
        ],
        b"hello",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let got =
        request(&s.addr, "GET", "/files/~alice/c.txt", &[origin, ("Authorization", &auth), ("Range", "bytes=1-")], b"");
    assert_eq!((got.status, got.text().as_str()), (206, "ello"));
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));

    // With listed origins: those are echoed with credentials, others get no CORS headers.
    drop(s);
    let s = Server::start_auth(&data, &["--cors-origin", "https://app.example"]);
    let listed = request(&s.addr, "GET", "/api/me", &[origin, ("Authorization", &auth)], b"");
    assert_eq!(listed.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(listed.header("access-control-allow-credentials"), Some("true"));
    let other =
        request(&s.addr, "GET", "/api/me", &[("Origin", "https://evil.example"), ("Authorization", &auth)], b"");
    assert!(other.header("access-control-allow-origin").is_none(), "{:?}", other.headers);
    let bad = std::process::Command::new(ferry_bin())
        .args(["serve", "--cors-origin", "https://app.example/path", "--data"])
        .arg(tmp.path().join("data2"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an origin like https://app.example.com"));
}

#[test]
fn the_session_cookie_needs_its_csrf_token_and_the_servers_own_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let s = Server::start_auth(&data, &["--cors-origin", "https://app.example"]);
    let (cookie, csrf) = session(&s.addr, "alice");
    let c = ("Cookie", cookie.as_str());
    let me = request(&s.addr, "GET", "/api/me", &[c], b"");
    assert_eq!(me.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&me.body).unwrap();
    assert_eq!(
        (v["user"].as_str(), v["csrf"].as_str()),
        (Some("alice"), Some(csrf.as_str())),
        "a reloaded page gets it again"
    );
    assert_eq!(request(&s.addr, "GET", "/files/~alice/", &[c], b"").status, 200, "downloads and listings by cookie");

    let json = ("Content-Type", "application/json");
    let mkdir = |extra: &[(&str, &str)], name: &str| {
        let mut h = vec![c, json];
        h.extend_from_slice(extra);
        request(&s.addr, "POST", "/api/files/mkdir", &h, format!(r#"{{"path":"~alice/{name}"}}"#).as_bytes())
    };
    let r = mkdir(&[], "a");
    assert_eq!(r.status, 403, "no CSRF header: {}", r.text());
    assert!(r.text().contains("X-Ferry-CSRF"), "{}", r.text());
    assert_eq!(mkdir(&[("X-Ferry-CSRF", "0123456789abcdef0123456789abcdef")], "a").status, 403, "a wrong one");
    let own = format!("http://{}", s.addr);
    assert!(mkdir(&[("X-Ferry-CSRF", &csrf), ("Origin", &own)], "a").status < 300, "the page's own origin");
    assert!(mkdir(&[("X-Ferry-CSRF", &csrf), ("Origin", "https://app.example")], "b").status < 300, "a listed origin");
    let r = mkdir(&[("X-Ferry-CSRF", &csrf), ("Origin", "https://evil.example")], "c");
    assert_eq!(r.status, 403, "another origin, even with the token: {}", r.text());
    assert!(!data.join("files/~alice/c").exists());

    // tus by cookie: the creation and the method override need the token too.
    let md = metadata(&[("filename", b"t.txt")]);
    let create = |extra: &[(&str, &str)]| {
        let mut h = vec![c, ("Upload-Length", "3"), ("Upload-Metadata", md.as_str())];
        h.extend_from_slice(extra);
        tus(&s.addr, "POST", "/tus/", &h, b"")
    };
    assert_eq!(create(&[]).status, 403);
    let made = create(&[("X-Ferry-CSRF", &csrf)]);
    assert_eq!(made.status, 201, "{}", made.text());
    let at = format!("/tus/{}", made.header("location").unwrap().rsplit('/').next().unwrap());
    let r = tus(&s.addr, "POST", &at, &[c, ("X-HTTP-Method-Override", "DELETE")], b"");
    assert_eq!(r.status, 403, "an override to DELETE is a change: {}", r.text());
    assert_eq!(tus(&s.addr, "HEAD", &at, &[c], b"").status, 200, "still there");

    // A web login from a page on another origin is refused; header credentials win over
    // the cookie (and are not subject to it).
    assert_eq!(login_cookie(&s.addr, "alice", Some("https://evil.example")).status, 403);
    let r = request(
        &s.addr,
        "POST",
        "/api/files/mkdir",
        &[c, json, ("Authorization", &basic_auth("alice"))],
        br#"{"path":"~alice/d"}"#,
    );
    assert!(r.status < 300, "{}", r.text());

    // Logging out ends the session: the cookie is cleared and no longer works.
    let r = request(&s.addr, "DELETE", "/api/tokens/current", &[c], b"");
    assert_eq!(r.status, 403, "logout is a change too");
    let r = request(&s.addr, "DELETE", "/api/tokens/current", &[c, ("X-Ferry-CSRF", &csrf)], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = request(&s.addr, "GET", "/api/me", &[c, ("X-Requested-With", "ferry-web")], b"");
    assert_eq!(after.status, 401);
    assert!(after.header("www-authenticate").is_none(), "no browser password dialog over the web app");
    assert!(request(&s.addr, "GET", "/api/me", &[c], b"").header("www-authenticate").is_some());
}

#[test]
fn folders_answer_html_to_browsers_with_names_made_inert() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    Users::add(&data, &["alice"]);
    let s = Server::start_auth(&data, &[]);
    let auth = basic_auth("alice");
    let evil = "<img src=x onerror=alert(1)>.txt";
    let md = metadata(&[("filename", evil.as_bytes())]);
    let r = tus(
        &s.addr,
        "POST",
        "/tus/",
        &[
            ("Authorization", &auth),
            ("Upload-Length", "2"),
            ("Upload-Metadata", &md),
            ("Content-Type", "application/offset+octet-stream"),
        ],
        b"hi",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let browser = ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
    let page = request(&s.addr, "GET", "/files/~alice/", &[("Authorization", &auth), browser], b"");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'none'"));
    let html = page.text();
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;.txt"), "{html}");
    assert!(html.contains("href=\"/files/~alice/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt\""), "{html}");
    // The link works, and JSON is still what everyone else gets.
    let file = request(
        &s.addr,
        "GET",
        "/files/~alice/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(file.text(), "hi");
    let listing = request(&s.addr, "GET", "/files/~alice/", &[("Authorization", &auth)], b"");
    assert!(listing.header("content-type").unwrap().starts_with("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&listing.body).unwrap()["entries"][0]["name"] == evil);
}
