//! dynoxide-rs on SQLite under the data directory, served over HTTP on 127.0.0.1 from a
//! thread of its own, with a periodic TTL sweep.

use std::path::Path;
use std::time::Duration;

pub struct EmbeddedDynamo {
    endpoint: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often expired items (delivery logs past retention, kept for days) are deleted. A sweep
/// reads the whole table, 25 rows per hold of the store's lock, so while it runs every other
/// request waits longer (docs/BENCHMARKS.md): hourly, the first a few minutes after start.
const TTL_SWEEP_EVERY: Duration = Duration::from_secs(3600);
const FIRST_TTL_SWEEP_AFTER: Duration = Duration::from_secs(300);

impl EmbeddedDynamo {
    /// Opens (or creates) `<data_dir>/hookline.db` and serves it on an ephemeral loopback port.
    pub fn start(data_dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let path = data_dir.join("hookline.db");
        let db = dynoxide::Database::new(&path.to_string_lossy())
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        // synchronous=NORMAL (on WAL): a commit is durable once it is in the WAL, in the OS's
        // cache, so it survives the process dying (SIGKILL), though not a power cut. The
        // default (FULL) makes every write wait for an fsync, which caps local throughput.
        db.disable_bulk_loading()
            .map_err(|e| format!("configuring {}: {e}", path.display()))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("binding the store: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let endpoint = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hookline-store".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the store's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("the store's listener");
                    let sweeper = db.clone();
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval_at(
                            tokio::time::Instant::now() + FIRST_TTL_SWEEP_AFTER,
                            TTL_SWEEP_EVERY,
                        );
                        loop {
                            every.tick().await;
                            let db = sweeper.clone();
                            match tokio::task::spawn_blocking(move || db.sweep_ttl()).await {
                                Ok(Ok(deleted)) if deleted > 0 => {
                                    tracing::info!(deleted, "expired items removed")
                                }
                                Ok(Err(error)) => tracing::warn!(%error, "TTL sweep failed"),
                                _ => {}
                            }
                        }
                    });
                    let stopped = async move {
                        let _ = stop.await;
                    };
                    if let Err(error) =
                        dynoxide::server::serve_with_shutdown(listener, db, stopped).await
                    {
                        tracing::error!(%error, "the embedded store stopped");
                    }
                });
            })
            .map_err(|e| format!("starting the store thread: {e}"))?;
        Ok(Self {
            endpoint,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`: where the DynamoDB client points.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
