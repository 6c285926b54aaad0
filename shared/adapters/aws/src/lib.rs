//! Hookline's AWS adapters: the DynamoDB store, the SQS queue and the EventBridge Scheduler
//! retry scheduler. Local mode runs the same DynamoDB store against the embedded dynoxide.

pub mod emf;
pub mod env;
pub mod scheduler;
pub mod sealing_keys;
pub mod sqs;
pub mod store;
pub mod table;

pub use scheduler::{EventBridgeScheduler, SweepRetries};
pub use sqs::SqsQueue;
pub use store::DynamoStore;
pub use store::rate_limits::DynamoRateLimiter;
