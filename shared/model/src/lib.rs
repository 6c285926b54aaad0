//! Hookline's domain: types, validation, the event catalog, the delivery envelope, Standard
//! Webhooks signing and the retry policy. Pure: no I/O, no clock, no AWS.

pub mod catalog;
pub mod delivery;
pub mod envelope;
pub mod error;
pub mod filter;
pub mod ids;
pub mod job;
pub mod keys;
pub mod limits;
pub mod request_options;
pub mod retry;
pub mod samples;
pub mod sealing;
pub mod signing;
pub mod types;
pub mod url_check;

pub use catalog::{BUILT_IN_EVENT_TYPES, Catalog, EventPattern, EventTypeInfo};
pub use delivery::{Attempt, Delivery, DeliveryJob, DeliveryStatus, RetryTrigger, StatusCounts};
pub use envelope::PayloadFormat;
pub use error::ValidationError;
pub use job::{Job, JobKind, JobStatus};
pub use request_options::RequestOptions;
pub use types::{
    Account, ApiKeyRecord, Event, GONE_DISABLED_REASON, Principal, Webhook, WebhookHealth,
};
