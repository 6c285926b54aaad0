//! What the service measures, through the `metrics` facade: each runtime installs the recorder
//! it exports with (Prometheus text for `hookline serve`); without one, recording does nothing.
//! Labels carry no ids, URLs or keys: only outcomes, operations, routes and status codes.

use crate::deliver::DeliverOutcome;
use std::time::{Duration, Instant};

/// Deliveries by the outcome of their latest attempt (`outcome`: delivered, retrying, failed).
pub const DELIVERIES: &str = "hookline_deliveries_total";
/// Time from sending an attempt to its answer (or failure), in seconds.
pub const ATTEMPT_DURATION: &str = "hookline_attempt_duration_seconds";
/// Deliveries being attempted now, by this process.
pub const DELIVERIES_IN_FLIGHT: &str = "hookline_deliveries_in_flight";
/// Deliveries queued and not yet taken by a worker (set by runtimes with a queue of their own).
pub const DELIVERIES_WAITING: &str = "hookline_deliveries_waiting";
/// Retries scheduled after a failed attempt.
pub const RETRIES_SCHEDULED: &str = "hookline_retries_scheduled_total";
/// Duration of the store's hot writes (`op`: publish, record_attempts), in seconds.
pub const STORE_WRITE_DURATION: &str = "hookline_store_write_duration_seconds";
/// Publish requests (`POST /events`, `POST /events/batch`) by `route` and HTTP `status`.
pub const PUBLISHES: &str = "hookline_publish_requests_total";

/// Counts a delivery in flight until dropped.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn start() -> Self {
        metrics::gauge!(DELIVERIES_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(DELIVERIES_IN_FLIGHT).decrement(1.0);
    }
}

/// One attempt made and recorded; `sent` is its duration when a request went out.
pub(crate) fn attempt_recorded(outcome: DeliverOutcome, sent: Option<Duration>) {
    let outcome = match outcome {
        DeliverOutcome::Delivered => "delivered",
        DeliverOutcome::WillRetry { .. } => {
            metrics::counter!(RETRIES_SCHEDULED).increment(1);
            "retrying"
        }
        DeliverOutcome::Failed => "failed",
        DeliverOutcome::Skipped | DeliverOutcome::NotYetDue { .. } | DeliverOutcome::Deferred => {
            return;
        }
    };
    metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
    if let Some(duration) = sent {
        metrics::histogram!(ATTEMPT_DURATION).record(duration.as_secs_f64());
    }
}

/// Times one store write.
pub(crate) fn store_write(op: &'static str, started: Instant) {
    metrics::histogram!(STORE_WRITE_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
}

/// Registers each metric's help text and unit with the installed recorder.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        DELIVERIES,
        "Deliveries by the outcome of their latest attempt"
    );
    metrics::describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Time from sending an attempt to its answer or failure"
    );
    metrics::describe_gauge!(DELIVERIES_IN_FLIGHT, "Deliveries being attempted now");
    metrics::describe_gauge!(
        DELIVERIES_WAITING,
        "Deliveries queued, not yet taken by a worker"
    );
    metrics::describe_counter!(
        RETRIES_SCHEDULED,
        "Retries scheduled after a failed attempt"
    );
    metrics::describe_histogram!(
        STORE_WRITE_DURATION,
        Unit::Seconds,
        "Duration of the store's hot writes"
    );
    metrics::describe_counter!(PUBLISHES, "Publish requests by route and HTTP status");
}
