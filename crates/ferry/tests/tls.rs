//! HTTPS: `ferry serve --tls-cert --tls-key` with a certificate from a self-signed CA;
//! ferry's own client trusts it with `--cacert` (and refuses it without), curl speaks
//! HTTP/2 to it through a whole tus upload. (tus-js-client over HTTPS runs in
//! tests/interop/run.sh.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let sh = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj "/CN=ferry test CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out srv.csr \
  -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext
"#;
    let out = Command::new("sh").arg("-c").arg(sh).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

fn https_server(tmp: &Path) -> (Server, PathBuf) {
    let (ca, cert, key) = make_certs(tmp);
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    let s = Server::start(&tmp.join("data"), &["--tls-cert", &cert, "--tls-key", &key]);
    (s, ca)
}

#[test]
fn ferry_uploads_and_downloads_over_https_with_its_own_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ca) = https_server(tmp.path());
    let url = format!("https://{}", s.addr);
    let data = test_data(5 << 20, 91);
    let file = tmp.path().join("secure.bin");
    std::fs::write(&file, &data).unwrap();

    // Without the CA the server is not trusted: nothing is sent, a clear failure.
    let out = client(&tmp.path().join("st0")).args(["upload", "--server", &url]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!s.tree_file("secure.bin").exists());

    let out = client(&tmp.path().join("st1"))
        .args(["upload", "--json", "--parallel", "2", "--server", &url, "--cacert"])
        .arg(&ca)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out)["verified"].as_bool(), Some(true));
    assert_eq!(std::fs::read(s.tree_file("secure.bin")).unwrap(), data);

    let back = tmp.path().join("back.bin");
    let out = client(&tmp.path().join("st2"))
        .env("FERRY_CACERT", &ca)
        .args(["download", "-j", "2", "--server", &url, "secure.bin", "-o"])
        .arg(&back)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);
}

#[test]
fn a_tus_upload_over_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, ca) = https_server(tmp.path());
    let url = format!("https://{}", s.addr);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--http2", "--cacert"])
            .arg(&ca)
            .args(["-o", "/dev/null", "-D", "-", "-H", "Tus-Resumable: 1.0.0"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let md = metadata(&[("filename", b"h2.txt")]);
    let head = curl(&[
        "-X",
        "POST",
        "-H",
        "Upload-Length: 11",
        "-H",
        &format!("Upload-Metadata: {md}"),
        &format!("{url}/tus/"),
    ]);
    assert!(head.starts_with("HTTP/2 201"), "ALPN chose HTTP/2 and the upload was created: {head}");
    let loc = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no Location: {head}"))
        .trim()
        .to_owned();
    let head = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Upload-Offset: 0",
        "-H",
        "Content-Type: application/offset+octet-stream",
        "--data-binary",
        "hello, h2!\n",
        &format!("{url}{loc}"),
    ]);
    assert!(head.starts_with("HTTP/2 204"), "{head}");
    assert!(head.contains("upload-offset: 11"), "{head}");
    assert_eq!(std::fs::read(s.tree_file("h2.txt")).unwrap(), b"hello, h2!\n");
}
