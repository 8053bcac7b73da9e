//! ferry-core: the domain types and pure protocol logic every other ferry crate shares.
//!
//! Nothing in this crate does I/O. It parses and formats the headers ferry speaks
//! (tus 1.0, HTTP Range, RFC 9530 digests), names things ([`UploadId`], [`ByteRange`],
//! [`TreePath`]) and computes checksums incrementally while bytes stream.
#![deny(missing_docs)]

pub mod checksum;
pub mod chunks;
pub mod digest;
pub mod histogram;
pub mod id;
pub mod metadata;
pub mod path;
pub mod range;
pub mod tus;
pub mod utc;

pub use checksum::{ChecksumAlgorithm, Checksummer, UploadChecksum};
pub use id::UploadId;
pub use metadata::UploadMetadata;
pub use path::TreePath;
pub use range::{ByteRange, ContentRange, RangeRequest};
