//! `usher users`, `usher groups` and `usher events`: admin commands that talk to a running server's
//! SCIM and admin APIs (only one process can hold the sled store, so these never open
//! it). The server URL and the client's credentials come from flags or the
//! environment; the client needs the `client_credentials` grant and the `scim` scope
//! (users) or `audit` scope (events). `usher keys` and `usher store` are the
//! exceptions: they open the configured stores themselves (`usher store copy` moves a
//! stopped deployment's data).

mod client;
mod groups;
mod keys;
mod store;
mod table;

use std::io::Read;
use std::process::ExitCode;

use serde_json::{json, Value};

pub use client::{CliError, Client};
pub use groups::{groups, GroupsArgs, GroupsCommand};
pub use keys::{keys, KeysCommand};
pub use store::{store, StoreArgs, StoreCommand};

/// Where the server is and who the CLI is to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Usher's base URL (its issuer).
    #[arg(long, env = "USHER_SERVER", default_value = "http://localhost:9000")]
    pub server: String,
    /// Client id of an app with `grants: [client_credentials]`.
    #[arg(long, env = "USHER_CLIENT_ID")]
    pub client_id: String,
    /// That app's client secret.
    #[arg(long, env = "USHER_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
}

#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List accounts as a table.
    List {
        /// A SCIM filter, e.g. `userName sw "a"` or `emails.value co "@example.com"`.
        #[arg(long)]
        filter: Option<String>,
        /// Print the SCIM JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one account (by id or username).
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a local account.
    Add {
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// Full name.
        #[arg(long)]
        name: Option<String>,
        /// The id another system knows the account by.
        #[arg(long)]
        external_id: Option<String>,
        /// The address is known to be the account's (an import from a system that
        /// verified it): it claims the address, and tokens say `email_verified: true`.
        #[arg(long, requires = "email")]
        email_verified: bool,
        /// Read an initial password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Mark an account's email address verified (or, with `--unverified`, not).
    VerifyEmail {
        user: String,
        #[arg(long)]
        unverified: bool,
    },
    /// Deactivate an account: it can no longer sign in, its sessions end and every
    /// token issued to it is revoked.
    Disable { user: String },
    /// Reactivate an account.
    Enable { user: String },
    /// Delete an account with its linked identities, second factors and sessions.
    Delete { user: String },
    /// Remove an account's authenticator app and recovery codes; it enrols again. Its
    /// sessions end and its tokens are revoked.
    ResetTotp { user: String },
    /// Lift an account's attempt lock (also the one left after
    /// `security.max_consecutive_failures`) and forgive its failures.
    Unlock { user: String },
    /// Sign an account out everywhere: every session ends and every token issued to
    /// it (offline ones included) is revoked.
    SignOut { user: String },
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Only events about this account (id or username).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this kind (`sign_in`, `admin.user_created`, or a prefix like `admin`).
    #[arg(long)]
    pub kind: Option<String>,
    /// From this time: Unix seconds, RFC 3339, or a duration back from now (`24h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time, in the same forms.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many (the latest).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print each event's detail lines (the sign-in trace, what changed).
    #[arg(long)]
    pub detail: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))
}

fn finish(result: Result<String, CliError>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `usher users …`.
pub fn users(args: UsersArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(users_async(args))))
}

/// `usher events …`.
pub fn events(args: EventsArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(events_async(args))))
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

