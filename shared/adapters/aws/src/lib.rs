//! Hookline's AWS adapters: the DynamoDB store, the SQS queue and the EventBridge Scheduler
//! retry scheduler. Local mode runs the same DynamoDB store against the embedded dynoxide.

pub mod dynamodb;
pub mod env;
pub mod scheduler;
pub mod sqs;
pub mod table;

pub use dynamodb::DynamoStore;
pub use scheduler::EventBridgeScheduler;
pub use sqs::SqsQueue;
