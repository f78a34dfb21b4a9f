//! `usher groups`: groups on a running server, through its SCIM `/Groups` API. A group
//! is named by its id or its display name, a member by account id or username.

use serde_json::{json, Value};

use super::client::{CliError, Client};
use super::{finish, pretty, runtime, table, Connect};
use crate::scim::{GROUP_SCHEMA, PATCH_OP, USHER_GROUP_SCHEMA};

#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List groups as a table: id, name, members, roles.
    List {
        /// A SCIM filter, e.g. `displayName sw "eng"`.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one group (by id or display name) with its members' usernames.
    Show {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a group.
    Add {
        name: String,
        /// A role every member holds through the group (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The id a provisioning system knows the group by.
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Add accounts (ids or usernames) to a group.
    AddMember { group: String, users: Vec<String> },
    /// Take accounts (ids or usernames) out of a group.
    RemoveMember { group: String, users: Vec<String> },
    /// Delete a group; its members lose the roles it gave them.
    Delete { group: String },
}

/// `usher groups …`.
pub fn groups(args: GroupsArgs) -> std::process::ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(groups_async(args))))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_string()
}

fn roles_of(g: &Value) -> String {
    let roles: Vec<String> = g[USHER_GROUP_SCHEMA]["roles"]
        .as_array()
        .map(|r| r.iter().map(|x| text(&x["value"])).collect())
        .unwrap_or_default();
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(", ")
    }
}

fn member_count(g: &Value) -> usize {
    g["members"].as_array().map_or(0, Vec::len)
}

async fn member_ids(client: &Client, users: &[String]) -> Result<Vec<Value>, CliError> {
    if users.is_empty() {
        return Err(CliError::Usage("name at least one account".into()));
    }
    let mut out = Vec::new();
    for u in users {
        let found = client.find(u).await?;
        out.push(json!({ "value": found["id"] }));
    }
    Ok(out)
}

async fn groups_async(args: GroupsArgs) -> Result<String, CliError> {
    let client = Client::connect(&args.connect).await?;
    match args.command {
        GroupsCommand::List { filter, json } => {
            let groups = client.list_at("/scim/v2/Groups", filter.as_deref()).await?;
            if json {
                return Ok(pretty(&Value::Array(groups)));
            }
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    vec![
                        text(&g["id"]),
                        text(&g["displayName"]),
                        member_count(g).to_string(),
                        roles_of(g),
                    ]
                })
                .collect();
            let mut out = table::render(&["ID", "NAME", "MEMBERS", "ROLES"], &rows);
            out.push_str(&format!("{} group(s)\n", groups.len()));
            Ok(out)
        }
        GroupsCommand::Show { group, json } => {
            let g = client.find_group(&group).await?;
            if json {
                return Ok(pretty(&g));
            }
            let mut members = Vec::new();
            for m in g["members"].as_array().cloned().unwrap_or_default() {
                let id = text(&m["value"]);
                let name = match client.find(&id).await {
                    Ok(u) => text(&u["userName"]),
                    Err(_) => "?".into(),
                };
                members.push(format!("{name} ({id})"));
            }
            let rows = vec![
                vec!["id".to_string(), text(&g["id"])],
                vec!["displayName".into(), text(&g["displayName"])],
                vec!["externalId".into(), text(&g["externalId"])],
                vec!["roles".into(), roles_of(&g)],
                vec!["members".into(), member_count(&g).to_string()],
            ];
            let mut out = table::render(&["FIELD", "VALUE"], &rows);
            for m in members {
                out.push_str(&format!("  {m}\n"));
            }
            Ok(out)
        }
        GroupsCommand::Add {
            name,
            roles,
            external_id,
        } => {
            let mut body = json!({
                "schemas": [GROUP_SCHEMA, USHER_GROUP_SCHEMA],
                "displayName": name,
                USHER_GROUP_SCHEMA: {
                    "roles": roles.iter().map(|r| json!({ "value": r })).collect::<Vec<_>>(),
                },
            });
            if let Some(x) = external_id {
                body["externalId"] = json!(x);
            }
            let created = client.create_at("/scim/v2/Groups", &body).await?;
            Ok(format!(
                "created group {} ({})\n",
                text(&created["displayName"]),
                text(&created["id"])
            ))
        }
        GroupsCommand::AddMember { group, users } => {
            let g = client.find_group(&group).await?;
            let values = member_ids(&client, &users).await?;
            let ops = json!([{ "op": "add", "path": "members", "value": values }]);
            let changed = patch(&client, &g, ops).await?;
            Ok(format!(
                "{} now has {} member(s)\n",
                text(&changed["displayName"]),
                member_count(&changed)
            ))
        }
        GroupsCommand::RemoveMember { group, users } => {
            let g = client.find_group(&group).await?;
            let values = member_ids(&client, &users).await?;
            let ops = json!([{ "op": "remove", "path": "members", "value": values }]);
            let changed = patch(&client, &g, ops).await?;
            Ok(format!(
                "{} now has {} member(s)\n",
                text(&changed["displayName"]),
                member_count(&changed)
            ))
        }
        GroupsCommand::Delete { group } => {
            let g = client.find_group(&group).await?;
            client
                .delete_at(&format!("/scim/v2/Groups/{}", text(&g["id"])))
                .await?;
            Ok(format!(
                "deleted group {} ({})\n",
                text(&g["displayName"]),
                text(&g["id"])
            ))
        }
    }
}

async fn patch(client: &Client, g: &Value, ops: Value) -> Result<Value, CliError> {
    let body = json!({ "schemas": [PATCH_OP], "Operations": ops });
    client
        .patch_at(&format!("/scim/v2/Groups/{}", text(&g["id"])), &body)
        .await
}
