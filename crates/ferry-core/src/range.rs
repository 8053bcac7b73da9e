//! HTTP `Range: bytes=…` requests (RFC 9110 §14) resolved against a representation length.

/// An inclusive byte range `start..=end` of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a `ByteRange` holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `bytes a-b/len` for `Content-Range`.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, total)
    }
}

/// A `Content-Range` value: `bytes a-b/len`, `bytes a-b/*` or `bytes */len` (`*/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The bytes `a..=b`, `None` for `*` (nothing sent: a probe, or an unsatisfiable range).
    pub range: Option<(u64, u64)>,
    /// The whole length, `None` for `*` (not known yet).
    pub total: Option<u64>,
}

impl ContentRange {
    /// Parses a `Content-Range` value; `None` when malformed (or `a > b`).
    pub fn parse(v: &str) -> Option<Self> {
        let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            n => Some(n.parse().ok()?),
        };
        let range = match range.trim() {
            "*" => None,
            r => {
                let (a, b) = r.split_once('-')?;
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                Some((a, b))
            }
        };
        Some(Self { range, total })
    }
}

/// What a `Range` header asks for, resolved against the representation's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header (absent, not `bytes`, or syntactically invalid): serve 200.
    Full,
    /// One or more satisfiable ranges, sorted and coalesced.
    Ranges(Vec<ByteRange>),
    /// Valid syntax but nothing satisfiable: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Ranges beyond this count are answered with the whole representation instead
/// (RFC 9110 allows ignoring Range; this stops many-tiny-ranges amplification).
pub const MAX_RANGES: usize = 64;

impl RangeRequest {
    /// Resolves a `Range` header value against `len` bytes.
    pub fn parse(header: &str, len: u64) -> Self {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return Self::Full;
        };
        let mut ranges = Vec::new();
        for part in spec.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((a, b)) = part.split_once('-') else {
                return Self::Full;
            };
            let (a, b) = (a.trim(), b.trim());
            let parsed = match (a.is_empty(), b.is_empty()) {
                (true, true) => return Self::Full,
                (true, false) => {
                    let Some(suffix) = parse_digits(b) else { return Self::Full };
                    (suffix > 0 && len > 0).then(|| ByteRange { start: len.saturating_sub(suffix), end: len - 1 })
                }
                (false, _) => {
                    let Some(start) = parse_digits(a) else { return Self::Full };
                    let end = if b.is_empty() {
                        None
                    } else {
                        match parse_digits(b) {
                            Some(e) if e >= start => Some(e),
                            _ => return Self::Full,
                        }
                    };
                    (start < len).then(|| ByteRange { start, end: end.map_or(len - 1, |e| e.min(len - 1)) })
                }
            };
            ranges.extend(parsed);
        }
        if ranges.is_empty() {
            return if spec.split(',').any(|p| !p.trim().is_empty()) { Self::Unsatisfiable } else { Self::Full };
        }
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        if merged.len() > MAX_RANGES {
            return Self::Full;
        }
        Self::Ranges(merged)
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_in_every_form() {
        let cr = |r, t| Some(ContentRange { range: r, total: t });
        assert_eq!(ContentRange::parse("bytes 100-199/1000"), cr(Some((100, 199)), Some(1000)));
        assert_eq!(ContentRange::parse("bytes 5-9/*"), cr(Some((5, 9)), None));
        assert_eq!(ContentRange::parse("bytes */21"), cr(None, Some(21)));
        assert_eq!(ContentRange::parse("bytes */*"), cr(None, None));
        for bad in ["items 1-2/3", "bytes 9-5/10", "bytes 1-x/3", "bytes nonsense", "bytes */abc"] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn single_forms() {
        assert_eq!(RangeRequest::parse("bytes=0-99", 1000), RangeRequest::Ranges(vec![r(0, 99)]));
        assert_eq!(RangeRequest::parse("bytes=900-", 1000), RangeRequest::Ranges(vec![r(900, 999)]));
        assert_eq!(RangeRequest::parse("bytes=-100", 1000), RangeRequest::Ranges(vec![r(900, 999)]));
        assert_eq!(RangeRequest::parse("bytes=-5000", 1000), RangeRequest::Ranges(vec![r(0, 999)]));
        assert_eq!(RangeRequest::parse("bytes=500-5000", 1000), RangeRequest::Ranges(vec![r(500, 999)]));
    }

    #[test]
    fn multiple_are_sorted_and_coalesced() {
        assert_eq!(
            RangeRequest::parse("bytes=500-600, 0-10,11-20, 550-700", 1000),
            RangeRequest::Ranges(vec![r(0, 20), r(500, 700)])
        );
    }

    #[test]
    fn unsatisfiable_and_invalid() {
        assert_eq!(RangeRequest::parse("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(RangeRequest::parse("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(RangeRequest::parse("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(RangeRequest::parse("bytes=5-1", 1000), RangeRequest::Full);
        assert_eq!(RangeRequest::parse("items=0-1", 1000), RangeRequest::Full);
        assert_eq!(RangeRequest::parse("bytes=a-b", 1000), RangeRequest::Full);
        assert_eq!(RangeRequest::parse("bytes=-", 1000), RangeRequest::Full);
        assert_eq!(RangeRequest::parse("bytes=1000-2000, 5-9", 1000), RangeRequest::Ranges(vec![r(5, 9)]));
    }

    #[test]
    fn too_many_ranges_fall_back_to_full() {
        let many: Vec<String> = (0..100).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect();
        assert_eq!(RangeRequest::parse(&format!("bytes={}", many.join(",")), 10_000), RangeRequest::Full);
    }
}
