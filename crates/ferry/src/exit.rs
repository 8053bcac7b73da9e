//! Exit codes, distinct per kind of failure so scripts can react, and the one-line message
//! each failure is reported with.

use ferry_client::ClientError;

/// Anything else (bad configuration, server start-up failure).
pub const FAILURE: u8 = 1;
/// A bad command line or option value (as clap's own errors).
pub const USAGE: u8 = 2;
/// The server could not be reached, or kept failing (run again to resume).
pub const UNREACHABLE: u8 = 3;
/// The server refused the request.
pub const REJECTED: u8 = 4;
/// Local file problem (missing, unreadable, disk full).
pub const LOCAL_IO: u8 = 5;
/// The bytes did not verify.
pub const VERIFICATION: u8 = 6;
/// Interrupted by Ctrl-C (run again to resume).
pub const INTERRUPTED: u8 = 130;

fn client_error(e: &anyhow::Error) -> Option<&ClientError> {
    e.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

/// The exit code for an error chain (the first `ClientError` in it decides).
pub fn code_for(e: &anyhow::Error) -> u8 {
    match client_error(e) {
        Some(ClientError::Unreachable(_)) | Some(ClientError::Untrusted(_)) => UNREACHABLE,
        Some(ClientError::Rejected { status: 0, .. }) => USAGE,
        Some(ClientError::Rejected { .. }) | Some(ClientError::Protocol(_)) => REJECTED,
        Some(ClientError::LocalIo { .. }) | Some(ClientError::DiskFull { .. }) => LOCAL_IO,
        Some(ClientError::Verification(_)) => VERIFICATION,
        Some(ClientError::Interrupted) => INTERRUPTED,
        _ => FAILURE,
    }
}

/// The error as one line: the context, then the cause, each once; a refusal in the
/// server's own words; and what to do next where running again helps.
pub fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let text = match c.downcast_ref::<ClientError>() {
            Some(ClientError::Rejected { status: 0, reason }) => reason.clone(),
            Some(ClientError::Rejected { status, reason }) if reason.is_empty() => {
                format!("the server refused ({status})")
            }
            Some(ClientError::Rejected { reason, .. }) => reason.clone(),
            _ => c.to_string(),
        };
        // An error's Display often repeats its source's ("x: y" then "y"): keep it once.
        if parts.last().is_some_and(|p: &String| p.contains(&text)) {
            continue;
        }
        let stop = c.downcast_ref::<ClientError>().is_some() || c.downcast_ref::<std::io::Error>().is_some();
        parts.push(text);
        if stop {
            break;
        }
    }
    let mut line = parts.join(": ");
    let hint = match client_error(e) {
        Some(ClientError::Unreachable(_)) => Some("run the same command again to resume"),
        Some(ClientError::Verification(_)) => Some("run the same command again to transfer it afresh"),
        _ => None,
    };
    if let Some(h) = hint
        && !line.contains(h)
        && !line.contains("run again")
    {
        line.push_str("; ");
        line.push_str(h);
    }
    without_os_error_numbers(&line.replace('\n', " "))
}

/// "No such file or directory (os error 2)" → "No such file or directory".
fn without_os_error_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (os error ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 11..];
        match after.find(')') {
            Some(j) if after[..j].bytes().all(|b| b.is_ascii_digit()) => rest = &after[j + 1..],
            _ => {
                out.push_str(" (os error ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
