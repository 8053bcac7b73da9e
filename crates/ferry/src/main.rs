//! `ferry`: one binary, server and client, for moving large files over unreliable networks.

mod account_cmd;
mod exit;
mod files_cmd;
mod folder_cmd;
mod p2p_cmd;
mod progress_ui;
mod relay_cmd;
mod serve_cmd;
mod session;
mod transfer_cmd;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Move large files over unreliable networks and never start over.
///
/// Start a server with `ferry serve`, log in with `ferry login -s URL`, then `ferry upload
/// FILE` and `ferry download PATH` from anywhere. Interrupted transfers resume where they
/// stopped when you run the same command again.
///
/// Remote paths are relative to your home (`docs/a.txt` is /~you/docs/a.txt); a leading
/// `/` starts at the tree root (`/team/a.txt`); '~bob/x' is bob's home (quote it, or the
/// shell expands it).
///
/// Exit codes: 0 done; 1 other failure (bad configuration, server start-up); 2 bad command
/// line; 3 server unreachable or failing (run the same command again to resume); 4 refused
/// by the server (its reason is printed: not logged in, not allowed, not found, quota);
/// 5 local file or disk problem; 6 verification failed (run again: it starts that file
/// over); 130 interrupted (run again to resume).
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Use this user's saved login on the server (`ferry login` keeps one per server and
    /// user; default: the last one logged in)
    #[arg(long, short = 'u', global = true, env = "FERRY_USER", value_name = "NAME")]
    user: Option<String>,
    /// Print only errors and results asked for (--json): no progress, notices or summaries
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
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
    /// List a remote folder (default: your home; -l sizes and dates, --json).
    Ls(files_cmd::LsArgs),
    /// Remove remote files or folders (-r for a folder with content).
    Rm(files_cmd::RmArgs),
    /// Move or rename a remote file or folder.
    Mv(files_cmd::MvArgs),
    /// Make a remote folder (-p: with its parents).
    Mkdir(files_cmd::MkdirArgs),
    /// Your unfinished uploads on the server (size, offset, age, expiry); --cancel ID.
    Uploads(files_cmd::UploadsArgs),
    /// Who you are on the server: user, home, quota and usage, shared folders, saved logins.
    Whoami(files_cmd::WhoamiArgs),
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
    /// Print a shell completion script: `ferry completions bash > /etc/bash_completion.d/ferry`
    /// (zsh: into a folder of $fpath as _ferry; fish: ~/.config/fish/completions/ferry.fish).
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
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
    session::select(cli.user.clone(), cli.quiet);
    let json = cli.command_json();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve_cmd::run(*args).await,
            Command::Upload(args) => transfer_cmd::upload(args).await,
            Command::Download(args) => transfer_cmd::download(args).await,
            Command::Ls(args) => files_cmd::ls(args).await,
            Command::Rm(args) => files_cmd::rm(args).await,
            Command::Mv(args) => files_cmd::mv(args).await,
            Command::Mkdir(args) => files_cmd::mkdir(args).await,
            Command::Uploads(args) => files_cmd::uploads(args).await,
            Command::Whoami(args) => files_cmd::whoami(args).await,
            Command::Login(args) => account_cmd::login(args).await,
            Command::Logout(args) => account_cmd::logout(args).await,
            Command::User(args) => account_cmd::user(args).await,
            Command::Send(args) => relay_cmd::send(args).await,
            Command::Inbox(args) => relay_cmd::inbox(args).await,
            Command::Receive(args) => relay_cmd::receive(args).await,
            Command::Decline(args) => relay_cmd::decline(args).await,
            Command::Outbox(args) => relay_cmd::outbox(args).await,
            Command::Doctor(args) => p2p_cmd::doctor(args).await,
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit::code_for(&e);
            let message = exit::message(&e);
            // With --json the failure is a JSON object on stdout too (scripts read one
            // place); the line on stderr is for the person watching.
            if json {
                let v = serde_json::json!({ "error": message, "exit_code": code });
                println!("{v}");
            }
            eprintln!("ferry: {message}");
            ExitCode::from(code)
        }
    }
}

impl Cli {
    /// Whether the command was asked for JSON output (failures are then JSON too).
    fn command_json(&self) -> bool {
        std::env::args().any(|a| a == "--json") && !matches!(self.command, Command::Serve(_))
    }
}
