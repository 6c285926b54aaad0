//! Hookline's benchmark. See `README.md` ("Benchmarks") and `docs/BENCHMARKS.md`.
//!
//! hookline-bench [serve] [aws] [lambda] [--quick] [--out FILE.json]
//!
//! - serve: `target/release/hookline serve` with a receiver on 127.0.0.1: the load generator
//!   and receiver alone first, then one webhook x 20,000 events at publish concurrency 32 and
//!   128, a paced run at half the measured rate, 100 webhooks x 1,000 events, and one event
//!   to 10,000 webhooks.
//! - aws: AWS requests per delivery on the Lambda path against moto
//!   (`HOOKLINE_BENCH_MOTO_ENDPOINT`), and their cost.
//! - lambda: start-up of `target/release/{api,deliver,retry}` and their sizes.

mod aws;
mod billing;
mod lambda_init;
mod receiver;
mod report;
mod serve;
mod stats;

use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Serialize)]
pub struct Results {
    pub machine: stats::Machine,
    pub ceiling: Vec<serve::Ceiling>,
    pub serve: Vec<serve::RunResult>,
    pub fan_out_burst: Option<serve::FanOutBurst>,
    pub aws: Vec<aws::CostRun>,
    pub lambda: Vec<lambda_init::FunctionStart>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() {
    let mut parts = Vec::new();
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    // Only the serve runs whose name contains this (and no ceiling or burst, unless named).
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" | "aws" | "lambda" => parts.push(arg),
            "--quick" => quick = true,
            "--out" => out = args.next().map(PathBuf::from),
            "--only" => only = args.next(),
            _ => {
                eprintln!(
                    "usage: hookline-bench [serve] [aws] [lambda] [--quick] [--out FILE.json]"
                );
                std::process::exit(2);
            }
        }
    }
    if parts.is_empty() {
        parts = vec!["serve".into(), "aws".into(), "lambda".into()];
    }
    // --quick: a tenth of the work, to check the bench itself.
    let scale = |n: usize| if quick { (n / 10).max(1) } else { n };
    let release = std::env::var_os("HOOKLINE_BENCH_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release"));
    let mut results = Results {
        machine: stats::Machine::read(),
        ceiling: Vec::new(),
        serve: Vec::new(),
        fan_out_burst: None,
        aws: Vec::new(),
        lambda: Vec::new(),
    };

    if parts.iter().any(|p| p == "serve") {
        let binary = release.join("hookline");
        let receiver = receiver::Receiver::start();
        let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
        if wanted("ceiling") {
            for concurrency in [32, 128] {
                results
                    .ceiling
                    .push(serve::ceiling(&receiver, scale(100_000), concurrency).await);
            }
        }
        let events = scale(20_000);
        for concurrency in [32, 128] {
            let name = format!("1 webhook, concurrency {concurrency}");
            if wanted(&name) {
                results.serve.push(
                    serve::run(&binary, &receiver, &name, 1, events, concurrency, None).await,
                );
            }
        }
        let name = "1 webhook, paced at half";
        if wanted(name) {
            // Half the rate measured at concurrency 32 (300/s when that run was left out).
            let rate = results
                .serve
                .first()
                .map_or(300.0, |r| (r.deliveries_per_sec / 2.0).round().max(1.0));
            results
                .serve
                .push(serve::run(&binary, &receiver, name, 1, events, 256, Some(rate)).await);
        }
        let name = "fan-out 100 webhooks";
        if wanted(name) {
            results
                .serve
                .push(serve::run(&binary, &receiver, name, 100, scale(1_000), 32, None).await);
        }
        if wanted("fan-out burst") {
            results.fan_out_burst =
                Some(serve::fan_out_burst(&binary, &receiver, scale(10_000)).await);
        }
    }
    if parts.iter().any(|p| p == "aws") {
        let moto = std::env::var("HOOKLINE_BENCH_MOTO_ENDPOINT").unwrap_or_else(|_| {
            eprintln!(
                "HOOKLINE_BENCH_MOTO_ENDPOINT is not set: run infra/bench.sh, which starts moto"
            );
            std::process::exit(2);
        });
        let events = scale(200);
        let scenarios = [
            aws::Scenario {
                name: "1 webhook, published one by one",
                webhooks: 1,
                events,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::Accepts,
                rate_limit: None,
                ordered: false,
            },
            aws::Scenario {
                name: "1 webhook, batch publish (100 a request)",
                webhooks: 1,
                events,
                publish: aws::Publish::Batch,
                receiver: aws::Receiver::Accepts,
                rate_limit: None,
                ordered: false,
            },
            aws::Scenario {
                name: "10 webhooks",
                webhooks: 10,
                events: events / 4,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::Accepts,
                rate_limit: None,
                ordered: false,
            },
            aws::Scenario {
                name: "1 webhook, every first attempt fails",
                webhooks: 1,
                events: events / 2,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::FailsFirstAttempt,
                rate_limit: None,
                ordered: false,
            },
            aws::Scenario {
                name: "1 webhook failing its whole retry schedule",
                webhooks: 1,
                events: events / 4,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::FailsEverything,
                rate_limit: None,
                ordered: false,
            },
            // Issue 15 item 5: a backlog above the rate waits its turn, in the invocation or
            // back on SQS with a delay.
            aws::Scenario {
                name: "1 webhook limited to 20/s, a backlog",
                webhooks: 1,
                events: events / 2,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::Accepts,
                rate_limit: Some(20),
                ordered: false,
            },
            // Issue 15 item 4: one delivery at a time, in publish order, through the FIFO
            // queue; a retry holds the rest of the webhook's deliveries back.
            aws::Scenario {
                name: "1 webhook, ordered",
                webhooks: 1,
                events: events / 2,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::Accepts,
                rate_limit: None,
                ordered: true,
            },
            aws::Scenario {
                name: "1 webhook, ordered, every first attempt fails",
                webhooks: 1,
                events: events / 8,
                publish: aws::Publish::OneByOne,
                receiver: aws::Receiver::FailsFirstAttempt,
                rate_limit: None,
                ordered: true,
            },
        ];
        for scenario in scenarios {
            if only.as_deref().is_none_or(|o| scenario.name.contains(o)) {
                results.aws.push(aws::run(&moto, scenario).await);
            }
        }
    }
    if parts.iter().any(|p| p == "lambda") {
        let health = std::fs::read_to_string(root().join("infra/events/apigw-health.json"))
            .expect("infra/events/apigw-health.json");
        results.lambda = lambda_init::measure(&release, &health, scale(20).max(3)).await;
    }

    let markdown = report::markdown(&results);
    println!("{markdown}");
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        std::fs::write(path.with_extension("md"), &markdown).unwrap();
        eprintln!("results written to {} (and .md)", path.display());
    }
}
