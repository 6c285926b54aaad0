//! Size limits of DESIGN.md section 4.

/// Largest event payload, as serialised JSON.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest request body the API reads.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;
/// How much of a receiver's response body a failed attempt keeps.
pub const MAX_RESPONSE_SNIPPET_BYTES: usize = 4096;
/// How much of the body of a successful (2xx) answer an attempt keeps: every stored byte is
/// billed again on each write of the delivery, and a 2xx body rarely explains anything
/// (docs/DECISIONS.md, "Response bodies kept").
pub const MAX_SUCCESS_SNIPPET_BYTES: usize = 256;

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn snippet(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
/// The highest `rateLimit` a webhook may have, in deliveries a second. On Lambda every
/// delivery of a rate-limited webhook writes that webhook's limiter item once, so its key
/// takes about this many writes a second: half of what one DynamoDB partition takes
/// (docs/DECISIONS.md, "Rate limit").
pub const MAX_RATE_LIMIT: u32 = 500;

/// Default and largest page size of list endpoints.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
