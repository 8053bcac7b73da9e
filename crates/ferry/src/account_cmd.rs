//! Accounts: `ferry login`, `ferry logout` (client side) and `ferry user …` (run on the
//! server machine, against its data directory).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ferry_client::{ClientError, Credentials, http_client};

use ferry_server::api::users::{shared_folder, valid_name};

use crate::units::parse_size;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Flags of `ferry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Read the password from standard input instead of asking
    #[arg(long)]
    password_stdin: bool,
}

/// Flags of `ferry logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Server URL
    #[arg(short = 's', long, env = "FERRY_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
}

/// `ferry user …`: manage accounts in a server's data directory, or over HTTP as an admin.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// Manage the users of this server over HTTP (as a logged-in admin) instead of a local
    /// data directory
    #[arg(short = 's', long, value_name = "URL", global = true)]
    server: Option<String>,
    /// The server's data directory
    #[arg(long, env = "FERRY_DATA", default_value = "ferry-data", global = true)]
    data: PathBuf,
    /// The server's metadata database, when it is not DATA/ferry.db (postgres://… or
    /// sqlite://PATH), as given to `ferry serve --database`
    #[arg(long, env = "FERRY_DATABASE", value_name = "URL", global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (asks for the password)
    Add {
        /// Login name (letters, digits, . _ -)
        name: String,
        /// May manage users and read and write the whole tree
        #[arg(long)]
        admin: bool,
        /// Most bytes the user may keep in their home, e.g. 50G
        #[arg(long, value_parser = parse_size)]
        quota: Option<u64>,
        /// Read the password from standard input instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users
    List,
    /// Remove a user (their files stay in the tree)
    Remove {
        /// Login name
        name: String,
    },
    /// Set a new password (and revoke the user's tokens)
    Passwd {
        /// Login name
        name: String,
        /// Read the password from standard input instead of asking
        #[arg(long)]
        password_stdin: bool,
    },
    /// Share a top-level folder of the tree with a user
    Grant {
        /// Login name
        name: String,
        /// Folder in the tree, e.g. team
        path: String,
        /// Let the user write there too
        #[arg(long)]
        write: bool,
    },
}

fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let pw = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)?
    };
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(pw)
}

/// Logs in and saves the token for the server and user (kept beside other users' logins;
/// this user becomes the one used when none is named).
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = crate::session::server_url(&args.server)?;
    let user = match crate::session::selected_user() {
        Some(u) => u.to_owned(),
        None => {
            eprint!("user: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    let password = read_password(args.password_stdin, "password: ")?;
    let http = http_client(None)?;
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let body = serde_json::json!({ "user": user, "password": password, "label": format!("ferry cli {host}") });
    let resp = http.post(url.join("api/login")?).json(&body).send().await.map_err(|e| ferry_client::network(&e))?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ClientError::Rejected { status: 401, reason: "wrong user name or password".into() }.into());
    }
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let reason = resp.text().await.unwrap_or_default().trim().to_owned();
        return Err(ClientError::Rejected { status, reason }.into());
    }
    let v: serde_json::Value = resp.json().await.context("the server's answer is not JSON")?;
    let token = v["token"].as_str().context("the server sent no token")?;
    let creds = Credentials::default_location();
    creds.save(&url, &user, token).with_context(|| format!("cannot save the token in {}", creds.path().display()))?;
    eprintln!(
        "logged in to {} as {user}; token saved in {}",
        url.origin().ascii_serialization(),
        creds.path().display()
    );
    Ok(())
}

/// Revokes the saved token on the server and forgets it.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let url = crate::session::server_url(&args.server)?;
    let creds = Credentials::default_location();
    let Some(token) = creds.forget(&url, crate::session::selected_user())? else {
        eprintln!("not logged in to {}", url.origin().ascii_serialization());
        return Ok(());
    };
    let resp = http_client(Some(&token))?.delete(url.join("api/tokens/current")?).send().await;
    match resp {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            eprintln!("logged out of {}", url.origin().ascii_serialization());
            Ok(())
        }
        Ok(r) => {
            Err(ClientError::Rejected { status: r.status().as_u16(), reason: "could not revoke the token".into() }
                .into())
        }
        Err(e) => Err(anyhow::Error::new(ferry_client::network(&e))
            .context("the token was forgotten here but could not be revoked on the server")),
    }
}

