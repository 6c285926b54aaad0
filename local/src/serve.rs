//! `hookline serve`: the API, the delivery workers and the retry sweep in one process, on the
//! embedded store under a data directory.

use crate::{listen, main_key};
use axum::http::header;
use hookline_embedded::{CachedStore, InProcessQueue, InProcessScheduler, run_delivery_workers};
use hookline_http::ReqwestSender;
use hookline_service::config::PortalKey;
use hookline_service::{Config, Mode, Ports, Service, SystemClock, telemetry};
use hookline_sqlite::SqliteStore;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Deliveries in flight at once.
const WORKERS: usize = 256;
/// Log lines formatted but not written yet, at most.
const LOG_LINES_WAITING: usize = 4096;
/// How often the local sweep looks for overdue work.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKLINE_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Directory of the local store (created if missing; keep it private and backed up).
    #[arg(long, env = "HOOKLINE_DATA_DIR", default_value = ".hookline")]
    data_dir: PathBuf,
}

/// Runs until SIGINT or SIGTERM; logs go to stderr as JSON lines, filtered by `RUST_LOG`.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    // Lines are written by a thread of their own, as many to a `write` as are waiting:
    // formatting stays with the caller, the write leaves it (a `write` per line, three per
    // delivery, was 4 % of the server's CPU). Never lossy: past `LOG_LINES_WAITING` callers
    // wait for the writer rather than lines being lost, or piling up in memory (the default,
    // 128,000, can hold tens of MB). A SIGKILL loses what is not written yet; returning from
    // here writes what is waiting (docs/DECISIONS.md, "Log lines written off the request
    // path").
    let (writer, _written_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_LINES_WAITING)
        .thread_name("hookline-log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    tracing_subscriber::fmt()
        // JSON lines; the current span (the request's id) and not the list of spans, which
        // repeated it on every line.
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(crate::log_lines::JsonLines)
        .with_writer(writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    serve(args).await
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = Config::from_env(Mode::Local)?;
    let limits = listen::Limits::from_env()?;
    // Files and directories this process creates (the store, its WAL, the marker) are its
    // user's alone: the store holds every secret.
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }

    let store = SqliteStore::open(&args.data_dir, config.log_retention_days)?;
    // Secrets are sealed at rest; the cache (outermost) keeps them opened in memory.
    let sealed = main_key::sealed_store(Arc::new(store.clone()), &store, &args.data_dir).await?;
    // Portal links stay valid across restarts because their key comes from the main key.
    config.portal_key = Some(PortalKey(sealed.ring().derive_key("portal links")));

    let metrics = install_metrics()?;
    let (queue, jobs) = InProcessQueue::new(config.max_backlog);
    let endpoint_concurrency = config.endpoint_concurrency;
    let service = Service::new(
        Ports {
            // This process is the store's only writer, so the cache is always exact.
            store: Arc::new(CachedStore::new(sealed)),
            queue: Arc::new(queue.clone()),
            scheduler: Arc::new(InProcessScheduler::new(queue.clone())),
            clock: Arc::new(SystemClock),
            sender: Arc::new(ReqwestSender::from_config(&config)?),
        },
        config,
    );
    issue_admin_key(&service, &args.data_dir).await?;
    service
        .ensure_operational_webhook()
        .await
        .map_err(|e| format!("setting up the operational webhook: {e}"))?;

    let waiting = queue.clone();
    tokio::spawn(run_delivery_workers(
        service.clone(),
        queue,
        jobs,
        WORKERS,
        endpoint_concurrency,
    ));
    // Resumed while the API serves: a large backlog delays neither start-up nor new work, and
    // the queue absorbs what the first sweeps find still queued.
    let sweeper = service.clone();
    tokio::spawn(async move {
        match sweeper.resume_after_restart().await {
            Ok(resumed) if resumed.enqueued + resumed.scheduled + resumed.fan_outs > 0 => {
                tracing::info!(
                    enqueued = resumed.enqueued,
                    scheduled = resumed.scheduled,
                    fan_outs = resumed.fan_outs,
                    "resumed pending work"
                )
            }
            Ok(_) => {}
            // The sweep below finds it all the same, a lease later.
            Err(error) => tracing::warn!(%error, "resuming pending work failed"),
        }
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            if let Err(error) = sweeper.sweep().await {
                tracing::warn!(%error, "sweep failed");
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("binding {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "Hookline is running at http://{addr} (API under http://{addr}/api/v3, data in {})",
        args.data_dir.display()
    );
    let router = hookline_api::router(service).route(
        "/metrics",
        axum::routing::get(move || {
            metrics::gauge!(telemetry::DELIVERIES_WAITING).set(waiting.backlog() as f64);
            let text = metrics.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    );
    listen::serve(listener, router, limits, shutdown_signal()).await;
    Ok(())
}

/// Seconds: attempts take milliseconds to the 15 s timeout; store writes, well under a second.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

/// The Prometheus recorder behind `GET /metrics`, for everything the service measures.
fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("metrics: {e}"))?;
    telemetry::describe();
    // Histograms are kept in shards that upkeep folds; without it their memory grows.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Without `HOOKLINE_ADMIN_KEY`, the first start generates an admin key, stores its hash and
/// prints it once; a marker file (holding no secret) remembers that it was issued. With it, the
/// environment's key replaces a generated one, which is revoked (and the marker removed).
async fn issue_admin_key(service: &Service, data_dir: &std::path::Path) -> Result<(), String> {
    let marker = data_dir.join("admin-key-issued");
    if service.config().admin_key_hash.is_some() {
        if marker.exists() {
            let revoked = service
                .revoke_stored_admin_keys()
                .await
                .map_err(|e| format!("revoking the generated admin key: {e}"))?;
            std::fs::remove_file(&marker)
                .map_err(|e| format!("removing {}: {e}", marker.display()))?;
            println!(
                "Admin key: HOOKLINE_ADMIN_KEY. The key generated at first start no longer works."
            );
            tracing::info!(revoked, "generated admin key revoked");
        }
        return Ok(());
    }
    if marker.exists() {
        println!("Admin key: the one printed at first start (or set HOOKLINE_ADMIN_KEY).");
        return Ok(());
    }
    let key = hookline_model::keys::generate_api_key();
    service
        .register_admin_key(&key)
        .await
        .map_err(|e| e.to_string())?;
    std::fs::write(
        &marker,
        "The admin key was printed once, at first start. Only its hash is stored.\n",
    )
    .map_err(|e| format!("writing {}: {e}", marker.display()))?;
    println!("Admin key (shown once, keep it): {key}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
