//! `hookline webhooks`: the account's webhooks, their signing secrets and pings.

use super::accounts::{PageArgs, seg};
use super::output::{list, out, page_footer, print_fields, print_json, print_table, text};
use super::{Api, CliError, CliResult};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook; a token given with --token is shown back once, here.
    Create {
        /// The webhook's URL, where deliveries go (`--url` is the Hookline's own).
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// Event type or pattern (`patient.created`, `reading.*`, `*`); repeat or separate
        /// with commas for several.
        #[arg(long = "event", short, required = true, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Sent in the token header on every delivery.
        #[arg(long)]
        token: Option<String>,
        /// A JSON object kept with the webhook.
        #[arg(long, value_parser = json_object)]
        metadata: Option<Value>,
        /// Create it inactive (no deliveries until `update --active true`).
        #[arg(long)]
        inactive: bool,
        /// At most this many deliveries a second (1 to 500); the rest wait their turn.
        #[arg(long, value_name = "PER_SECOND")]
        rate_limit: Option<u32>,
        /// Deliver in order, one at a time: the next delivery starts only once the one
        /// before it is delivered or has failed its last attempt.
        #[arg(long)]
        ordered: bool,
    },
    /// List the account's webhooks.
    List(PageArgs),
    /// Show one webhook.
    Show { webhook_id: String },
    /// Change a webhook: only the options given change.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Update {
        webhook_id: String,
        /// The webhook's new URL.
        #[arg(long, value_name = "URL", group = "change")]
        endpoint: Option<String>,
        /// Replaces the subscribed events; repeat or separate with commas.
        #[arg(long = "event", short, group = "change", value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long, group = "change")]
        active: Option<bool>,
        #[arg(long, group = "change", conflicts_with = "clear_description")]
        description: Option<String>,
        #[arg(long, group = "change")]
        clear_description: bool,
        /// Sets the token (shown back once, here).
        #[arg(long, group = "change", conflicts_with = "clear_token")]
        token: Option<String>,
        #[arg(long, group = "change")]
        clear_token: bool,
        #[arg(long, group = "change", value_parser = json_object)]
        metadata: Option<Value>,
        /// At most this many deliveries a second (1 to 500).
        #[arg(
            long,
            value_name = "PER_SECOND",
            group = "change",
            conflicts_with = "no_rate_limit"
        )]
        rate_limit: Option<u32>,
        /// Removes the rate limit.
        #[arg(long, group = "change")]
        no_rate_limit: bool,
        /// Deliver in order, one at a time (the next once the one before is delivered or
        /// has failed its last attempt).
        #[arg(long, group = "change", conflicts_with = "no_ordered")]
        ordered: bool,
        /// Deliver concurrently again, not one at a time.
        #[arg(long, group = "change")]
        no_ordered: bool,
    },
    /// Delete a webhook.
    Delete { webhook_id: String },
    /// Send a ping now; exits 1 unless the endpoint answers the matching pong.
    Ping { webhook_id: String },
    /// Print the webhook's signing secret (`whsec_...`), to verify signatures with.
    Secret { webhook_id: String },
    /// Rotate the signing secret; the previous one keeps signing for 24 hours.
    Rotate {
        webhook_id: String,
        /// The new secret (`whsec_` and 24 to 64 base64 bytes) [default: generated].
        #[arg(long)]
        secret: Option<String>,
    },
}

