//! `hookline logs`, `retry` and `status`: what happened to the account's deliveries.

use super::accounts::seg;
use super::output::{out, page_footer, print_fields, print_json, print_table, text};
use super::{Api, CliResult};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    #[command(subcommand)]
    show: Option<LogsCommand>,
    #[command(flatten)]
    filters: LogFilters,
    /// Keep watching: print each new delivery, and each change of status, as it happens.
    #[arg(long, short)]
    follow: bool,
    /// With --follow, seconds between two looks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
}

#[derive(Debug, Subcommand)]
enum LogsCommand {
    /// One delivery with each of its attempts.
    Show { delivery_id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Pending,
    Retrying,
    Delivered,
    Failed,
}

/// Every filter of `GET /webhook/logs`; times are RFC 3339 (`2026-01-31T00:00:00Z`).
#[derive(Debug, clap::Args)]
struct LogFilters {
    /// Created at or after.
    #[arg(long)]
    since: Option<String>,
    /// Created at or before.
    #[arg(long)]
    until: Option<String>,
    /// Last attempted at or after.
    #[arg(long)]
    retried_since: Option<String>,
    /// Last attempted at or before.
    #[arg(long)]
    retried_until: Option<String>,
    /// Only this webhook's deliveries.
    #[arg(long)]
    webhook: Option<String>,
    /// Only this event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// Page, from 0.
    #[arg(long, default_value_t = 0)]
    page: u32,
    /// Deliveries per page, 1 to 100.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    size: u32,
}

impl LogFilters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("page", self.page.to_string()),
            ("size", self.size.to_string()),
        ];
        let optional = [
            ("startTimestamp", &self.since),
            ("endTimestamp", &self.until),
            ("startLastRetryTimestamp", &self.retried_since),
            ("endLastRetryTimestamp", &self.retried_until),
            ("webhookId", &self.webhook),
            ("type", &self.event_type),
        ];
        query.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.clone().map(|v| (name, v))),
        );
        if let Some(status) = self.status {
            let status = status.to_possible_value().expect("no skipped values");
            query.push(("status", status.get_name().to_string()));
        }
        query
    }
}

const LOG_HEADERS: [&str; 7] = [
    "ID", "STATUS", "WEBHOOK", "TYPE", "CREATED", "ATTEMPTS", "LAST",
];

fn log_row(log: &Value) -> Vec<String> {
    vec![
        text(&log["id"]),
        text(&log["status"]),
        text(&log["webhookId"]),
        text(&log["webhookType"]),
        text(&log["createTimestamp"]),
        // retryAttempts counts the attempts after the first.
        match (&log["retryAttempts"], &log["lastRetryTimestamp"]) {
            (_, Value::Null) => "0".into(),
            (n, _) => (n.as_u64().unwrap_or(0) + 1).to_string(),
        },
        text(&log["lastResponseStatus"]),
    ]
}

pub async fn logs(api: &Api, args: LogsArgs) -> CliResult {
    if let Some(LogsCommand::Show { delivery_id }) = args.show {
        return show(api, &delivery_id).await;
    }
    if args.follow {
        return follow(api, &args.filters, Duration::from_secs(args.interval)).await;
    }
    let page = api
        .call(Method::GET, "/webhook/logs", &args.filters.query(), None)
        .await?;
    if api.json {
        print_json(&page);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["content"]
        .as_array()
        .into_iter()
        .flatten()
        .map(log_row)
        .collect();
    print_table(&LOG_HEADERS, &rows);
    page_footer(&page, "deliveries");
    Ok(())
}

async fn show(api: &Api, delivery_id: &str) -> CliResult {
    let log = api
        .call(
            Method::GET,
            &format!("/webhook/logs/{}", seg(delivery_id)),
            &[],
            None,
        )
        .await?;
    if api.json {
        print_json(&log);
        return Ok(());
    }
    print_fields(&[
        ("id", text(&log["id"])),
        ("status", text(&log["status"])),
        (
            "webhook",
            format!("{} {}", text(&log["webhookId"]), text(&log["webhookUrl"])),
        ),
        (
            "event",
            format!("{} {}", text(&log["eventId"]), text(&log["webhookType"])),
        ),
        ("created", text(&log["createTimestamp"])),
        ("last attempt", text(&log["lastRetryTimestamp"])),
        ("next attempt", text(&log["nextRetryTimestamp"])),
    ]);
    let attempts: Vec<Vec<String>> = log["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                text(&a["timestamp"]),
                text(&a["statusCode"]),
                format!("{} ms", text(&a["durationMs"])),
                text(&a["error"]),
            ]
        })
        .collect();
    out!();
    print_table(&["ATTEMPT AT", "STATUS", "TOOK", "ERROR"], &attempts);
    Ok(())
}

