//! The platform's commands: accounts, their API keys, and the event-type catalog.

use super::output::{out, page_footer, print_fields, print_json, print_table, text};
use super::{Api, CliResult};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account; its first API key is shown once, here.
    Create {
        /// The account's name (1 to 200 characters).
        name: String,
    },
    /// List accounts, oldest first.
    List(PageArgs),
    /// Show an account and the ids of its API keys.
    Show { account_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add an API key to an account; the key is shown once, here.
    Add { account_id: String },
    /// Revoke an API key at once.
    Revoke { account_id: String, key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum EventTypesCommand {
    /// List the catalog: built-in types, then the platform's own.
    List,
    /// Register a platform event type (admin key).
    Add {
        /// e.g. `survey_finished` or `medical-encounters.created`.
        name: String,
        #[arg(long, short)]
        description: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// Page, from 0.
    #[arg(long, default_value_t = 0)]
    pub page: u32,
    /// Items per page, 1 to 100.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub size: u32,
}

impl PageArgs {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        vec![
            ("page", self.page.to_string()),
            ("size", self.size.to_string()),
        ]
    }
}

pub async fn accounts(api: &Api, command: AccountsCommand) -> CliResult {
    match command {
        AccountsCommand::Create { name } => {
            let account = api
                .call(
                    Method::POST,
                    "/accounts",
                    &[],
                    Some(&json!({ "name": name })),
                )
                .await?;
            if api.json {
                print_json(&account);
                return Ok(());
            }
            print_fields(&[
                ("id", text(&account["id"])),
                ("name", text(&account["name"])),
                ("created", text(&account["createdAt"])),
                ("api key", text(&account["apiKey"])),
            ]);
            out!("Keep the API key: it is shown only now.");
        }
        AccountsCommand::List(page) => {
            let accounts = api
                .call(Method::GET, "/accounts", &page.query(), None)
                .await?;
            if api.json {
                print_json(&accounts);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = accounts["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| vec![text(&a["id"]), text(&a["name"]), text(&a["createdAt"])])
                .collect();
            print_table(&["ID", "NAME", "CREATED"], &rows);
            page_footer(&accounts, "accounts");
        }
        AccountsCommand::Show { account_id } => {
            let account = api
                .call(
                    Method::GET,
                    &format!("/accounts/{}", seg(&account_id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&account);
                return Ok(());
            }
            print_fields(&[
                ("id", text(&account["id"])),
                ("name", text(&account["name"])),
                ("created", text(&account["createdAt"])),
            ]);
            let keys: Vec<Vec<String>> = account["apiKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| vec![text(&k["id"]), text(&k["createdAt"])])
                .collect();
            out!();
            print_table(&["API KEY ID", "CREATED"], &keys);
        }
    }
    Ok(())
}

pub async fn keys(api: &Api, command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Add { account_id } => {
            let key = api
                .call(
                    Method::POST,
                    &format!("/accounts/{}/api-keys", seg(&account_id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&key);
                return Ok(());
            }
            print_fields(&[
                ("id", text(&key["id"])),
                ("created", text(&key["createdAt"])),
                ("api key", text(&key["apiKey"])),
            ]);
            out!("Keep the API key: it is shown only now.");
        }
        KeysCommand::Revoke { account_id, key_id } => {
            api.call(
                Method::DELETE,
                &format!("/accounts/{}/api-keys/{}", seg(&account_id), seg(&key_id)),
                &[],
                None,
            )
            .await?;
            if api.json {
                print_json(&json!({ "revoked": key_id }));
                return Ok(());
            }
            out!("Revoked API key {key_id} of {account_id}.");
        }
    }
    Ok(())
}

pub async fn event_types(api: &Api, command: EventTypesCommand) -> CliResult {
    match command {
        EventTypesCommand::List => {
            // The admin reads the catalog at /event-types, an account at /webhook/types: the
            // same list, so either key works here.
            let types = match api.try_call(Method::GET, "/event-types", &[], None).await? {
                Ok(types) => types,
                Err(failure) if failure.status == 403 => {
                    api.call(Method::GET, "/webhook/types", &[], None).await?
                }
                Err(failure) => return Err(super::CliError::Api(api.explain(&failure))),
            };
            if api.json {
                print_json(&types);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = types
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| vec![text(&t["name"]), text(&t["description"])])
                .collect();
            print_table(&["NAME", "DESCRIPTION"], &rows);
        }
        EventTypesCommand::Add { name, description } => {
            let created = api
                .call(
                    Method::POST,
                    "/event-types",
                    &[],
                    Some(&json!({ "name": name, "description": description })),
                )
                .await?;
            if api.json {
                print_json(&created);
                return Ok(());
            }
            out!("Registered event type {}.", text(&created["name"]));
        }
    }
    Ok(())
}

/// An id as one path segment: anything that could change the path is percent-encoded.
pub fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
