//! Before a new upload: is its destination in the tree free, already holding this very
//! content, or holding something else (which is replaced only with `overwrite`)?

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ferry_core::digest::parse_repr_digest_sha256;
use reqwest::StatusCode;

use crate::error::network;
use crate::{ClientError, Uploader};

/// `Some(sha)` when the destination already holds exactly this file; `None` when it is free
/// (or the server will decide); an error when it holds other content.
pub(crate) async fn existing_copy(
    up: &Uploader,
    path: &Path,
    file: &Arc<File>,
    size: u64,
    name: &str,
    remote_dir: Option<&str>,
) -> Result<Option<[u8; 32]>, ClientError> {
    // A relative folder is in the caller's home: ask the server where that is.
    let home = match remote_dir {
        Some(d) if d.starts_with('/') => String::new(),
        _ => match up
            .http()
            .get(up.server().join("api/me").map_err(|e| ClientError::Protocol(e.to_string()))?)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                r.json::<serde_json::Value>().await.ok().and_then(|v| v["home"].as_str().map(str::to_owned))
            }
            Ok(_) => None,
            Err(e) => return Err(network(&e)),
        }
        .unwrap_or_default(),
    };
    let mut url = up.server().join("files/").map_err(|e| ClientError::Protocol(e.to_string()))?;
    let dest: Vec<&str> = [home.as_str(), remote_dir.unwrap_or("")]
        .iter()
        .flat_map(|p| p.split('/'))
        .chain(std::iter::once(name))
        .filter(|s| !s.is_empty())
        .collect();
    url.path_segments_mut()
        .map_err(|()| ClientError::Protocol("server URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(&dest);
    let resp = up.http().head(url).send().await.map_err(|e| network(&e))?;
    if resp.status() != StatusCode::OK
        || resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return Ok(None); // free, a directory, or not ours to see: the upload itself decides
    }
    let theirs = resp.headers().get("repr-digest").and_then(|v| v.to_str().ok()).and_then(parse_repr_digest_sha256);
    if let Some(theirs) = theirs
        && header_len(&resp) == Some(size)
    {
        let ours = crate::hashing::sha256_of_file(file.clone(), size, path).await?;
        if ours == theirs {
            return Ok(Some(ours));
        }
    }
    Err(ClientError::Rejected {
        status: 409,
        reason: format!(
            "/{} already exists on the server with other content; pass --overwrite to replace it",
            dest.join("/")
        ),
    })
}

/// `Content-Length` as sent (a HEAD answer's body is empty, so reqwest's own figure is 0).
pub(crate) fn header_len(resp: &reqwest::Response) -> Option<u64> {
    resp.headers().get(reqwest::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
