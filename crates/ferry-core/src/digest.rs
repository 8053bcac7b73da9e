//! RFC 9530 `Repr-Digest` values and the SHA-256 file identity.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A SHA-256 digest of a whole file.
pub type Sha256Digest = [u8; 32];

/// Formats `Repr-Digest: sha-256=:<base64>:`.
pub fn format_repr_digest(sha256: &Sha256Digest) -> String {
    format!("sha-256=:{}:", STANDARD.encode(sha256))
}

/// Finds the `sha-256` member of a `Repr-Digest` dictionary. Other algorithms are ignored;
/// `None` when there is no well-formed sha-256 member.
pub fn parse_repr_digest_sha256(header: &str) -> Option<Sha256Digest> {
    header.split(',').find_map(|member| {
        let (key, value) = member.trim().split_once('=')?;
        if key.trim() != "sha-256" {
            return None;
        }
        let b64 = value.trim().strip_prefix(':')?.strip_suffix(':')?;
        STANDARD.decode(b64).ok()?.try_into().ok()
    })
}

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a SHA-256 given as 64 hex digits or base64 (as a client may declare it in
/// `Upload-Metadata`).
pub fn parse_sha256_text(s: &str) -> Option<Sha256Digest> {
    let s = s.trim();
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        return Some(out);
    }
    STANDARD.decode(s).ok()?.try_into().ok()
}

/// Proof that the prover holds one byte range of a file: HMAC-SHA256 keyed with the
/// server's one-time `nonce` over the range's offset and bytes. Without the bytes it
/// cannot be computed, and a proof seen once is worth nothing for another challenge.
pub fn possession_proof(nonce: &[u8], offset: u64, bytes: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(nonce).expect("HMAC takes keys of any length");
    mac.update(&offset.to_be_bytes());
    mac.update(bytes);
    to_hex(&mac.finalize().into_bytes())
}

/// The state of a running SHA-256, to be stored and resumed elsewhere (another node, after
/// a restart) without reading the hashed bytes again.
pub fn sha256_state(sha: &sha2::Sha256) -> Vec<u8> {
    use sha2::digest::common::hazmat::SerializableState;
    sha.serialize().to_vec()
}

/// A running SHA-256 from [`sha256_state`]; `None` for bytes that are not one.
pub fn sha256_from_state(state: &[u8]) -> Option<sha2::Sha256> {
    use sha2::digest::common::hazmat::SerializableState;
    sha2::Sha256::deserialize(state.try_into().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_sha256_resumes_from_its_stored_state() {
        use sha2::Digest;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 4_097, 9_999] {
            let mut first = sha2::Sha256::new();
            first.update(&data[..cut]);
            let mut resumed = sha256_from_state(&sha256_state(&first)).expect("state");
            resumed.update(&data[cut..]);
            assert_eq!(resumed.finalize(), sha2::Sha256::digest(&data), "cut at {cut}");
        }
        assert!(sha256_from_state(b"not a state").is_none());
    }

    #[test]
    fn repr_digest_round_trip() {
        let d = [7u8; 32];
        let h = format_repr_digest(&d);
        assert_eq!(parse_repr_digest_sha256(&h), Some(d));
        assert_eq!(parse_repr_digest_sha256(&format!("sha-512=:AAAA:, {h}")), Some(d));
        assert_eq!(parse_repr_digest_sha256("sha-256=:AAAA:"), None);
        assert_eq!(parse_repr_digest_sha256("garbage"), None);
    }

    #[test]
    fn sha256_text_hex_or_base64() {
        let d = [0xabu8; 32];
        assert_eq!(parse_sha256_text(&to_hex(&d)), Some(d));
        assert_eq!(parse_sha256_text(&STANDARD.encode(d)), Some(d));
        assert_eq!(parse_sha256_text("abc"), None);
    }

    #[test]
    fn possession_proofs_need_nonce_offset_and_bytes() {
        let p = possession_proof(b"nonce-1", 10, b"abc");
        assert_eq!(p.len(), 64);
        assert_ne!(p, possession_proof(b"nonce-2", 10, b"abc"));
        assert_ne!(p, possession_proof(b"nonce-1", 11, b"abc"));
        assert_ne!(p, possession_proof(b"nonce-1", 10, b"abd"));
        assert_eq!(p, possession_proof(b"nonce-1", 10, b"abc"));
    }
}
