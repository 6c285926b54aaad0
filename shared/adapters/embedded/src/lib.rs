//! Hookline's embedded adapters for the one local process: an in-process queue with its
//! delivery workers, an in-process retry scheduler, and a cache in front of the store for the
//! hot path (this process is the store's only writer). With the `dynoxide` feature, also the
//! dynoxide DynamoDB called in-process through the SDK: a test backend of the DynamoDB
//! adapter (local mode's store is `hookline-sqlite`).

pub mod cached_store;
#[cfg(feature = "dynoxide")]
pub mod dynamo;
pub mod queue;
pub mod scheduler;

pub use cached_store::CachedStore;
#[cfg(feature = "dynoxide")]
pub use dynamo::EmbeddedDynamo;
pub use queue::{InProcessQueue, run_delivery_workers};
pub use scheduler::InProcessScheduler;
