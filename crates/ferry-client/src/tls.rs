//! HTTPS for every command: rustls with the ring provider, the system's trusted roots, or
//! only the CA certificates given with `--cacert FILE` (a self-signed server's CA, say).

use std::path::Path;
use std::sync::OnceLock;

use crate::ClientError;

/// CA certificates to trust instead of the system's, set once per process.
static ONLY_CAS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Trusts only the CA certificates in this PEM file for HTTPS servers from now on.
pub fn trust_only_cas_in(path: &Path) -> Result<(), ClientError> {
    let pem = std::fs::read(path).map_err(|e| ClientError::local(path, e))?;
    let invalid = |why: String| ClientError::local(path, std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("holds no PEM certificate".into()));
    }
    let _ = ONLY_CAS.set(certs);
    Ok(())
}

/// Applies the process's TLS choices to a client being built.
pub(crate) fn configure(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match ONLY_CAS.get() {
        Some(cas) => builder.tls_certs_only(cas.iter().cloned()),
        None => builder,
    }
}
