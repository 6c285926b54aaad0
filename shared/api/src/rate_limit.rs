//! A per-account token bucket in memory for the routes that make Hookline send requests on
//! the caller's say-so (ping, test events). It is per process: on Lambda each instance keeps
//! its own buckets, and API Gateway's stage throttling bounds the whole.

use crate::ApiError;
use crate::auth::AccountCaller;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use hookline_service::Service;
use hookline_service::config::RateLimit;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::IntoResponses;

/// Beyond this many accounts in the map, full buckets (accounts idle long enough to have
/// refilled) are forgotten, so the map stays bounded by the accounts active recently.
const PRUNE_ABOVE: usize = 10_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every account seen, shared by the routes it guards.
pub struct TestRateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TestRateLimiter {
    pub fn new(limit: Option<RateLimit>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token of `account`'s bucket, or says how long until one is there.
    pub fn check(&self, account: &str, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let burst = f64::from(limit.burst);
        let refill = |bucket: &Bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            (bucket.tokens + elapsed * limit.per_second).min(burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| refill(bucket) < burst);
        }
        let bucket = buckets.entry(account.to_string()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = refill(bucket);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }
}

/// An account caller within its rate limit for pings and test events; otherwise 429 with
/// `Retry-After` (whole seconds, rounded up).
pub struct RateLimitedCaller(pub String);

impl FromRequestParts<Service> for RateLimitedCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, Response> {
        let AccountCaller(account_id) = AccountCaller::from_request_parts(parts, service)
            .await
            .map_err(IntoResponse::into_response)?;
        let limiter = parts.extensions.get::<Arc<TestRateLimiter>>();
        within_test_rate_limit(limiter.map(Arc::as_ref), &account_id)
            .map_err(IntoResponse::into_response)?;
        Ok(Self(account_id))
    }
}

/// Takes one of `account_id`'s tokens for pings and test events, or answers 429 with
/// `Retry-After` (whole seconds, rounded up).
pub fn within_test_rate_limit(
    limiter: Option<&TestRateLimiter>,
    account_id: &str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if let Err(wait) = limiter.check(account_id, Instant::now()) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        return Err(ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many pings and test events for this account; try again in {seconds} s"
                ),
            )
        });
    }
    Ok(())
}

/// The 429 of the rate-limited routes, for their OpenAPI entries.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum RateLimited {
    /// Too many pings and test events for this account; wait `Retry-After` seconds.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
    TooManyRequests(#[to_schema] crate::views::ErrorBody),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> Arc<TestRateLimiter> {
        TestRateLimiter::new(Some(RateLimit { per_second, burst }))
    }

    #[test]
    fn a_burst_then_the_rate_per_account() {
        let limiter = limiter(10.0, 20);
        let start = Instant::now();
        for _ in 0..20 {
            assert!(limiter.check("acct_a", start).is_ok());
        }
        let wait = limiter.check("acct_a", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another account has its own bucket.
        assert!(limiter.check("acct_b", start).is_ok());
        // A tenth of a second later one more request is allowed, not two.
        let later = start + Duration::from_millis(100);
        assert!(limiter.check("acct_a", later).is_ok());
        assert!(limiter.check("acct_a", later).is_err());
        // Idle long enough, the bucket is full again, but never fuller than the burst.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..20 {
            assert!(limiter.check("acct_a", much_later).is_ok());
        }
        assert!(limiter.check("acct_a", much_later).is_err());
    }

    #[test]
    fn off_allows_everything() {
        let limiter = TestRateLimiter::new(None);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check("acct_a", now).is_ok());
        }
    }

    #[test]
    fn idle_accounts_are_forgotten_when_the_map_is_large() {
        let limiter = limiter(10.0, 20);
        let start = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            limiter.check(&format!("acct_{i}"), start).unwrap();
        }
        limiter
            .check("acct_new", start + Duration::from_secs(10))
            .unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
