//! Metrics on Lambda: what the service measures (`hookline_service::telemetry`), written as
//! CloudWatch embedded metric format lines to stdout, which CloudWatch Logs turns into metrics
//! of the `Hookline` namespace with a `function` dimension. Each function flushes after each
//! invocation: an execution environment may be frozen, or ended, right after it.

use metrics_cloudwatch_embedded::{Builder, Collector};

pub const NAMESPACE: &str = "Hookline";

/// The process's metrics, flushed by [`Metrics::flush`].
#[derive(Clone, Copy)]
pub struct Metrics(&'static Collector);

impl Metrics {
    /// Installs the EMF recorder as the process's `metrics` recorder (once per process).
    pub fn install(function: &'static str) -> Result<Self, String> {
        let collector = Builder::new()
            .cloudwatch_namespace(NAMESPACE)
            .with_dimension("function", function)
            .init()
            .map_err(|e| format!("metrics: {e}"))?;
        hookline_service::telemetry::describe();
        Ok(Self(collector))
    }

    /// Writes what was measured since the last flush, one JSON line per label set.
    pub fn flush_to(&self, out: impl std::io::Write) {
        if let Err(error) = self.0.flush(out) {
            tracing::warn!(%error, "writing metrics failed");
        }
    }

    /// `flush_to` stdout, where Lambda's log lines go.
    pub fn flush(&self) {
        self.flush_to(std::io::stdout().lock());
    }
}
