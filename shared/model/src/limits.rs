//! Size limits of DESIGN.md section 4.

/// Largest event payload, as serialised JSON.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest request body the API reads.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;
/// How much of a receiver's response body an attempt keeps.
pub const MAX_RESPONSE_SNIPPET_BYTES: usize = 4096;
/// Default and largest page size of list endpoints.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
