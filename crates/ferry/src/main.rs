//! `ferry`: one binary, server and client, for moving large files over unreliable networks.

mod account_cmd;
mod exit;
mod p2p_cmd;
mod progress_ui;
mod relay_cmd;
mod serve_cmd;
mod transfer_cmd;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Move large files over unreliable networks and never start over.
///
/// Start a server with `ferry serve`, then `ferry upload FILE` and `ferry download PATH`
/// from anywhere. Interrupted transfers resume where they stopped when you run the same
/// command again.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Trust only the CA certificates in this PEM file for https:// servers (a server with a
    /// self-signed certificate, say) instead of the system's
    #[arg(long, global = true, env = "FERRY_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: tus uploads at /tus/, downloads at /files/.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Upload files (resumable, verified). Re-run the same command to resume.
    Upload(transfer_cmd::UploadArgs),
    /// Download a file (resumable, verified). Re-run the same command to resume.
    Download(transfer_cmd::DownloadArgs),
    /// Log in to a server and save the API token (mode 0600) for later commands.
    Login(account_cmd::LoginArgs),
    /// Revoke the saved token on the server and forget it.
    Logout(account_cmd::LogoutArgs),
    /// Manage accounts (on the server machine, in its data directory).
    User(account_cmd::UserArgs),
    /// Send files to users who may be offline; they get them when they come online.
    Send(relay_cmd::SendArgs),
    /// List files waiting for you (--watch: as they arrive).
    Inbox(relay_cmd::InboxArgs),
    /// Download waiting files (resumable, verified) and confirm the verified copy.
    Receive(relay_cmd::ReceiveArgs),
    /// Refuse waiting files.
    Decline(relay_cmd::DeclineArgs),
    /// What you sent, and where each recipient's copy stands.
    Outbox(relay_cmd::OutboxArgs),
    /// Check direct transfers from here: public address, NAT, port mapping, relay latency,
    /// and (--to USER) whether a direct path to a user's client comes up.
    Doctor(p2p_cmd::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // iroh's relay logs every peer that leaves without a TLS close as a warning.
            tracing_subscriber::EnvFilter::new(format!(
                "{default_level},rustls_platform_verifier=off,iroh_relay::server::client=error"
            ))
        }))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    if let Some(path) = &cli.cacert
        && let Err(e) = ferry_client::tls::trust_only_cas_in(path)
    {
        eprintln!("ferry: --cacert {e}");
        return ExitCode::from(exit::USAGE);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve_cmd::run(*args).await,
            Command::Upload(args) => transfer_cmd::upload(args).await,
            Command::Download(args) => transfer_cmd::download(args).await,
            Command::Login(args) => account_cmd::login(args).await,
            Command::Logout(args) => account_cmd::logout(args).await,
            Command::User(args) => account_cmd::user(args).await,
            Command::Send(args) => relay_cmd::send(args).await,
            Command::Inbox(args) => relay_cmd::inbox(args).await,
            Command::Receive(args) => relay_cmd::receive(args).await,
            Command::Decline(args) => relay_cmd::decline(args).await,
            Command::Outbox(args) => relay_cmd::outbox(args).await,
            Command::Doctor(args) => p2p_cmd::doctor(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}
