//! Configuration from the environment (DESIGN.md section 7). Names are the same on Lambda and
//! locally; only some defaults differ.

use hookline_model::retry::{RetryPolicy, parse_duration};
use hookline_model::signing::validate_signing_secret;
use hookline_model::url_check::{TargetPolicy, validate_webhook_url};
use std::time::Duration;

/// The shortest `HOOKLINE_ADMIN_KEY` accepted: the key is the platform's only credential and
/// is checked by hash on every admin call, so it must not be guessable.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

/// The most failures in a row `HOOKLINE_DISABLE_MIN_FAILURES` may ask for.
pub const MAX_DISABLE_MIN_FAILURES: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    Lambda,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key_header: String,
    pub secret_header: String,
    pub token_header: String,
    pub retry_policy: RetryPolicy,
    pub http_timeout: Duration,
    pub connect_timeout: Duration,
    pub targets: TargetPolicy,
    /// SHA-256 of `HOOKLINE_ADMIN_KEY`, when set.
    pub admin_key_hash: Option<String>,
    pub log_retention_days: u32,
    /// How long queued work may stay unfinished before the sweep enqueues it again.
    pub sweep_lease: Duration,
    /// How long one sweep may work before it stops (what is left stays due for the next):
    /// well within the retry function's timeout.
    pub sweep_budget: Duration,
    /// How long the request that starts a replay job works on it before answering
    /// (`HOOKLINE_JOB_INLINE`): a range done by then answers `completed`; the sweep carries a
    /// larger one on. At least one page is always done in the request.
    pub job_inline: Duration,
    /// The longest a delivery of a rate-limited webhook waits for its turn in the worker that
    /// took it; a later turn puts it back on the queue until then. On Lambda it must cover the
    /// whole seconds SQS delays in (`SqsQueue::defer` brings a job back up to 2 s early).
    pub rate_wait_inline: Duration,
    /// The most webhooks one account may have (`HOOKLINE_MAX_WEBHOOKS`).
    pub max_webhooks_per_account: u32,
    /// Local: the most deliveries queued or in flight before publish answers 503
    /// (`HOOKLINE_MAX_BACKLOG`).
    pub max_backlog: usize,
    /// Local: the most deliveries in flight to one webhook at once
    /// (`HOOKLINE_ENDPOINT_CONCURRENCY`), so a slow receiver cannot hold every worker.
    pub endpoint_concurrency: usize,
    /// Per-account limit on pings and test events (`HOOKLINE_TEST_RATE_LIMIT`); `None` is off.
    pub test_rate_limit: Option<RateLimit>,
    /// Who queues a new event's deliveries (`HOOKLINE_FAN_OUT_QUEUE`).
    pub fan_out_queue: FanOutQueue,
    /// The key that signs portal links and browser sessions, derived by the host from its
    /// sealing keys (the same on every instance). `None`: the router makes a random one, valid
    /// in this process only.
    pub portal_key: Option<PortalKey>,
    /// The `frame-ancestors` of the portal's Content-Security-Policy
    /// (`HOOKLINE_FRAME_ANCESTORS`): who may embed it in a frame. Default `'self'`.
    pub frame_ancestors: String,
    /// The base URL portal links start with (`HOOKLINE_PUBLIC_URL`); `None`: taken from the
    /// request that asks for the link.
    pub public_url: Option<String>,
    /// The platform's operational webhook (`HOOKLINE_OPERATIONAL_WEBHOOK_URL` and
    /// `HOOKLINE_OPERATIONAL_WEBHOOK_SECRET`): where `hookline.*` events go; `None` is off.
    pub operational_webhook: Option<OperationalWebhook>,
    /// When Hookline switches off a webhook whose endpoint keeps failing
    /// (`HOOKLINE_DISABLE_AFTER`, `HOOKLINE_DISABLE_MIN_FAILURES`); `None` is off.
    pub auto_disable: Option<AutoDisable>,
}

/// A webhook is switched off once every attempt to it has failed for `after` and it has
/// failed at least `min_failures` attempts in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDisable {
    pub after: Duration,
    pub min_failures: u32,
}

impl Default for AutoDisable {
    /// Svix's rule: five days of nothing but failures; and at least ten failed attempts, so a
    /// webhook that sees one event a week is not switched off by two failures.
    fn default() -> Self {
        Self {
            after: Duration::from_secs(5 * 86_400),
            min_failures: 10,
        }
    }
}