/// Polls the newest page and prints what is new or changed, oldest first, until interrupted.
async fn follow(api: &Api, filters: &LogFilters, every: Duration) -> CliResult {
    let mut query = filters.query();
    // Always the newest deliveries, as many as one look can take.
    query.retain(|(name, _)| *name != "page" && *name != "size");
    query.push(("page", "0".into()));
    query.push(("size", "100".into()));
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    if !api.json {
        out!("{}", follow_line(&LOG_HEADERS.map(String::from)));
    }
    loop {
        let page = api.call(Method::GET, "/webhook/logs", &query, None).await?;
        let newest_first = page["content"].as_array().cloned().unwrap_or_default();
        for log in newest_first.iter().rev() {
            let id = text(&log["id"]);
            let state = (text(&log["status"]), text(&log["retryAttempts"]));
            if seen.get(&id) == Some(&state) {
                continue;
            }
            seen.insert(id, state);
            if api.json {
                out!("{log}");
            } else {
                out!("{}", follow_line(&log_row(log)));
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Fixed widths, since rows arrive one at a time.
fn follow_line(cells: &[String]) -> String {
    let widths = [30, 9, 30, 24, 24, 8, 4];
    cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect::<Vec<_>>()
        .join("  ")
        .trim_end()
        .to_string()
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["delivery_id", "failed"]))]
pub struct RetryArgs {
    /// The delivery to send again.
    delivery_id: Option<String>,
    /// Send every failed delivery again (of active webhooks).
    #[arg(long, conflicts_with = "delivery_id")]
    failed: bool,
    /// With --failed: only this webhook's.
    #[arg(long, requires = "failed")]
    webhook: Option<String>,
    /// With --failed: only deliveries created at or after this time (RFC 3339).
    #[arg(long, requires = "failed")]
    since: Option<String>,
    /// With --failed: only deliveries created at or before this time (RFC 3339).
    #[arg(long, requires = "failed")]
    until: Option<String>,
}

pub async fn retry(api: &Api, args: RetryArgs) -> CliResult {
    if let Some(id) = args.delivery_id {
        let log = api
            .call(
                Method::POST,
                &format!("/webhook/logs/{}/retry", seg(&id)),
                &[],
                None,
            )
            .await?;
        if api.json {
            print_json(&log);
            return Ok(());
        }
        out!(
            "Delivery {} is queued again ({}).",
            text(&log["id"]),
            text(&log["status"])
        );
        return Ok(());
    }
    let mut body = json!({});
    for (name, value) in [
        ("webhookId", args.webhook),
        ("since", args.since),
        ("until", args.until),
    ] {
        if let Some(value) = value {
            body[name] = json!(value);
        }
    }
    let retried = api
        .call(Method::POST, "/webhook/retry", &[], Some(&body))
        .await?;
    if api.json {
        print_json(&retried);
        return Ok(());
    }
    out!(
        "{} failed deliveries queued again.",
        text(&retried["retried"])
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Deliveries created (with --missing: events published) at or after this time (RFC 3339).
    #[arg(long)]
    since: String,
    /// Deliveries created at or before this time (RFC 3339); now when left out.
    #[arg(long, conflicts_with = "missing")]
    until: Option<String>,
    /// Only this webhook's deliveries (with --missing: the webhook to send them to).
    #[arg(long)]
    webhook: Option<String>,
    /// Only `delivered` or only `failed` deliveries.
    #[arg(long, value_parser = ["delivered", "failed"], conflicts_with = "missing")]
    status: Option<String>,
    /// Send the webhook the events it matches and never got a delivery of.
    #[arg(long, requires = "webhook")]
    missing: bool,
    /// Wait until the job ends, printing how far it got.
    #[arg(long)]
    wait: bool,
}

pub async fn replay(api: &Api, args: ReplayArgs) -> CliResult {
    let mut job = if args.missing {
        let webhook = args.webhook.unwrap_or_default();
        api.call(
            Method::POST,
            &format!("/webhook/{}/replay-missing", seg(&webhook)),
            &[],
            Some(&json!({"since": args.since})),
        )
        .await?
    } else {
        let until = args.until.unwrap_or_else(|| {
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        let mut body = json!({"since": args.since, "until": until});
        for (name, value) in [("webhookId", args.webhook), ("status", args.status)] {
            if let Some(value) = value {
                body[name] = json!(value);
            }
        }
        api.call(Method::POST, "/webhook/replay", &[], Some(&body))
            .await?
    };
    let path = format!("/webhook/jobs/{}", seg(&text(&job["id"])));
    while args.wait && job["status"] == "running" {
        if !api.json {
            out!("{}", job_line(&job));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        job = api.call(Method::GET, &path, &[], None).await?;
    }
    if api.json {
        print_json(&job);
    } else {
        out!("{}", job_line(&job));
        if job["status"] == "running" {
            out!("It goes on in the background (--wait waits for it).");
        }
    }
    Ok(())
}

/// `Job job_... (replay): completed, 3 found, 3 sent.`
fn job_line(job: &Value) -> String {
    let mut line = format!(
        "Job {} ({}): {}, {} found, {} sent.",
        text(&job["id"]),
        text(&job["kind"]),
        text(&job["status"]),
        text(&job["total"]),
        text(&job["done"])
    );
    if let Some(error) = job["error"].as_str() {
        line.push_str(&format!(" {error}."));
    }
    line
}

pub async fn status(api: &Api) -> CliResult {
    let counts = api.call(Method::GET, "/webhook/status", &[], None).await?;
    if api.json {
        print_json(&counts);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = ["pending", "retrying", "delivered", "failed"]
        .iter()
        .map(|name| vec![name.to_string(), text(&counts[*name])])
        .collect();
    print_table(&["STATUS", "DELIVERIES"], &rows);
    Ok(())
}
