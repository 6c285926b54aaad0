//! The results as one line per run (while it runs) and as a Markdown report.

use crate::Results;
use crate::aws::{CostRun, PRICES};
use crate::serve::RunResult;
use std::fmt::Write;

pub fn run_line(r: &RunResult) -> String {
    format!(
        "{}: {} deliveries/s ({} publishes/s), latency from publish p50 {} / p90 {} / p99 {} / max {} ms, lost {}, duplicates {}, peak RSS {} MB",
        r.name,
        r.deliveries_per_sec,
        r.publishes_per_sec,
        r.latency_from_publish.p50_ms,
        r.latency_from_publish.p90_ms,
        r.latency_from_publish.p99_ms,
        r.latency_from_publish.max_ms,
        r.lost,
        r.duplicates,
        r.peak_rss_mb
    )
}

pub fn cost_line(r: &CostRun) -> String {
    let p = &r.per_delivery;
    format!(
        "{}: per delivery DynamoDB {:.3} write req / {:.3} WRU, {:.3} read req / {:.3} RRU; SQS {:.3}; Scheduler {:.3}; Lambda {:.3} invocations; ${:.4} per million deliveries (+ API Gateway ${:.4})",
        r.name,
        p.dynamodb_write_requests,
        p.dynamodb_wru,
        p.dynamodb_read_requests,
        p.dynamodb_rru,
        p.sqs_requests,
        p.scheduler_requests,
        p.lambda_invocations,
        r.cost.total,
        r.cost.api_gateway
    )
}

pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "Measured {} on {} ({} cores, {} GiB, Linux {}), commit {}.\n",
        m.date, m.cpu, m.cores, m.memory_gib, m.kernel, m.git_commit
    );
    if !results.ceiling.is_empty() {
        let _ = writeln!(out, "Load generator and receiver alone (no Hookline):\n");
        let _ = writeln!(
            out,
            "| concurrency | requests | requests/s | p50 ms | p99 ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for c in &results.ceiling {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.concurrency, c.requests, c.requests_per_sec, c.latency.p50_ms, c.latency.p99_ms
            );
        }
        let _ = writeln!(out);
    }
    if !results.serve.is_empty() {
        let _ = writeln!(
            out,
            "`hookline serve` (release build), receiver on 127.0.0.1:\n"
        );
        let _ = writeln!(
            out,
            "| run | webhooks x events | publish | deliveries/s | publishes/s | publish->receive p50 / p90 / p99 / max ms | ack->receive p50 / p99 ms | lost | duplicates | peak RSS MB |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &results.serve {
            let publish = match r.paced_rate {
                Some(rate) => format!("paced {rate}/s"),
                None => format!("concurrency {}", r.publish_concurrency),
            };
            let _ = writeln!(
                out,
                "| {} | {} x {} | {} | {} | {} | {} / {} / {} / {} | {} / {} | {} | {} | {} |",
                r.name,
                r.webhooks,
                r.events,
                publish,
                r.deliveries_per_sec,
                r.publishes_per_sec,
                r.latency_from_publish.p50_ms,
                r.latency_from_publish.p90_ms,
                r.latency_from_publish.p99_ms,
                r.latency_from_publish.max_ms,
                r.latency_from_ack.p50_ms,
                r.latency_from_ack.p99_ms,
                r.lost,
                r.duplicates,
                r.peak_rss_mb
            );
        }
        let _ = writeln!(out);
    }
    if let Some(b) = &results.fan_out_burst {
        let _ = writeln!(
            out,
            "One event to {} webhooks: last delivery {} s after the publish request (answered in {} ms); {} delivered, {} lost, {} duplicates; peak RSS {} MB ({} MB before the publish).\n",
            b.webhooks,
            b.seconds_to_last,
            b.publish_ack_ms,
            b.delivered,
            b.lost,
            b.duplicates,
            b.peak_rss_mb,
            b.rss_before_publish_mb
        );
    }
    if !results.aws.is_empty() {
        let p = &PRICES;
        let _ = writeln!(
            out,
            "AWS requests per delivery on the Lambda path (handlers in-process on moto, counted by an SDK interceptor). Cost per million deliveries at us-east-1 list prices: DynamoDB on-demand ${}/M WRU and ${}/M RRU (transactional writes 2 WRU per item, items under 1 KB), SQS ${}/M requests, Scheduler ${}/M invocations, Lambda arm64 ${}/M requests and ${}/GB-s at {} MB with billed durations of {} ms per publish, {} ms per deliver batch and {} ms per retry; API Gateway HTTP API ${}/M requests shown apart.\n",
            p.dynamodb_per_million_wru,
            p.dynamodb_per_million_rru,
            p.sqs_per_million_requests,
            p.scheduler_per_million_invocations,
            p.lambda_per_million_requests,
            p.lambda_arm64_per_gb_second,
            p.lambda_memory_mb,
            p.api_ms,
            p.deliver_batch_ms,
            p.retry_ms,
            p.api_gateway_http_per_million
        );
        let _ = writeln!(
            out,
            "| run | DynamoDB write req | WRU | read req | RRU | SQS req | Scheduler req | Lambda inv. | $ DynamoDB | $ SQS | $ Lambda | $ Scheduler | $ total | $ API GW |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &results.aws {
            let d = &r.per_delivery;
            let c = &r.cost;
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
                r.name,
                d.dynamodb_write_requests,
                d.dynamodb_wru,
                d.dynamodb_read_requests,
                d.dynamodb_rru,
                d.sqs_requests,
                d.scheduler_requests,
                d.lambda_invocations,
                c.dynamodb,
                c.sqs,
                c.lambda,
                c.scheduler,
                c.total,
                c.api_gateway
            );
        }
        let _ = writeln!(out);
        for r in &results.aws {
            let ops: Vec<String> = r
                .operations
                .iter()
                .map(|(name, t)| format!("{name} {}", t.requests))
                .collect();
            let _ = writeln!(out, "- {}: {}", r.name, ops.join(", "));
        }
        let _ = writeln!(out);
    }
    if !results.lambda.is_empty() {
        let _ = writeln!(
            out,
            "Lambda binaries (host build, `--release`: LTO, stripped), started against a fake Runtime API on 127.0.0.1:\n"
        );
        let _ = writeln!(
            out,
            "| function | stripped size | start to ready p50 / p90 / max ms | first request p50 / max ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for f in &results.lambda {
            let first = f
                .first_request
                .map(|p| format!("{} / {}", p.p50_ms, p.max_ms))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "| {} | {:.1} MB ({} B) | {} / {} / {} | {} |",
                f.function,
                f.binary_bytes as f64 / 1_000_000.0,
                f.binary_bytes,
                f.ready.p50_ms,
                f.ready.p90_ms,
                f.ready.max_ms,
                first
            );
        }
    }
    out
}