/// Where the platform gets Hookline's operational events, and the `whsec_` secret they are
/// signed with (its `Debug` hides the secret).
#[derive(Clone, PartialEq)]
pub struct OperationalWebhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for OperationalWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationalWebhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Who hands a newly stored delivery to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOutQueue {
    /// Publish enqueues what it stored; each new delivery is due for the sweep a lease later
    /// in case the enqueue is lost (local; `api`).
    Api,
    /// The table's stream function enqueues each inserted delivery (Lambda; `stream`): publish
    /// only writes, and a new delivery is not due for the sweep (the stream is retried until
    /// it goes through; the DLQ is sent back by the sweep).
    Stream,
}

/// 32 bytes of key; its `Debug` hides them.
#[derive(Clone)]
pub struct PortalKey(pub [u8; 32]);

impl std::fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalKey(..)")
    }
}

/// A token bucket: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// `RATE[,BURST]` (requests per second, burst defaults to twice the rate), or `off`.
    pub fn parse(value: &str) -> Result<Option<Self>, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (rate, burst) = value.split_once(',').unwrap_or((value, ""));
        let per_second: f64 = rate
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("'{value}' is not RATE[,BURST] (e.g. 10,20) or off"))?;
        let burst =
            match burst.trim() {
                "" => (per_second * 2.0).ceil().max(1.0) as u32,
                b => b.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                    format!("'{value}': the burst must be a whole number above 0")
                })?,
            };
        Ok(Some(Self { per_second, burst }))
    }
}

