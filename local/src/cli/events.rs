//! `hookline events publish`: one event from flags, or many from a JSON-lines file (or stdin)
//! through batch publish, with a progress bar and a summary.

use super::output::{out, print_json, text};
use super::{Api, CliError, CliResult};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `POST /events/batch` takes at most this many events.
const BATCH_SIZE: usize = 100;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish one event (--type with --payload or --payload-file), or many (--file).
    #[command(group = clap::ArgGroup::new("source").required(true).args(["event_type", "file"]))]
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The account the event is for; with --file, for lines without `accountId`.
    #[arg(long)]
    account: Option<String>,
    /// The event type, e.g. `patient.created`.
    #[arg(
        long = "type",
        short = 't',
        requires = "account",
        conflicts_with = "file"
    )]
    event_type: Option<String>,
    /// The payload, a JSON object.
    #[arg(long, conflicts_with_all = ["payload_file", "file"])]
    payload: Option<String>,
    /// A file holding the payload, a JSON object.
    #[arg(long, conflicts_with = "file")]
    payload_file: Option<PathBuf>,
    /// Your id for the event: publishing the same id again is a no-op.
    #[arg(long, conflicts_with = "file")]
    id: Option<String>,
    /// A JSON-lines file of events, one `{"accountId","type","payload","id"?}` a line; `-`
    /// reads stdin. Sent 100 a request through batch publish.
    #[arg(long)]
    file: Option<PathBuf>,
}

pub async fn run(api: &Api, command: EventsCommand) -> CliResult {
    let EventsCommand::Publish(args) = command;
    match args.file {
        Some(ref file) => publish_many(api, file, args.account.as_deref()).await,
        None => publish_one(api, args).await,
    }
}

async fn publish_one(api: &Api, args: PublishArgs) -> CliResult {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(raw), _) => serde_json::from_str::<Value>(raw)
            .map_err(|error| CliError::Usage(format!("--payload is not JSON: {error}")))?,
        (None, Some(path)) => {
            let raw = read_input(path)?;
            serde_json::from_str::<Value>(&raw).map_err(|error| {
                CliError::BadInput(format!("{}: not JSON: {error}", path.display()))
            })?
        }
        (None, None) => json!({}),
    };
    if !payload.is_object() {
        return Err(CliError::Usage(
            "the payload must be a JSON object, like '{\"patientId\":42}'".into(),
        ));
    }
    let mut event = json!({
        "accountId": args.account,
        "type": args.event_type,
        "payload": payload,
    });
    if let Some(id) = args.id {
        event["id"] = json!(id);
    }
    let published = api.call(Method::POST, "/events", &[], Some(&event)).await?;
    if api.json {
        print_json(&published);
        return Ok(());
    }
    out!(
        "Published {} ({}) to {} webhook(s).",
        text(&published["id"]),
        text(&published["type"]),
        text(&published["deliveries"])
    );
    Ok(())
}

/// One line of the file, checked before anything is sent.
struct Line {
    number: usize,
    event: Value,
}

