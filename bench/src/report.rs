//! The results as one line per run (while it runs) and as a Markdown report.

use crate::Results;
use crate::aws::{CostRun, LOADS, Load, PRICES, Publish, Receiver};
use crate::serve::RunResult;
use std::fmt::Write;

pub fn run_line(r: &RunResult) -> String {
    format!(
        "{}: {} deliveries/s ({} publishes/s), latency from publish p50 {} / p90 {} / p99 {} / max {} ms, lost {}, duplicates {}, peak RSS {} MB, server CPU {} us a delivery (load generator and receiver {} us)",
        r.name,
        r.deliveries_per_sec,
        r.publishes_per_sec,
        r.latency_from_publish.p50_ms,
        r.latency_from_publish.p90_ms,
        r.latency_from_publish.p99_ms,
        r.latency_from_publish.max_ms,
        r.lost,
        r.duplicates,
        r.peak_rss_mb,
        r.server_cpu_us_per_delivery,
        r.harness_cpu_us_per_delivery
    )
}

pub fn cost_line(r: &CostRun) -> String {
    let p = &r.per_delivery;
    format!(
        "{}: per delivery DynamoDB {:.3} write req, {:.2} table + {:.2} index WRU, {:.3} read req / {:.3} RRU; SQS {:.3}; Scheduler {:.3} req / {:.3} invocations; Lambda {:.3} invocations; ${:.4} per million deliveries (+ API Gateway ${:.4})",
        r.scenario.name,
        p.dynamodb_write_requests,
        p.dynamodb_table_wru,
        p.dynamodb_index_wru,
        p.dynamodb_read_requests,
        p.dynamodb_rru,
        p.sqs_requests,
        p.scheduler_requests,
        p.scheduler_invocations,
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
            "| run | webhooks x events | publish | deliveries/s | publishes/s | publish->receive p50 / p90 / p99 / max ms | ack->receive p50 / p99 ms | lost | duplicates | peak RSS MB | server CPU us a delivery | load generator and receiver CPU us a delivery |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &results.serve {
            let publish = match r.paced_rate {
                Some(rate) => format!("paced {rate}/s"),
                None => format!("concurrency {}", r.publish_concurrency),
            };
            let _ = writeln!(
                out,
                "| {} | {} x {} | {} | {} | {} | {} / {} / {} / {} | {} / {} | {} | {} | {} | {} | {} |",
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
                r.peak_rss_mb,
                r.server_cpu_us_per_delivery,
                r.harness_cpu_us_per_delivery
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
        aws_markdown(&mut out, &results.aws);
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

/// Half of DynamoDB's per-partition limit of 1,000 write units a second (DESIGN.md 8).
const KEY_BUDGET: f64 = 500.0;

fn aws_markdown(out: &mut String, runs: &[CostRun]) {
    let p = &PRICES;
    let _ = writeln!(
        out,
        "Cost per delivery on the Lambda path (handlers in-process on moto, every request billed by `bench/src/billing.rs` from the items themselves: the larger of an item's size before and after per started KB, twice in a transaction, plus every index write at its entry's size; reads per started 4 KB, halved when eventually consistent; SQS per started 64 KB). Receivers answer with a 4 KiB body. us-east-1 list prices: DynamoDB on-demand ${}/M WRU and ${}/M RRU, SQS ${}/M requests, Scheduler ${}/M invocations, Lambda arm64 ${}/M requests and ${}/GB-s at {} MB with assumed billed durations of {} ms per api call, {} ms per deliver batch and {} ms more per job in it (its reads, signing, send and record at 256 MB's share of a CPU), {} ms per retry and {} ms per stream batch; API Gateway HTTP API ${}/M requests shown apart.\n",
        p.dynamodb_per_million_wru,
        p.dynamodb_per_million_rru,
        p.sqs_per_million_requests,
        p.scheduler_per_million_invocations,
        p.lambda_per_million_requests,
        p.lambda_arm64_per_gb_second,
        p.lambda_memory_mb,
        p.api_ms,
        p.deliver_batch_ms,
        p.deliver_job_ms,
        p.retry_ms,
        p.stream_batch_ms,
        p.api_gateway_http_per_million
    );
    let _ = writeln!(
        out,
        "| scenario | deliveries | DynamoDB write req | table WRU | index WRU | read req | RRU | SQS req | Scheduler req | schedules fired | Lambda inv. | $ DynamoDB | $ SQS | $ Lambda | $ Scheduler | $ total | $ API GW |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in runs {
        let d = &r.per_delivery;
        let c = &r.cost;
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | **{:.4}** | {:.4} |",
            r.scenario.name,
            r.deliveries,
            d.dynamodb_write_requests,
            d.dynamodb_table_wru,
            d.dynamodb_index_wru,
            d.dynamodb_read_requests,
            d.dynamodb_rru,
            d.sqs_requests,
            d.scheduler_requests,
            d.scheduler_invocations,
            d.lambda_invocations,
            c.dynamodb,
            c.sqs,
            c.lambda,
            c.scheduler,
            c.total,
            c.api_gateway
        );
    }
    let _ = writeln!(out, "\nUnits per operation (per delivery):\n");
    for r in runs {
        let d = r.deliveries as f64;
        let ops: Vec<String> = r
            .operations
            .iter()
            .map(|(name, b)| {
                let mut line = format!("{name} {:.3} req", b.requests as f64 / d);
                if b.table_wru + b.index_wru > 0.0 {
                    line += &format!(" / {:.2}+{:.2} WRU", b.table_wru / d, b.index_wru / d);
                }
                if b.rru > 0.0 {
                    line += &format!(" / {:.2} RRU", b.rru / d);
                }
                line
            })
            .collect();
        let _ = writeln!(out, "- {}: {}", r.scenario.name, ops.join("; "));
    }

    let _ = writeln!(
        out,
        "\nPartition-key heat: per table and index, the busiest key shapes (ids and shard numbers replaced by their kind), the write units per delivery that one key of the shape takes (a sharded shape's units spread evenly over its shards, as the hash spreads them at volume), and its share of that table's or index's units. An item key's units all land within about a second of its delivery whatever the load; an account key's grow with the account's rate; a deployment key's with the whole deployment's.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | table or index | key | scope | units per delivery | share | busiest key of the shape, units |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in runs {
        for k in &r.heat {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {:?} | {:.3} | {:.0} % | {:.0} |",
                r.scenario.name,
                k.place,
                k.key,
                k.scope,
                k.units_per_delivery,
                k.share * 100.0,
                k.max_units
            );
        }
    }
    let loads = projected_loads(runs);
    if !loads.is_empty() {
        let _ = writeln!(
            out,
            "\nAt production loads: the busiest partition key's write units per second on the table and on any index (target: at most {KEY_BUDGET}, half of DynamoDB's 1,000 per partition), and the Scheduler and SQS request rates against their default quotas (us-east-1): Scheduler CreateSchedule 5,000/s and invocations 1,000/s ([Scheduler quotas](https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html)); SQS standard queues take a nearly unlimited number of API calls per second and hold at most 120,000 in-flight messages ([SQS quotas](https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html)); Lambda runs at most 1,000 executions at once per region by default ([Lambda quotas](https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)): the concurrency shown is every function's invocations per second times its modeled billed duration above, so a receiver slower than the model's 100 ms raises deliver's share. The failing load is the steady state of a webhook that fails every attempt: every delivery runs its whole retry schedule, so each second adds the first attempts of 10,000 new deliveries and the retries of earlier ones.\n"
        );
        let _ = writeln!(
            out,
            "| load | from scenario | busiest key | scope | WRU/s | within 500 | CreateSchedule/s | Scheduler invocations/s | SQS requests/s | Lambda concurrency |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for (load, r) in loads {
            let busiest = r
                .heat
                .iter()
                .max_by(|a, b| a.units_per_sec(&load).total_cmp(&b.units_per_sec(&load)));
            let Some(k) = busiest else { continue };
            let rate = k.units_per_sec(&load);
            let d = &r.per_delivery;
            let creates = r
                .operations
                .get("Scheduler.CreateSchedule")
                .map_or(0.0, |b| b.requests as f64 / r.deliveries as f64);
            let _ = writeln!(
                out,
                "| {} | {} | {} `{}` | {:?} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                load.name,
                r.scenario.name,
                k.place,
                k.key,
                k.scope,
                rate,
                if rate <= KEY_BUDGET { "yes" } else { "**no**" },
                creates * load.deliveries_per_sec,
                d.scheduler_invocations * load.deliveries_per_sec,
                d.sqs_requests * load.deliveries_per_sec,
                lambda_seconds_per_delivery(r) * load.deliveries_per_sec
            );
        }
    }
    let _ = writeln!(out);
}

/// Lambda execution time per delivery by the model's billed durations, all functions: at a
/// load of n deliveries a second, n times this is the executions running at once.
fn lambda_seconds_per_delivery(r: &CostRun) -> f64 {
    let p = &PRICES;
    let inv = |f: &str| r.invocations.get(f).copied().unwrap_or(0) as f64;
    let ms = inv("api") * p.api_ms
        + inv("deliver") * p.deliver_batch_ms
        + r.deliver_jobs as f64 * p.deliver_job_ms
        + inv("retry") * p.retry_ms
        + inv("stream") * p.stream_batch_ms;
    ms / 1000.0 / r.deliveries as f64
}

/// The loads DESIGN.md section 8 names, each with the scenario that has its shape.
fn projected_loads(runs: &[CostRun]) -> Vec<(Load, &CostRun)> {
    let mut loads = Vec::new();
    if let Some(one) = runs.iter().find(|r| {
        r.scenario.webhooks == 1
            && r.scenario.receiver == Receiver::Accepts
            && r.scenario.publish == Publish::OneByOne
    }) {
        loads.extend(LOADS.iter().map(|l| (*l, one)));
    }
    if let Some(failing) = runs
        .iter()
        .find(|r| r.scenario.receiver == Receiver::FailsEverything)
    {
        loads.push((
            Load {
                name: "one account, 10,000 deliveries/s, its webhook failing every attempt",
                ..LOADS[0]
            },
            failing,
        ));
    }
    loads
}
