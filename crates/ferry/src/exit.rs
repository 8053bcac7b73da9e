//! Exit codes: distinct per kind of failure, so scripts can react.

use ferry_client::ClientError;

/// Anything else (bad configuration, server start-up failure).
pub const FAILURE: u8 = 1;
/// The server could not be reached (run again to resume).
pub const UNREACHABLE: u8 = 3;
/// A bad command line or option value (as clap's own errors).
pub const USAGE: u8 = 2;
/// The server refused the request.
pub const REJECTED: u8 = 4;
/// Local file problem (missing, unreadable, disk full).
pub const LOCAL_IO: u8 = 5;
/// The bytes did not verify.
pub const VERIFICATION: u8 = 6;
/// Interrupted by Ctrl-C (run again to resume).
pub const INTERRUPTED: u8 = 130;

/// The exit code for an error chain (the first `ClientError` in it decides).
pub fn code_for(e: &anyhow::Error) -> u8 {
    match e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        Some(ClientError::Unreachable(_)) | Some(ClientError::Untrusted(_)) => UNREACHABLE,
        Some(ClientError::Rejected { .. }) | Some(ClientError::Protocol(_)) => REJECTED,
        Some(ClientError::LocalIo { .. }) | Some(ClientError::DiskFull { .. }) => LOCAL_IO,
        Some(ClientError::Verification(_)) => VERIFICATION,
        Some(ClientError::Interrupted) => INTERRUPTED,
        _ => FAILURE,
    }
}