fn json_object(raw: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("must be a JSON object, like '{\"team\":\"ops\"}'".into()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

pub async fn run(api: &Api, command: WebhooksCommand) -> CliResult {
    match command {
        WebhooksCommand::Create {
            endpoint,
            events,
            description,
            token,
            metadata,
            inactive,
            rate_limit,
            ordered,
        } => {
            let mut body = json!({ "url": endpoint, "events": events, "active": !inactive });
            let fields = body.as_object_mut().expect("an object");
            insert_some(fields, "description", description.map(Value::from));
            insert_some(fields, "authorizationToken", token.map(Value::from));
            insert_some(fields, "metadata", metadata);
            insert_some(fields, "rateLimit", rate_limit.map(Value::from));
            if ordered {
                fields.insert("ordered".into(), Value::Bool(true));
            }
            let webhook = api.call(Method::POST, "/webhook", &[], Some(&body)).await?;
            show_webhook(api, &webhook);
        }
        WebhooksCommand::List(page) => {
            let webhooks = api
                .call(Method::GET, "/webhook", &page.query(), None)
                .await?;
            if api.json {
                print_json(&webhooks);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = webhooks["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    vec![
                        text(&w["id"]),
                        text(&w["url"]),
                        list(&w["events"]),
                        yes_no(&w["active"]),
                    ]
                })
                .collect();
            print_table(&["ID", "URL", "EVENTS", "ACTIVE"], &rows);
            page_footer(&webhooks, "webhooks");
        }
        WebhooksCommand::Show { webhook_id } => {
            let webhook = api
                .call(
                    Method::GET,
                    &format!("/webhook/{}", seg(&webhook_id)),
                    &[],
                    None,
                )
                .await?;
            show_webhook(api, &webhook);
        }
        WebhooksCommand::Update {
            webhook_id,
            endpoint,
            events,
            active,
            description,
            clear_description,
            token,
            clear_token,
            metadata,
            rate_limit,
            no_rate_limit,
            ordered,
            no_ordered,
        } => {
            let mut patch = Map::new();
            insert_some(&mut patch, "url", endpoint.map(Value::from));
            if !events.is_empty() {
                patch.insert("events".into(), json!(events));
            }
            insert_some(&mut patch, "active", active.map(Value::from));
            insert_some(&mut patch, "description", description.map(Value::from));
            if clear_description {
                patch.insert("description".into(), Value::Null);
            }
            insert_some(&mut patch, "authorizationToken", token.map(Value::from));
            if clear_token {
                patch.insert("authorizationToken".into(), Value::Null);
            }
            insert_some(&mut patch, "metadata", metadata);
            insert_some(&mut patch, "rateLimit", rate_limit.map(Value::from));
            if no_rate_limit {
                patch.insert("rateLimit".into(), Value::Null);
            }
            if ordered || no_ordered {
                patch.insert("ordered".into(), Value::Bool(ordered));
            }
            let webhook = api
                .call(
                    Method::PATCH,
                    &format!("/webhook/{}", seg(&webhook_id)),
                    &[],
                    Some(&Value::Object(patch)),
                )
                .await?;
            show_webhook(api, &webhook);
        }
        WebhooksCommand::Delete { webhook_id } => {
            let webhook = api
                .call(
                    Method::DELETE,
                    &format!("/webhook/{}", seg(&webhook_id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&webhook);
                return Ok(());
            }
            out!(
                "Deleted webhook {} ({}).",
                text(&webhook["id"]),
                text(&webhook["url"])
            );
        }
        WebhooksCommand::Ping { webhook_id } => {
            let ping = api
                .call(
                    Method::POST,
                    &format!("/webhook/{}/ping", seg(&webhook_id)),
                    &[],
                    None,
                )
                .await?;
            let ok = ping["ok"] == Value::Bool(true);
            if api.json {
                print_json(&ping);
            } else if ok {
                out!(
                    "Pong: the endpoint answered {} in {} ms.",
                    text(&ping["status"]),
                    text(&ping["latencyMs"])
                );
            } else {
                out!(
                    "No pong: status {}, {} ms: {}",
                    text(&ping["status"]),
                    text(&ping["latencyMs"]),
                    text(&ping["error"])
                );
            }
            if !ok {
                return Err(CliError::Api(format!(
                    "webhook {webhook_id} did not answer the ping with its pong"
                )));
            }
        }
        WebhooksCommand::Secret { webhook_id } => {
            let secret = api
                .call(
                    Method::GET,
                    &format!("/webhook/{}/signing-secret", seg(&webhook_id)),
                    &[],
                    None,
                )
                .await?;
            if api.json {
                print_json(&secret);
                return Ok(());
            }
            out!("{}", text(&secret["secret"]));
        }
        WebhooksCommand::Rotate { webhook_id, secret } => {
            let body = match secret {
                Some(secret) => json!({ "secret": secret }),
                None => json!({}),
            };
            api.call(
                Method::POST,
                &format!("/webhook/{}/signing-secret/rotate", seg(&webhook_id)),
                &[],
                Some(&body),
            )
            .await?;
            if api.json {
                print_json(&json!({ "rotated": webhook_id }));
                return Ok(());
            }
            out!(
                "Rotated the signing secret of {webhook_id}; the previous one keeps signing for 24 hours.\n\
                 `hookline webhooks secret {webhook_id}` prints the new one."
            );
        }
    }
    Ok(())
}

fn insert_some(fields: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(value) = value {
        fields.insert(name.into(), value);
    }
}

fn yes_no(value: &Value) -> String {
    if value == &Value::Bool(true) {
        "yes"
    } else {
        "no"
    }
    .into()
}

fn rate_limit(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "none".to_string(), |rate| format!("{rate}/s"))
}

fn show_webhook(api: &Api, webhook: &Value) {
    if api.json {
        print_json(webhook);
        return;
    }
    let mut fields = vec![
        ("id", text(&webhook["id"])),
        ("url", text(&webhook["url"])),
        ("events", list(&webhook["events"])),
        ("active", yes_no(&webhook["active"])),
        ("description", text(&webhook["description"])),
        ("metadata", text(&webhook["metadata"])),
        ("rate limit", rate_limit(&webhook["rateLimit"])),
        ("ordered", yes_no(&webhook["ordered"])),
        ("created", text(&webhook["createdAt"])),
        ("updated", text(&webhook["updatedAt"])),
    ];
    // The API returns the token only in the answer to the request that set it.
    let token_shown = webhook
        .get("authorizationToken")
        .is_some_and(|t| !t.is_null());
    if token_shown {
        fields.push(("token", text(&webhook["authorizationToken"])));
    }
    print_fields(&fields);
    if token_shown {
        out!("Keep the token: it is shown only now.");
    }
}
