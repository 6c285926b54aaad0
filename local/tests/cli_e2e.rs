//! End to end: the `hookline` management commands against a real `hookline serve`, checking
//! what they print and how they exit.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `hookline` with `url` and `key` in the environment (as a user would export them),
/// isolated from the user's own config file and settings.
fn hookline(url: &str, key: &str, args: &[&str]) -> Output {
    hookline_with(url, key, args, &[], None)
}

fn base_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    for name in [
        "HOOKLINE_URL",
        "HOOKLINE_KEY",
        "HOOKLINE_PROFILE",
        "HOOKLINE_CONFIG",
    ] {
        command.env_remove(name);
    }
    command
        .env("XDG_CONFIG_HOME", temp_dir("cli-no-config"))
        .envs(env.iter().copied());
    command
}

fn hookline_with(
    url: &str,
    key: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut command = base_command(env);
    command
        .env("HOOKLINE_URL", url)
        .env("HOOKLINE_KEY", key)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("hookline runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exits 0; returns what it printed.
#[track_caller]
fn ok(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Exits `code`; returns what it printed on stderr.
#[track_caller]
fn fails(output: Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

/// The value of a `name: value` line.
#[track_caller]
fn field(printed: &str, name: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no '{name}:' in:\n{printed}"))
        .trim()
        .to_string()
}

/// Creates an account with the CLI; returns its id and key.
fn create_account(server: &Server, name: &str) -> (String, String) {
    let printed = ok(hookline(
        &server.base,
        ADMIN_KEY,
        &["accounts", "create", name],
    ));
    (field(&printed, "id"), field(&printed, "api key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn manages_accounts_keys_event_types_webhooks_and_deliveries() {
    let dir = temp_dir("cli-manage");
    let server = Server::start(&dir);
    let url = server.base.clone();
    let (receiver_url, mut received) = receiver().await;

    // Accounts and keys (admin).
    let printed = ok(hookline(
        &url,
        ADMIN_KEY,
        &["accounts", "create", "Acme Clinic"],
    ));
    assert!(
        printed.contains("Keep the API key: it is shown only now."),
        "{printed}"
    );
    let account = field(&printed, "id");
    let key = field(&printed, "api key");
    assert!(account.starts_with("acct_") && key.len() >= 32, "{printed}");
    let listed = ok(hookline(&url, ADMIN_KEY, &["accounts", "list"]));
    assert!(listed.starts_with("ID"), "{listed}");
    assert!(
        listed.contains(&account) && listed.contains("Acme Clinic"),
        "{listed}"
    );
    assert!(listed.contains("1 accounts shown, 1 in all"), "{listed}");

    let printed = ok(hookline(&url, ADMIN_KEY, &["keys", "add", &account]));
    let second_key = field(&printed, "api key");
    let second_key_id = field(&printed, "id");
    let shown = ok(hookline(&url, ADMIN_KEY, &["accounts", "show", &account]));
    assert!(shown.contains(&second_key_id), "{shown}");
    assert!(
        !shown.contains(&second_key),
        "a key is never shown again: {shown}"
    );
    ok(hookline(&url, &second_key, &["status"]));
    let printed = ok(hookline(
        &url,
        ADMIN_KEY,
        &["keys", "revoke", &account, &second_key_id],
    ));
    assert_eq!(
        printed.trim(),
        format!("Revoked API key {second_key_id} of {account}.")
    );
    let error = fails(hookline(&url, &second_key, &["status"]), 1);
    assert!(
        error.contains("401") && error.contains("check --key"),
        "{error}"
    );
    assert!(
        !error.contains(&second_key),
        "the key is not echoed: {error}"
    );

    // Event types: added by the platform, listed with either key.
    let printed = ok(hookline(
        &url,
        ADMIN_KEY,
        &[
            "event-types",
            "add",
            "survey_finished",
            "--description",
            "A survey is done.",
        ],
    ));
    assert_eq!(printed.trim(), "Registered event type survey_finished.");
    let types = ok(hookline(&url, &key, &["event-types", "list"]));
    assert!(
        types.contains("survey_finished") && types.contains("patient.created"),
        "{types}"
    );
    // A platform command with an account key says which key it needs.
    let error = fails(hookline(&url, &key, &["accounts", "list"]), 1);
    assert!(
        error.contains("403") && error.contains("admin key"),
        "{error}"
    );

    // Webhooks (account key).
    let printed = ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "create",
            "--endpoint",
            &receiver_url,
            "--event",
            "patient.created",
            "--token",
            "tok-0123456789",
            "--description",
            "intake",
            "--rate-limit",
            "50",
            "--ordered",
        ],
    ));
    let webhook = field(&printed, "id");
    assert_eq!(field(&printed, "rate limit"), "50/s");
    assert_eq!(field(&printed, "ordered"), "yes");
    assert_eq!(field(&printed, "token"), "tok-0123456789");
    assert_eq!(field(&printed, "events"), "patient.created");
    let shown = ok(hookline(&url, &key, &["webhooks", "show", &webhook]));
    assert_eq!(field(&shown, "description"), "intake");
    assert_eq!(field(&shown, "ordered"), "yes");
    assert!(
        !shown.contains("tok-0123456789"),
        "the token is shown once: {shown}"
    );
    let listed: Value =
        serde_json::from_str(&ok(hookline(&url, &key, &["webhooks", "list", "--json"]))).unwrap();
    assert_eq!(listed["content"][0]["url"], receiver_url.as_str());
    assert_eq!(listed["content"][0]["ordered"], true);
    let updated = ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "update",
            &webhook,
            "--event",
            "patient.created,survey_finished",
            "--active",
            "false",
        ],
    ));
    assert_eq!(
        field(&updated, "events"),
        "patient.created, survey_finished"
    );
    assert_eq!(field(&updated, "active"), "no");
    let unlimited = ok(hookline(
        &url,
        &key,
        &["webhooks", "update", &webhook, "--no-rate-limit"],
    ));
    assert_eq!(field(&unlimited, "rate limit"), "none");
    // Ordered delivery: on and off are one flag each, not both at once.
    fails(
        hookline(
            &url,
            &key,
            &["webhooks", "update", &webhook, "--ordered", "--no-ordered"],
        ),
        2,
    );
    let unordered = ok(hookline(
        &url,
        &key,
        &["webhooks", "update", &webhook, "--no-ordered"],
    ));
    assert_eq!(field(&unordered, "ordered"), "no");
    let shown: Value = serde_json::from_str(&ok(hookline(
        &url,
        &key,
        &["webhooks", "show", &webhook, "--json"],
    )))
    .unwrap();
    assert!(shown.get("ordered").is_none(), "off is absent: {shown}");
    ok(hookline(
        &url,
        &key,
        &["webhooks", "update", &webhook, "--active", "true"],
    ));
    let secret = ok(hookline(&url, &key, &["webhooks", "secret", &webhook]));
    assert!(secret.trim().starts_with("whsec_"), "{secret}");

    // Publish one event (admin) and follow it to the logs (account).
    let printed = ok(hookline(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "--type",
            "patient.created",
            "--payload",
            r#"{"patientId":42}"#,
            "--id",
            "evt-cli-1",
        ],
    ));
    assert_eq!(
        printed.trim(),
        "Published evt-cli-1 (patient.created) to 1 webhook(s)."
    );
    let delivery = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert!(delivery.body.contains(r#""patientId":42"#));
    let logs = wait_for_printed(&url, &key, &["logs", "--status", "delivered"], "delivered");
    let row = logs.lines().nth(1).unwrap().to_string();
    let delivery_id = row.split_whitespace().next().unwrap().to_string();
    assert!(delivery_id.starts_with("dlv_"), "{logs}");
    assert!(
        row.contains(&webhook) && row.contains("patient.created") && row.ends_with("200"),
        "{row}"
    );
    let none = ok(hookline(
        &url,
        &key,
        &["logs", "--status", "failed", "--type", "patient.created"],
    ));
    assert!(none.contains("0 deliveries shown, 0 in all"), "{none}");
    let shown = ok(hookline(&url, &key, &["logs", "show", &delivery_id]));
    assert_eq!(field(&shown, "status"), "delivered");
    assert!(
        shown.contains("ATTEMPT AT") && shown.contains("200"),
        "{shown}"
    );
    let counts = ok(hookline(&url, &key, &["status"]));
    assert!(
        counts
            .lines()
            .any(|l| l.split_whitespace().eq(["delivered", "1"])),
        "{counts}"
    );
    let error = fails(hookline(&url, &key, &["logs", "--since", "yesterday"]), 1);
    assert!(
        error.contains("400") && error.contains("startTimestamp"),
        "{error}"
    );

    // Retries: one, then every failed one (none).
    let printed = ok(hookline(&url, &key, &["retry", &delivery_id]));
    assert!(
        printed.starts_with(&format!("Delivery {delivery_id} is queued again")),
        "{printed}"
    );
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered again");
    let printed = ok(hookline(
        &url,
        &key,
        &["retry", "--failed", "--webhook", &webhook],
    ));
    assert_eq!(printed.trim(), "0 failed deliveries queued again.");
    fails(hookline(&url, &key, &["retry"]), 2);

    // Replay: the one delivery of this webhook, sent again as a job that ends at once (once
    // the retry above is recorded: a delivery still pending is not replayed); then what the
    // webhook missed (nothing).
    for _ in 0..100 {
        let counts: serde_json::Value =
            serde_json::from_str(&ok(hookline(&url, &key, &["status", "--json"]))).unwrap();
        if counts["pending"] == 0 && counts["retrying"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let printed = ok(hookline(
        &url,
        &key,
        &[
            "replay",
            "--since",
            "2020-01-01T00:00:00Z",
            "--webhook",
            &webhook,
            "--wait",
        ],
    ));
    assert!(
        printed.starts_with("Job job_")
            && printed
                .trim()
                .ends_with("(replay): completed, 1 found, 1 sent."),
        "{printed}"
    );
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("replayed");
    let printed = ok(hookline(
        &url,
        &key,
        &[
            "replay",
            "--missing",
            "--since",
            "2020-01-01T00:00:00Z",
            "--webhook",
            &webhook,
        ],
    ));
    assert!(
        printed
            .trim()
            .ends_with("(replayMissing): completed, 1 found, 0 sent."),
        "{printed}"
    );
    fails(
        hookline(
            &url,
            &key,
            &["replay", "--missing", "--since", "2020-01-01T00:00:00Z"],
        ),
        2,
    );

    // This receiver answers "thanks", not the pong: the ping fails, and says why.
    let output = hookline(&url, &key, &["webhooks", "ping", &webhook]);
    assert!(
        stdout(&output).starts_with("No pong: status 200"),
        "{}",
        stdout(&output)
    );
    let error = fails(output, 1);
    assert!(error.contains("did not answer the ping"), "{error}");

    let printed = ok(hookline(&url, &key, &["webhooks", "rotate", &webhook]));
    assert!(
        printed.starts_with(&format!("Rotated the signing secret of {webhook}")),
        "{printed}"
    );
    let rotated = ok(hookline(&url, &key, &["webhooks", "secret", &webhook]));
    assert_ne!(rotated, secret);
    let printed = ok(hookline(&url, &key, &["webhooks", "delete", &webhook]));
    assert_eq!(
        printed.trim(),
        format!("Deleted webhook {webhook} ({receiver_url}).")
    );
    let error = fails(hookline(&url, &key, &["webhooks", "show", &webhook]), 1);
    assert!(error.contains("404"), "{error}");
    server.stop();
}

/// Runs the command until its output contains `needle` (deliveries settle asynchronously).
fn wait_for_printed(url: &str, key: &str, args: &[&str], needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let printed = ok(hookline(url, key, args));
        if printed.contains(needle) || Instant::now() > deadline {
            return printed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_a_json_lines_file_in_batches_and_sums_up() {
    let dir = temp_dir("cli-batch");
    let server = Server::start(&dir);
    let url = server.base.clone();
    let (account, key) = create_account(&server, "Batch Clinic");
    let (receiver_url, _received) = receiver().await;
    ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "create",
            "--endpoint",
            &receiver_url,
            "--event",
            "patient.*",
        ],
    ));

    // 150 events, one refused by the server (an unknown type on line 7): two batch requests.
    let mut lines: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"type":"patient.created","payload":{{"n":{i}}},"id":"bulk-{i}"}}"#))
        .collect();
    lines[6] = r#"{"type":"no.such.type","payload":{}}"#.to_string();
    let file = dir.with_extension("jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let output = hookline(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    let printed = stdout(&output);
    let error = fails(output, 1);
    assert!(
        printed.starts_with("Published 149 of 150 events (149 deliveries) in 2 request(s)."),
        "{printed}"
    );
    assert!(
        printed.contains(
            "line 7: refused, 400 validation_error: type: unknown event type 'no.such.type'"
        ),
        "{printed}"
    );
    assert!(error.contains("1 of 150 events were refused"), "{error}");

    // From stdin, with --json; the same ids again are no-ops that answer the first result.
    let stdin = format!("{}\n\n{}\n", lines[0], lines[1]);
    let output = hookline_with(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "--file",
            "-",
            "--json",
        ],
        &[],
        Some(&stdin),
    );
    let summary: Value = serde_json::from_str(&ok(output)).unwrap();
    assert_eq!(summary["published"], 2);
    assert_eq!(summary["refused"], 0);
    assert_eq!(
        summary["results"][1]["line"], 3,
        "blank lines count: {summary}"
    );

    // A bad file sends nothing and names the line.
    let bad = dir.with_extension("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{}\nnot json\n", lines[2], lines[3])).unwrap();
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &[
                "events",
                "publish",
                "--account",
                &account,
                "--file",
                bad.to_str().unwrap(),
            ],
        ),
        4,
    );
    assert!(error.contains("line 3: not JSON"), "{error}");
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &["events", "publish", "--file", bad.to_str().unwrap()],
        ),
        4,
    );
    assert!(
        error.contains("line 1: no accountId (add it, or pass --account)"),
        "{error}"
    );
    let missing = dir.with_extension("missing.jsonl");
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &[
                "events",
                "publish",
                "--account",
                &account,
                "--file",
                missing.to_str().unwrap(),
            ],
        ),
        4,
    );
    assert!(
        error.contains("cannot read") && error.contains("missing.jsonl"),
        "{error}"
    );
    let counts: Value =
        serde_json::from_str(&ok(hookline(&url, &key, &["status", "--json"]))).unwrap();
    let total: u64 = ["pending", "retrying", "delivered", "failed"]
        .iter()
        .map(|s| counts[*s].as_u64().unwrap())
        .sum();
    assert_eq!(total, 149, "the bad files published nothing: {counts}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_errors_say_what_is_wrong() {
    let dir = temp_dir("cli-errors");
    let server = Server::start(&dir);
    let url = server.base.clone();

    // A wrong key: the API's 401, exit 1.
    let error = fails(
        hookline(
            &url,
            "not-the-key-0123456789abcdefghijkl",
            &["accounts", "list"],
        ),
        1,
    );
    assert!(
        error.contains("401 unauthorized") && error.contains("check --key"),
        "{error}"
    );
    assert!(!error.contains("not-the-key"), "{error}");

    // Nothing listening there: exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = fails(hookline(&closed_url, ADMIN_KEY, &["accounts", "list"]), 3);
    assert!(
        error.contains(&format!("cannot reach Hookline at {closed_url}")),
        "{error}"
    );
    assert!(error.contains("Check --url or HOOKLINE_URL"), "{error}");

    // Usage errors: exit 2, from clap or from missing settings.
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &["webhooks", "create", "--endpoint", "https://x.example"],
        ),
        2,
    );
    assert!(error.contains("--event"), "{error}");
    let error = fails(
        hookline(&url, ADMIN_KEY, &["webhooks", "update", "wh_1"]),
        2,
    );
    assert!(error.contains("required"), "{error}");
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &[
                "webhooks",
                "create",
                "--endpoint",
                "u",
                "-e",
                "a",
                "--metadata",
                "[1]",
            ],
        ),
        2,
    );
    assert!(error.contains("must be a JSON object"), "{error}");
    let error = fails(hookline("not a url", ADMIN_KEY, &["status"]), 2);
    assert!(error.contains("--url 'not a url' is not a URL"), "{error}");
    let error = fails(hookline_with(&url, "", &["status"], &[], None), 2);
    assert!(
        error.contains("no API key: pass --key, set HOOKLINE_KEY"),
        "{error}"
    );
    let error = fails(hookline(&url, ADMIN_KEY, &["logs", "--status", "lost"]), 2);
    assert!(
        error.contains("possible values: pending, retrying, delivered, failed"),
        "{error}"
    );
    let error = fails(hookline(&url, ADMIN_KEY, &["serve", "--port", "1"]), 2);
    assert!(error.contains("--port"), "{error}");

    // A payload file that is not JSON: exit 4.
    let payload = dir.with_extension("payload.json");
    std::fs::write(&payload, "{oops").unwrap();
    let error = fails(
        hookline(
            &url,
            ADMIN_KEY,
            &[
                "events",
                "publish",
                "--account",
                "acct_x",
                "--type",
                "patient.created",
                "--payload-file",
                payload.to_str().unwrap(),
            ],
        ),
        4,
    );
    assert!(error.contains("payload.json: not JSON"), "{error}");

    // A profile supplies the URL and key; flags and the environment win over it.
    let config = dir.with_extension("config.toml");
    std::fs::write(
        &config,
        format!("default_profile = \"dev\"\n[profiles.dev]\nurl = \"{url}\"\nkey = \"{ADMIN_KEY}\"\n[profiles.off]\nurl = \"{closed_url}\"\nkey = \"{ADMIN_KEY}\"\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let listed = ok(base_command(&[("HOOKLINE_CONFIG", config)])
        .args(["accounts", "list"])
        .output()
        .unwrap());
    assert!(listed.starts_with("ID"), "{listed}");
    fails(
        base_command(&[])
            .args(["--config", config, "--profile", "off", "accounts", "list"])
            .output()
            .unwrap(),
        3,
    );
    ok(base_command(&[("HOOKLINE_URL", &url)])
        .args(["--config", config, "--profile", "off", "accounts", "list"])
        .output()
        .unwrap());
    let error = fails(
        base_command(&[])
            .args(["--config", config, "--profile", "prod", "status"])
            .output()
            .unwrap(),
        2,
    );
    assert!(
        error.contains("no profile 'prod'") && error.contains("dev, off"),
        "{error}"
    );
    let broken = dir.with_extension("broken.toml");
    std::fs::write(&broken, "profiles = 3").unwrap();
    let error = fails(
        base_command(&[])
            .args(["--config", broken.to_str().unwrap(), "status"])
            .output()
            .unwrap(),
        4,
    );
    assert!(error.contains("broken.toml"), "{error}");

    let script = ok(base_command(&[])
        .args(["completions", "bash"])
        .output()
        .unwrap());
    assert!(
        script.contains("webhooks") && script.contains("--follow"),
        "completions cover subcommands"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_prints_new_deliveries_as_they_happen() {
    let dir = temp_dir("cli-follow");
    let server = Server::start(&dir);
    let url = server.base.clone();
    let (account, key) = create_account(&server, "Follow Clinic");
    let (receiver_url, _received) = receiver().await;
    ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "create",
            "--endpoint",
            &receiver_url,
            "-e",
            "patient.created",
        ],
    ));

    let mut follower = base_command(&[("HOOKLINE_URL", &url), ("HOOKLINE_KEY", &key)])
        .args(["logs", "--follow", "--interval", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap()
            .starts_with("ID")
    );
    ok(hookline(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "-t",
            "patient.created",
            "--payload",
            "{}",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let delivered = line.contains(" delivered ");
            seen.push(line);
            if delivered {
                break;
            }
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let last = seen.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("dlv_") && last.contains(" delivered "),
        "{seen:?}"
    );
    server.stop();
}

/// `hookline listen` on a free port; returns the child and its URL.
fn start_listen(
    args: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = base_command(&[])
        .args(["listen", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    (child, url, rx)
}

/// Lines printed until one contains `until` (inclusive).
fn lines_until(rx: &std::sync::mpsc::Receiver<String>, until: &str) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        let done = line.contains(until);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("never printed '{until}': {lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_prints_deliveries_checks_signatures_and_answers_pings() {
    let dir = temp_dir("cli-listen");
    let server = Server::start(&dir);
    let url = server.base.clone();
    let (account, key) = create_account(&server, "Listen Clinic");
    let printed = ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "create",
            "--endpoint",
            "http://127.0.0.1:9/hook",
            "-e",
            "patient.created",
            "--token",
            "tok-secret-value",
        ],
    ));
    let webhook = field(&printed, "id");
    let secret = ok(hookline(&url, &key, &["webhooks", "secret", &webhook]));
    let secret = secret.trim();

    // The right secret: valid.
    let (mut right, right_url, right_out) = start_listen(&["--secret", secret]);
    ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "update",
            &webhook,
            "--endpoint",
            &format!("{right_url}hook"),
        ],
    ));
    let pong = ok(hookline(&url, &key, &["webhooks", "ping", &webhook]));
    assert!(
        pong.starts_with("Pong: the endpoint answered 200"),
        "{pong}"
    );
    let ping = lines_until(&right_out, "answered 200 with the pong").join("\n");
    assert!(ping.contains("\"ping\""), "{ping}");
    ok(hookline(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "-t",
            "patient.created",
            "--payload",
            r#"{"patientId":7}"#,
        ],
    ));
    let printed = lines_until(&right_out, "answered 200").join("\n");
    assert!(printed.contains("POST /hook"), "{printed}");
    assert!(printed.contains("webhook-signature: v1,"), "{printed}");
    assert!(
        printed.contains("  \"payload\": {\n    \"patientId\": 7\n  }"),
        "pretty JSON: {printed}"
    );
    assert!(printed.contains("signature: valid"), "{printed}");
    assert!(
        !printed.contains("tok-secret-value"),
        "the token is hidden: {printed}"
    );
    assert!(
        printed.contains("x-webhook-token: (hidden, 16 characters)"),
        "{printed}"
    );
    let _ = right.kill();
    let _ = right.wait();

    // Another secret: invalid, and a chosen failure status that the log records.
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (mut other, other_url, other_out) = start_listen(&["--secret", wrong, "--status", "503"]);
    ok(hookline(
        &url,
        &key,
        &[
            "webhooks",
            "update",
            &webhook,
            "--endpoint",
            &format!("{other_url}hook"),
        ],
    ));
    ok(hookline(
        &url,
        ADMIN_KEY,
        &[
            "events",
            "publish",
            "--account",
            &account,
            "-t",
            "patient.created",
            "--payload",
            "{}",
        ],
    ));
    let printed = lines_until(&other_out, "answered 503").join("\n");
    assert!(
        printed.contains("signature: INVALID (none of the 1 signature(s) matches this secret)"),
        "{printed}"
    );
    let logs = wait_for_printed(&url, &key, &["logs", "--status", "retrying"], "503");
    assert!(logs.contains("retrying"), "{logs}");
    let _ = other.kill();
    let _ = other.wait();

    let error = fails(
        base_command(&[])
            .args(["listen", "--secret", "whsec_short"])
            .output()
            .unwrap(),
        2,
    );
    assert!(error.contains("must be 'whsec_'"), "{error}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_takes_its_address_and_data_dir_from_the_environment() {
    let dir = temp_dir("cli-serve-env");
    let mut child = base_command(&[
        ("HOOKLINE_ADDR", "127.0.0.1:0"),
        ("HOOKLINE_DATA_DIR", dir.to_str().unwrap()),
        ("HOOKLINE_ADMIN_KEY", ADMIN_KEY),
        ("RUST_LOG", "warn"),
    ])
    .arg("serve")
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(
        first.ends_with(&format!("data in {})", dir.display())),
        "{first}"
    );
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let printed = ok(hookline(&url, ADMIN_KEY, &["accounts", "list"]));
    assert!(printed.contains("0 accounts shown, 0 in all"), "{printed}");
    assert!(
        dir.join("hookline.sqlite3").exists(),
        "the store is under the data directory"
    );
    let _ = child.kill();
    let _ = child.wait();
}