impl Config {
    pub fn for_mode(mode: Mode) -> Self {
        let local = mode == Mode::Local;
        Self {
            api_key_header: "X-Api-Key".into(),
            secret_header: "X-Webhook-Secret".into(),
            token_header: "X-Webhook-Token".into(),
            retry_policy: RetryPolicy::default(),
            http_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            targets: TargetPolicy {
                allow_http: local,
                allow_private_targets: local,
            },
            admin_key_hash: None,
            log_retention_days: 30,
            sweep_lease: Duration::from_secs(120),
            sweep_budget: Duration::from_secs(20),
            job_inline: Duration::from_secs(2),
            // Locally a waiting worker holds one of 256; on Lambda a second of waiting costs
            // less than a second trip through the queue.
            rate_wait_inline: if local {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(2)
            },
            max_webhooks_per_account: 500,
            max_backlog: 20_000,
            endpoint_concurrency: 64,
            test_rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 20,
            }),
            fan_out_queue: if local {
                FanOutQueue::Api
            } else {
                FanOutQueue::Stream
            },
            portal_key: None,
            frame_ancestors: "'self'".into(),
            public_url: None,
            operational_webhook: None,
            auto_disable: Some(AutoDisable::default()),
        }
    }

    /// Reads `HOOKLINE_*` variables through `lookup`, over the defaults of `mode`.
    pub fn from_lookup(
        mode: Mode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut config = Self::for_mode(mode);
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("HOOKLINE_API_KEY_HEADER") {
            config.api_key_header = header_name("HOOKLINE_API_KEY_HEADER", v)?;
        }
        if let Some(v) = get("HOOKLINE_SECRET_HEADER") {
            config.secret_header = header_name("HOOKLINE_SECRET_HEADER", v)?;
        }
        if let Some(v) = get("HOOKLINE_TOKEN_HEADER") {
            config.token_header = header_name("HOOKLINE_TOKEN_HEADER", v)?;
        }
        if let Some(v) = lookup("HOOKLINE_RETRY_SCHEDULE") {
            config.retry_policy =
                RetryPolicy::parse(&v).map_err(|e| format!("HOOKLINE_RETRY_SCHEDULE: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_HTTP_TIMEOUT") {
            config.http_timeout =
                parse_duration(v.trim()).map_err(|e| format!("HOOKLINE_HTTP_TIMEOUT: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_ALLOW_HTTP") {
            config.targets.allow_http = flag("HOOKLINE_ALLOW_HTTP", &v)?;
        }
        if let Some(v) = get("HOOKLINE_ALLOW_PRIVATE_TARGETS") {
            config.targets.allow_private_targets = flag("HOOKLINE_ALLOW_PRIVATE_TARGETS", &v)?;
        }
        if let Some(v) = get("HOOKLINE_LOG_RETENTION_DAYS") {
            config.log_retention_days = v.trim().parse().map_err(|_| {
                format!("HOOKLINE_LOG_RETENTION_DAYS: '{v}' is not a number of days")
            })?;
        }
        if let Some(v) = get("HOOKLINE_SWEEP_LEASE") {
            config.sweep_lease =
                parse_duration(v.trim()).map_err(|e| format!("HOOKLINE_SWEEP_LEASE: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_SWEEP_BUDGET") {
            config.sweep_budget =
                parse_duration(v.trim()).map_err(|e| format!("HOOKLINE_SWEEP_BUDGET: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_JOB_INLINE") {
            config.job_inline =
                parse_duration(v.trim()).map_err(|e| format!("HOOKLINE_JOB_INLINE: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_MAX_WEBHOOKS") {
            config.max_webhooks_per_account = positive("HOOKLINE_MAX_WEBHOOKS", &v)? as u32;
        }
        if let Some(v) = get("HOOKLINE_MAX_BACKLOG") {
            config.max_backlog = positive("HOOKLINE_MAX_BACKLOG", &v)?;
        }
        if let Some(v) = get("HOOKLINE_ENDPOINT_CONCURRENCY") {
            config.endpoint_concurrency = positive("HOOKLINE_ENDPOINT_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("HOOKLINE_TEST_RATE_LIMIT") {
            config.test_rate_limit =
                RateLimit::parse(&v).map_err(|e| format!("HOOKLINE_TEST_RATE_LIMIT: {e}"))?;
        }
        if let Some(v) = get("HOOKLINE_FAN_OUT_QUEUE") {
            config.fan_out_queue = match v.trim() {
                "api" => FanOutQueue::Api,
                "stream" if mode == Mode::Lambda => FanOutQueue::Stream,
                "stream" => {
                    return Err("HOOKLINE_FAN_OUT_QUEUE: 'stream' needs the Lambda stack's \
                                table stream; locally it is 'api'"
                        .into());
                }
                other => {
                    return Err(format!(
                        "HOOKLINE_FAN_OUT_QUEUE: '{other}' is neither 'api' nor 'stream'"
                    ));
                }
            };
        }
        if let Some(v) = get("HOOKLINE_FRAME_ANCESTORS") {
            config.frame_ancestors = frame_ancestors(&v)?;
        }
        if let Some(v) = get("HOOKLINE_PUBLIC_URL") {
            let url = v.trim().trim_end_matches('/');
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "HOOKLINE_PUBLIC_URL: '{url}' is not an http(s) URL such as https://hooks.example.com"
                ));
            }
            config.public_url = Some(url.to_string());
        }
        if let Some(v) = get("HOOKLINE_ADMIN_KEY") {
            let key = v.trim();
            // The key itself is never echoed, only its length.
            let length = key.chars().count();
            if length < MIN_ADMIN_KEY_CHARS {
                return Err(format!(
                    "HOOKLINE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters \
                     (it has {length}); generate one with: openssl rand -base64 32"
                ));
            }
            config.admin_key_hash = Some(hookline_model::keys::hash_api_key(key));
        }
        // Set but empty switches it off (as documented); unset keeps the default.
        if let Some(v) = lookup("HOOKLINE_DISABLE_AFTER") {
            config.auto_disable = match v.trim() {
                "" | "off" => None,
                after => Some(AutoDisable {
                    after: parse_duration(after)
                        .map_err(|e| format!("HOOKLINE_DISABLE_AFTER: {e}"))?,
                    ..AutoDisable::default()
                }),
            };
        }
        if let Some(v) = get("HOOKLINE_DISABLE_MIN_FAILURES") {
            let min_failures = positive("HOOKLINE_DISABLE_MIN_FAILURES", &v)? as u32;
            // The log check reads this many deliveries per shard at most.
            if min_failures > MAX_DISABLE_MIN_FAILURES {
                return Err(format!(
                    "HOOKLINE_DISABLE_MIN_FAILURES: '{min_failures}' is above {MAX_DISABLE_MIN_FAILURES}"
                ));
            }
            if let Some(auto_disable) = &mut config.auto_disable {
                auto_disable.min_failures = min_failures;
            }
        }
        // After the target policy: the operational webhook is held to it like any other.
        config.operational_webhook = operational_webhook(
            get("HOOKLINE_OPERATIONAL_WEBHOOK_URL"),
            get("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET"),
            config.targets,
        )?;
        Ok(config)
    }

    pub fn from_env(mode: Mode) -> Result<Self, String> {
        Self::from_lookup(mode, |name| std::env::var(name).ok())
    }
}

fn operational_webhook(
    url: Option<String>,
    secret: Option<String>,
    targets: TargetPolicy,
) -> Result<Option<OperationalWebhook>, String> {
    let Some(url) = url else {
        return match secret {
            Some(_) => Err("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET is set but \
                 HOOKLINE_OPERATIONAL_WEBHOOK_URL is not"
                .into()),
            None => Ok(None),
        };
    };
    let url = validate_webhook_url("HOOKLINE_OPERATIONAL_WEBHOOK_URL", url.trim(), targets)
        .map_err(|e| e.to_string())?
        .to_string();
    let secret = secret.map(|s| s.trim().to_string()).ok_or(
        "HOOKLINE_OPERATIONAL_WEBHOOK_URL needs HOOKLINE_OPERATIONAL_WEBHOOK_SECRET \
         (whsec_ and the base64 of 24 to 64 random bytes)",
    )?;
    // The message names the variable, never the value.
    validate_signing_secret("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", &secret)
        .map_err(|e| e.to_string())?;
    Ok(Some(OperationalWebhook { url, secret }))
}

/// Space-separated CSP sources (`'self'`, `'none'`, `https://app.example.com`,
/// `https://*.example.com`); nothing that could end the directive or add another.
fn frame_ancestors(value: &str) -> Result<String, String> {
    let sources: Vec<&str> = value.split_whitespace().collect();
    let valid = |s: &&str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'\'' | b':' | b'/' | b'.' | b'-' | b'*')
            })
    };
    if sources.is_empty() || !sources.iter().all(valid) {
        return Err(format!(
            "HOOKLINE_FRAME_ANCESTORS: '{value}' is not a list of CSP sources such as \
             'self' https://dashboard.example.com"
        ));
    }
    Ok(sources.join(" "))
}

fn header_name(var: &str, value: String) -> Result<String, String> {
    let value = value.trim().to_string();
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(value)
    } else {
        Err(format!("{var}: '{value}' is not a valid header name"))
    }
}

fn positive(var: &str, value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| format!("{var}: '{}' is not a whole number above 0", value.trim()))
}

fn flag(var: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("{var}: '{other}' is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(mode: Mode, vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(mode, |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_differ_by_mode_only_where_designed() {
        let local = config(Mode::Local, &[]).unwrap();
        let lambda = config(Mode::Lambda, &[]).unwrap();
        assert!(local.targets.allow_http && local.targets.allow_private_targets);
        assert!(!lambda.targets.allow_http && !lambda.targets.allow_private_targets);
        assert_eq!(local.api_key_header, "X-Api-Key");
        assert_eq!(lambda.retry_policy.max_attempts(), 4);
    }

    #[test]
    fn auto_disable_is_on_by_default_off_when_empty_and_checked() {
        let five_days = Duration::from_secs(5 * 86_400);
        let default = config(Mode::Lambda, &[]).unwrap().auto_disable.unwrap();
        assert_eq!((default.after, default.min_failures), (five_days, 10));
        for off in ["", " ", "off"] {
            let c = config(Mode::Local, &[("HOOKLINE_DISABLE_AFTER", off)]).unwrap();
            assert_eq!(c.auto_disable, None, "{off:?}");
        }
        let c = config(
            Mode::Local,
            &[
                ("HOOKLINE_DISABLE_AFTER", "2d"),
                ("HOOKLINE_DISABLE_MIN_FAILURES", "3"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.auto_disable,
            Some(AutoDisable {
                after: Duration::from_secs(2 * 86_400),
                min_failures: 3
            })
        );
        for (var, bad) in [
            ("HOOKLINE_DISABLE_AFTER", "5 days"),
            ("HOOKLINE_DISABLE_MIN_FAILURES", "0"),
            ("HOOKLINE_DISABLE_MIN_FAILURES", "many"),
            ("HOOKLINE_DISABLE_MIN_FAILURES", "1001"),
        ] {
            let error = config(Mode::Local, &[(var, bad)]).unwrap_err();
            assert!(error.starts_with(var), "{error}");
        }
    }

    #[test]
    fn portal_settings_are_checked() {
        let c = config(
            Mode::Lambda,
            &[
                (
                    "HOOKLINE_FRAME_ANCESTORS",
                    " 'self'   https://dashboard.example.com https://*.example.org ",
                ),
                ("HOOKLINE_PUBLIC_URL", "https://hooks.example.com/"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.frame_ancestors,
            "'self' https://dashboard.example.com https://*.example.org"
        );
        assert_eq!(c.public_url.as_deref(), Some("https://hooks.example.com"));
        assert_eq!(config(Mode::Local, &[]).unwrap().frame_ancestors, "'self'");
        // Nothing that could end the directive and add another to the policy.
        for bad in [
            "'self'; script-src *",
            "https://a.example.com,https://b",
            "\"x\"",
        ] {
            let error = config(Mode::Local, &[("HOOKLINE_FRAME_ANCESTORS", bad)]).unwrap_err();
            assert!(error.starts_with("HOOKLINE_FRAME_ANCESTORS: "), "{error}");
        }
        for bad in ["hooks.example.com", "ftp://x", "https://a b"] {
            let error = config(Mode::Local, &[("HOOKLINE_PUBLIC_URL", bad)]).unwrap_err();
            assert!(error.starts_with("HOOKLINE_PUBLIC_URL: "), "{error}");
        }
    }

    #[test]
    fn reads_overrides_and_names_the_bad_variable() {
        let c = config(
            Mode::Local,
            &[
                ("HOOKLINE_API_KEY_HEADER", "Impilo-API-Key"),
                ("HOOKLINE_RETRY_SCHEDULE", "1s,2s,3s"),
                ("HOOKLINE_ALLOW_HTTP", "false"),
                ("HOOKLINE_ADMIN_KEY", " secret-admin-key-of-32-characters "),
            ],
        )
        .unwrap();
        assert_eq!(c.api_key_header, "Impilo-API-Key");
        assert_eq!(c.retry_policy.delays().len(), 3);
        assert!(!c.targets.allow_http);
        assert_eq!(
            c.admin_key_hash.as_deref(),
            Some(hookline_model::keys::hash_api_key("secret-admin-key-of-32-characters").as_str())
        );
        let short = config(Mode::Lambda, &[("HOOKLINE_ADMIN_KEY", "secret-admin")]).unwrap_err();
        assert!(
            short.contains("HOOKLINE_ADMIN_KEY") && short.contains("32"),
            "{short}"
        );
        assert!(
            !short.contains("secret-admin"),
            "the key must not be echoed: {short}"
        );
        assert!(
            config(Mode::Local, &[("HOOKLINE_HTTP_TIMEOUT", "soon")])
                .unwrap_err()
                .contains("HOOKLINE_HTTP_TIMEOUT")
        );
        assert!(config(Mode::Local, &[("HOOKLINE_SECRET_HEADER", "bad header")]).is_err());
    }

    #[test]
    fn test_rate_limit_defaults_and_overrides() {
        let limit = |vars: &[(&str, &str)]| config(Mode::Lambda, vars).map(|c| c.test_rate_limit);
        assert_eq!(
            limit(&[]).unwrap(),
            Some(RateLimit {
                per_second: 10.0,
                burst: 20
            })
        );
        assert_eq!(
            limit(&[("HOOKLINE_TEST_RATE_LIMIT", "2,5")]).unwrap(),
            Some(RateLimit {
                per_second: 2.0,
                burst: 5
            })
        );
        assert_eq!(
            limit(&[("HOOKLINE_TEST_RATE_LIMIT", "0.5")]).unwrap(),
            Some(RateLimit {
                per_second: 0.5,
                burst: 1
            })
        );
        assert_eq!(limit(&[("HOOKLINE_TEST_RATE_LIMIT", "off")]).unwrap(), None);
        for bad in ["0", "-1", "fast", "10,0", "10,x", "NaN"] {
            assert!(
                limit(&[("HOOKLINE_TEST_RATE_LIMIT", bad)])
                    .unwrap_err()
                    .contains("HOOKLINE_TEST_RATE_LIMIT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_operational_webhook_needs_a_url_and_a_whsec_secret() {
        let secret = hookline_model::signing::generate_signing_secret();
        let op = |vars: &[(&str, &str)]| config(Mode::Lambda, vars).map(|c| c.operational_webhook);
        assert_eq!(op(&[]).unwrap(), None);
        let set = op(&[
            (
                "HOOKLINE_OPERATIONAL_WEBHOOK_URL",
                "https://ops.example.com/hook",
            ),
            ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", &secret),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(set.url, "https://ops.example.com/hook");
        assert!(!format!("{set:?}").contains(&secret));
        let missing = op(&[(
            "HOOKLINE_OPERATIONAL_WEBHOOK_URL",
            "https://ops.example.com/h",
        )]);
        assert!(
            missing
                .unwrap_err()
                .contains("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET")
        );
        let bad = op(&[
            (
                "HOOKLINE_OPERATIONAL_WEBHOOK_URL",
                "https://ops.example.com/h",
            ),
            ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", "not-a-secret-value"),
        ])
        .unwrap_err();
        assert!(
            bad.contains("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET") && !bad.contains("not-a-secret"),
            "{bad}"
        );
        // Lambda refuses plain http like any webhook's URL.
        assert!(
            op(&[
                (
                    "HOOKLINE_OPERATIONAL_WEBHOOK_URL",
                    "http://ops.example.com/h"
                ),
                ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", &secret),
            ])
            .unwrap_err()
            .contains("HOOKLINE_OPERATIONAL_WEBHOOK_URL")
        );
        assert!(op(&[("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", &secret)]).is_err());
    }
}