async fn publish_many(api: &Api, file: &Path, account: Option<&str>) -> CliResult {
    let lines = read_lines(file, account)?;
    if lines.is_empty() {
        return Err(CliError::BadInput(format!(
            "{}: no events in it",
            display(file)
        )));
    }
    let progress = if api.json {
        ProgressBar::hidden()
    } else {
        // Drawn on stderr, and only on a terminal: scripts and pipes see the summary alone.
        ProgressBar::with_draw_target(Some(lines.len() as u64), ProgressDrawTarget::stderr())
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {elapsed}")
            .expect("a valid template"),
    );

    let mut results: Vec<(usize, Value)> = Vec::with_capacity(lines.len());
    let mut batch_supported = true;
    let mut requests = 0;
    for chunk in lines.chunks(BATCH_SIZE) {
        if batch_supported {
            let body = json!({ "events": chunk.iter().map(|l| &l.event).collect::<Vec<_>>() });
            requests += 1;
            match api
                .try_call(Method::POST, "/events/batch", &[], Some(&body))
                .await?
            {
                Ok(answer) => {
                    let answers = answer["results"].as_array().cloned().unwrap_or_default();
                    for (line, result) in chunk.iter().zip(answers) {
                        results.push((line.number, result));
                    }
                    progress.inc(chunk.len() as u64);
                    continue;
                }
                // A Hookline without batch publish: one request per event from here on.
                Err(failure) if failure.status == 404 || failure.status == 405 => {
                    batch_supported = false;
                }
                Err(failure) => {
                    progress.abandon();
                    return Err(CliError::Api(format!(
                        "{} (published before this: {} of {} events)",
                        api.explain(&failure),
                        results.len(),
                        lines.len()
                    )));
                }
            }
        }
        for line in chunk {
            requests += 1;
            let result = match api
                .try_call(Method::POST, "/events", &[], Some(&line.event))
                .await?
            {
                Ok(mut published) => {
                    published["status"] = json!(202);
                    published
                }
                Err(failure) => json!({
                    "status": failure.status,
                    "error": { "code": failure.code, "message": failure.message },
                }),
            };
            results.push((line.number, result));
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    let accepted: Vec<&Value> = results
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r["status"] == json!(202))
        .collect();
    let deliveries: u64 = accepted
        .iter()
        .filter_map(|r| r["deliveries"].as_u64())
        .sum();
    let refused: Vec<&(usize, Value)> = results
        .iter()
        .filter(|(_, r)| r["status"] != json!(202))
        .collect();
    if api.json {
        print_json(&json!({
            "published": accepted.len(),
            "refused": refused.len(),
            "deliveries": deliveries,
            "results": results.iter().map(|(n, r)| json!({ "line": n, "result": r })).collect::<Vec<_>>(),
        }));
    } else {
        out!(
            "Published {} of {} events ({deliveries} deliveries) in {requests} request(s).",
            accepted.len(),
            lines.len()
        );
        for (number, result) in &refused {
            out!(
                "  line {number}: refused, {} {}: {}",
                text(&result["status"]),
                text(&result["error"]["code"]),
                without_batch_index(&text(&result["error"]["message"]))
            );
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(CliError::Api(format!(
            "{} of {} events were refused (see the lines above)",
            refused.len(),
            lines.len()
        )))
    }
}

/// Reads and checks every line first, so that a bad file sends nothing.
fn read_lines(file: &Path, account: Option<&str>) -> CliResult<Vec<Line>> {
    let raw = read_input(file)?;
    let mut lines = Vec::new();
    for (index, line) in raw.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut event: Value = serde_json::from_str(line).map_err(|error| {
            CliError::BadInput(format!(
                "{} line {number}: not JSON ({error}); each line must be one event object",
                display(file)
            ))
        })?;
        let Some(fields) = event.as_object_mut() else {
            return Err(CliError::BadInput(format!(
                "{} line {number}: not a JSON object; each line must be {{\"accountId\",\"type\",\"payload\"}}",
                display(file)
            )));
        };
        if !fields.contains_key("accountId") {
            match account {
                Some(account) => {
                    fields.insert("accountId".into(), json!(account));
                }
                None => {
                    return Err(CliError::BadInput(format!(
                        "{} line {number}: no accountId (add it, or pass --account)",
                        display(file)
                    )));
                }
            }
        }
        lines.push(Line { number, event });
    }
    Ok(lines)
}

fn read_input(path: &Path) -> CliResult<String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|error| CliError::BadInput(format!("cannot read {}: {error}", display(path))))?;
    Ok(text)
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

/// The batch names a field `events[7].type`; the summary already gives the line.
fn without_batch_index(message: &str) -> &str {
    message
        .strip_prefix("events[")
        .and_then(|rest| rest.split_once("]."))
        .map_or(message, |(_, field)| field)
}
