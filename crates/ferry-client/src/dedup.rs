//! Client side of instant upload: ask whether the server has a copy of the content we may
//! reuse, prove possession with an HMAC (keyed by the server's one-time nonce) of each byte
//! range it names, and skip the transfer when it accepts.

use std::os::unix::fs::FileExt;
use std::path::Path;

use ferry_core::digest::{possession_proof, to_hex};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{from_status, network};
use crate::{ClientError, UploadOutcome, Uploader};

#[derive(Deserialize)]
struct Challenge {
    challenge: String,
    nonce: String,
    ranges: Vec<RangeSpec>,
}

#[derive(Deserialize)]
struct Sent {
    id: String,
}

#[derive(Deserialize)]
struct RangeSpec {
    offset: u64,
    length: u64,
}

/// `Some` when the server placed its own copy; `None` when the file must be uploaded.
pub(crate) async fn try_dedup(
    up: &Uploader,
    path: &Path,
    name: &str,
    remote_dir: Option<&str>,
    size: u64,
    sha: &[u8; 32],
) -> Result<Option<UploadOutcome>, ClientError> {
    let begin = up.server().join("api/dedup").map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut body = serde_json::json!({ "size": size, "sha256": to_hex(sha), "filename": name, "dir": remote_dir });
    if let Some(to) = &up.options.relay_to {
        body["relay_to"] = to.clone().into();
        if let Some((_, folder)) = up.options.relay_metadata.iter().find(|(k, _)| *k == "relay_folder") {
            body["relay_folder"] = folder.clone().into();
        }
    }
    let resp = up.http().post(begin.clone()).json(&body).send().await.map_err(|e| network(&e))?;
    match resp.status() {
        StatusCode::OK => {}
        // No copy we may reuse, dedup off (404), or a server without the API (405): upload.
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
        _ => return Err(from_status(resp).await),
    }
    let challenge: Challenge =
        resp.json().await.map_err(|e| ClientError::Protocol(format!("bad dedup challenge: {e}")))?;
    let nonce = hex_bytes(&challenge.nonce)
        .ok_or_else(|| ClientError::Protocol("dedup challenge has no valid nonce".into()))?;
    let file = std::fs::File::open(path).map_err(|e| ClientError::local(path, e))?;
    let mut proofs = Vec::with_capacity(challenge.ranges.len());
    for r in &challenge.ranges {
        if r.offset.checked_add(r.length).is_none_or(|end| end > size) || r.length > 16 << 20 {
            return Err(ClientError::Protocol("dedup challenge asks for bytes outside the file".into()));
        }
        let mut buf = vec![0u8; r.length as usize];
        file.read_exact_at(&mut buf, r.offset).map_err(|e| ClientError::local(path, e))?;
        proofs.push(possession_proof(&nonce, r.offset, &buf));
    }
    let prove =
        begin.join(&format!("dedup/{}", challenge.challenge)).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp = tokio::select! {
        () = up.cancel_token().cancelled() => return Err(ClientError::Interrupted),
        r = up.http().post(prove).json(&serde_json::json!({ "proofs": proofs })).send() => r.map_err(|e| network(&e))?,
    };
    if resp.status() != StatusCode::CREATED {
        return Err(from_status(resp).await);
    }
    // A relay item is named by its id, as an upload's item is by its URL's last segment.
    let url = match up.options.relay_to {
        Some(_) => {
            let sent: Sent = resp.json().await.map_err(|e| ClientError::Protocol(format!("bad dedup answer: {e}")))?;
            up.endpoint.join(&sent.id).map_err(|e| ClientError::Protocol(e.to_string()))?.to_string()
        }
        None => String::new(),
    };
    Ok(Some(UploadOutcome {
        path: path.to_path_buf(),
        url,
        size,
        resumed_from: 0,
        sent: 0,
        parts: 0,
        sha256: to_hex(sha),
        verified: true,
        deduplicated: true,
    }))
}

/// Bytes of a hex string (16 to 64 bytes long), or `None`.
fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !(32..=128).contains(&s.len()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
