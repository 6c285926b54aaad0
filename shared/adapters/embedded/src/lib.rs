//! Hookline's embedded adapters for the one local process: the dynoxide DynamoDB, called
//! in-process through the SDK (so local mode runs the very same DynamoDB adapter as Lambda,
//! with no network listener for the store), an in-process
//! queue with its delivery workers, an in-process retry scheduler, and a cache in front of the
//! store for the hot path (this process is the store's only writer).

pub mod cached_store;
pub mod dynamo;
pub mod queue;
pub mod scheduler;

pub use cached_store::CachedStore;
pub use dynamo::EmbeddedDynamo;
pub use queue::{InProcessQueue, run_delivery_workers};
pub use scheduler::InProcessScheduler;
