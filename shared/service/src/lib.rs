//! Hookline's use cases, written against small ports (store, queue, retry scheduler, clock,
//! HTTP sender) so the same code runs on Lambda (AWS adapters) and locally (embedded adapters).

pub mod accounts;
pub mod config;
#[cfg(feature = "contract")]
pub mod contract;
pub mod deliver;
pub mod error;
pub mod event_types;
mod health;
pub mod logs;
pub mod operational;
pub mod ping;
pub mod ports;
pub mod publish;
pub mod rate_limit;
mod recorder;
pub mod replay;
pub mod retries;
pub mod sealed_store;
pub mod sweep;
pub mod telemetry;
pub mod test_events;
pub mod webhooks;

pub use config::{Config, FanOutQueue, Mode};
pub use deliver::DeliverOutcome;
pub use error::{ServiceError, ServiceResult};
pub use ports::{
    AccountStore, Clock, DeliveryStore, HttpSender, PortError, Queue, RetryScheduler, Store,
    SweepStore, SystemClock, WebhookStore,
};

use std::sync::Arc;

/// The adapters a service runs on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub scheduler: Arc<dyn RetryScheduler>,
    pub clock: Arc<dyn Clock>,
    pub sender: Arc<dyn HttpSender>,
}

/// Every use case, over one set of ports and one configuration. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    ports: Ports,
    config: Arc<Config>,
    recorder: Arc<recorder::AttemptRecorder>,
    health_views: Arc<health::HealthViews>,
    /// Spaces the deliveries of rate-limited webhooks; in memory unless
    /// [`Service::with_rate_limiter`] gives one that all processes share.
    rate_limiter: Arc<dyn ports::RateLimiter>,
}

impl Service {
    pub fn new(ports: Ports, config: Config) -> Self {
        Self {
            recorder: Arc::new(recorder::AttemptRecorder::new(ports.store.clone())),
            ports,
            config: Arc::new(config),
            health_views: Arc::default(),
            rate_limiter: Arc::new(rate_limit::InProcessRateLimiter::default()),
        }
    }

    /// The limiter that spaces deliveries of rate-limited webhooks. Where several processes
    /// deliver (Lambda), one they all share; the default, in memory, is right only where one
    /// process sends every delivery (`hookline serve`).
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn ports::RateLimiter>) -> Self {
        self.rate_limiter = limiter;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }
}