async fn users_async(args: UsersArgs) -> Result<String, CliError> {
    let client = Client::connect(&args.connect).await?;
    match args.command {
        UsersCommand::List { filter, json } => {
            let users = client.list(filter.as_deref()).await?;
            Ok(if json {
                pretty(&Value::Array(users))
            } else {
                table::users(&users)
            })
        }
        UsersCommand::Show { user, json } => {
            let found = client.find(&user).await?;
            Ok(if json {
                pretty(&found)
            } else {
                table::user(&found)
            })
        }
        UsersCommand::Add {
            username,
            email,
            name,
            external_id,
            email_verified,
            password_stdin,
        } => {
            let mut body = json!({
                "schemas": [crate::scim::USER_SCHEMA],
                "userName": username,
            });
            if let Some(e) = email {
                body["emails"] = json!([{ "value": e, "primary": true }]);
            }
            if let Some(n) = name {
                body["displayName"] = json!(n);
            }
            if let Some(x) = external_id {
                body["externalId"] = json!(x);
            }
            if email_verified {
                body["schemas"] = json!([crate::scim::USER_SCHEMA, crate::scim::USHER_USER_SCHEMA]);
                body[crate::scim::USHER_USER_SCHEMA] = json!({ "emailVerified": true });
            }
            if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?;
                let line = text.lines().next().unwrap_or_default().to_string();
                body["password"] = json!(line);
            }
            let created = client.create(&body).await?;
            Ok(format!(
                "created {}\n{}",
                id_of(&created),
                table::user(&created)
            ))
        }
        UsersCommand::VerifyEmail { user, unverified } => {
            let found = client.find(&user).await?;
            let changed = client
                .set_email_verified(&id_of(&found), !unverified)
                .await?;
            Ok(format!(
                "the email address of {} is now {}\n",
                name_of(&changed),
                if unverified { "unverified" } else { "verified" }
            ))
        }
        UsersCommand::Disable { user } => {
            let found = client.find(&user).await?;
            let changed = client.set_active(&id_of(&found), false).await?;
            Ok(format!("disabled {}\n", name_of(&changed)))
        }
        UsersCommand::Enable { user } => {
            let found = client.find(&user).await?;
            let changed = client.set_active(&id_of(&found), true).await?;
            Ok(format!("enabled {}\n", name_of(&changed)))
        }
        UsersCommand::Delete { user } => {
            let found = client.find(&user).await?;
            client.delete(&id_of(&found)).await?;
            Ok(format!("deleted {} ({})\n", name_of(&found), id_of(&found)))
        }
        UsersCommand::ResetTotp { user } => {
            let found = client.find(&user).await?;
            client.reset_totp(&id_of(&found)).await?;
            Ok(format!(
                "reset the authenticator app of {}; it enrols again at its next sign-in that asks for one\n",
                name_of(&found)
            ))
        }
        UsersCommand::SignOut { user } => {
            let found = client.find(&user).await?;
            client.sign_out(&id_of(&found)).await?;
            Ok(format!(
                "signed {} out everywhere: its sessions ended and its tokens are revoked\n",
                name_of(&found)
            ))
        }
        UsersCommand::Unlock { user } => {
            let found = client.find(&user).await?;
            client.unlock(&id_of(&found)).await?;
            Ok(format!(
                "unlocked {}; its failed attempts are forgiven\n",
                name_of(&found)
            ))
        }
    }
}

fn id_of(user: &Value) -> String {
    user["id"].as_str().unwrap_or_default().to_string()
}

fn name_of(user: &Value) -> String {
    user["userName"].as_str().unwrap_or_default().to_string()
}

async fn events_async(args: EventsArgs) -> Result<String, CliError> {
    let client = Client::connect(&args.connect).await?;
    // A username is turned into the account id events are recorded under; anything
    // else (an id, a pass-through subject like `github|583231`) is used as given.
    let user = match &args.user {
        None => None,
        Some(u) => Some(match client.find(u).await {
            Ok(found) => id_of(&found),
            // Not found, or this client may read events but not users.
            Err(CliError::NotFound(_)) | Err(CliError::Api { status: 403, .. }) => u.clone(),
            Err(e) => return Err(e),
        }),
    };
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (k, v) in [
        ("user", user),
        ("kind", args.kind.clone()),
        ("since", args.since.clone()),
        ("until", args.until.clone()),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let events = client.events(&query).await?;
    Ok(if args.json {
        pretty(&Value::Array(events))
    } else {
        table::events(&events, args.detail)
    })
}