/// `ferry user …`.
pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    if let Some(server) = &args.server {
        return user_over_http(server, args.command).await;
    }
    // A mistyped --data must not quietly make a new, empty database.
    if args.database.is_none() && !args.data.is_dir() {
        return Err(ClientError::Rejected {
            status: 0,
            reason: format!(
                "there is no data directory {}; pass the one `ferry serve` uses with --data (or make it first), or manage users over HTTP with --server URL",
                args.data.display()
            ),
        }
        .into());
    }
    let db = ferry_store::open_metadata(args.database.as_deref(), &args.data)
        .await
        .context("cannot open the server's database")?;
    match args.command {
        UserCommand::Add { name, admin, quota, password_stdin } => {
            valid_name(&name)?;
            let pw = read_password(password_stdin, &format!("password for {name}: "))?;
            let hash = tokio::task::spawn_blocking(move || ferry_server::auth::hash_password(&pw)).await??;
            if !db.add_user(&name, &hash, admin, quota).await? {
                bail!("user {name} already exists");
            }
            eprintln!("added {}{name}", if admin { "admin " } else { "" });
        }
        UserCommand::List => {
            for u in db.users().await? {
                let quota = u.quota.map(|q| format!(" quota {}", indicatif::HumanBytes(q))).unwrap_or_default();
                println!("{}{}{quota}", u.name, if u.admin { " (admin)" } else { "" });
            }
        }
        UserCommand::Remove { name } => {
            if !db.remove_user(&name).await? {
                bail!("no user {name}");
            }
            eprintln!("removed {name} (their files stay in the tree)");
        }
        UserCommand::Passwd { name, password_stdin } => {
            let pw = read_password(password_stdin, &format!("new password for {name}: "))?;
            let hash = tokio::task::spawn_blocking(move || ferry_server::auth::hash_password(&pw)).await??;
            if !db.set_password(&name, &hash).await? {
                bail!("no user {name}");
            }
            eprintln!("password of {name} changed; their tokens were revoked");
        }
        UserCommand::Grant { name, path, write } => {
            let (user, _) = db.user_by_name(&name).await?.with_context(|| format!("no user {name}"))?;
            let folder = shared_folder(&path)?;
            db.grant(user.id, &folder.to_string(), write).await?;
            eprintln!("{name} may now {} /{folder}", if write { "read and write" } else { "read" });
        }
    }
    db.close().await;
    Ok(())
}

/// `ferry user … --server URL`: the same operations through the admin API.
async fn user_over_http(server: &str, command: UserCommand) -> anyhow::Result<()> {
    let s = crate::session::connect(server).await?;
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.map_err(|e| ferry_client::network(&e))?;
        if resp.status().is_success() { Ok(resp) } else { Err(ferry_client::refusal(resp).await) }
    };
    match command {
        UserCommand::Add { name, admin, quota, password_stdin } => {
            valid_name(&name)?;
            let password = read_password(password_stdin, &format!("password for {name}: "))?;
            let body = serde_json::json!({ "name": name, "password": password, "admin": admin, "quota": quota });
            send(s.http.post(s.api("api/users")?).json(&body)).await?;
            eprintln!("added {}{name}", if admin { "admin " } else { "" });
        }
        UserCommand::List => {
            #[derive(serde::Deserialize)]
            struct U {
                name: String,
                admin: bool,
                quota: Option<u64>,
            }
            #[derive(serde::Deserialize)]
            struct L {
                users: Vec<U>,
            }
            let l: L = send(s.http.get(s.api("api/users")?)).await?.json().await?;
            for u in l.users {
                let quota = u.quota.map(|q| format!(" quota {}", indicatif::HumanBytes(q))).unwrap_or_default();
                println!("{}{}{quota}", u.name, if u.admin { " (admin)" } else { "" });
            }
        }
        UserCommand::Remove { name } => {
            send(s.http.delete(s.api(&format!("api/users/{name}"))?)).await?;
            eprintln!("removed {name} (their files stay in the tree)");
        }
        UserCommand::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin, &format!("new password for {name}: "))?;
            let body = serde_json::json!({ "password": password });
            send(s.http.put(s.api(&format!("api/users/{name}/password"))?).json(&body)).await?;
            eprintln!("password of {name} changed; their tokens were revoked");
        }
        UserCommand::Grant { name, path, write } => {
            let body = serde_json::json!({ "path": path, "write": write });
            send(s.http.post(s.api(&format!("api/users/{name}/grants"))?).json(&body)).await?;
            eprintln!("{name} may now {} /{}", if write { "read and write" } else { "read" }, path.trim_matches('/'));
        }
    }
    Ok(())
}
