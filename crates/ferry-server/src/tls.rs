//! TLS for `ferry serve --tls-cert FILE --tls-key FILE`: rustls with the ring provider;
//! HTTP/2 and HTTP/1.1 are offered by ALPN (tus clients in browsers and curl take h2,
//! ferry's own client and Node take HTTP/1.1).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ApiError;

/// The certificate chain and private key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// Makes ring the process's TLS provider (idempotent; another one already installed wins).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether the files make a usable certificate and key (checked before the server starts).
pub fn check(files: &TlsFiles) -> Result<(), ApiError> {
    acceptor(files).map(drop)
}

/// Loads the files into an acceptor, or says in one sentence what is wrong with them.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ApiError> {
    install_provider();
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        ApiError::bad(format!("cannot use {what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("the TLS certificate", &files.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("the TLS certificate", &files.cert, &e))?;
    if chain.is_empty() {
        return Err(bad("the TLS certificate", &files.cert, &"it holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => bad("the TLS key", &files.key, &"it holds no PEM private key"),
        e => bad("the TLS key", &files.key, &e),
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("the TLS certificate and key", &files.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
