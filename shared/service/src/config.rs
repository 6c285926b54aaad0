//! Configuration from the environment (DESIGN.md section 7). Names are the same on Lambda and
//! locally; only some defaults differ.

use hookline_model::retry::{RetryPolicy, parse_duration};
use hookline_model::url_check::TargetPolicy;
use std::time::Duration;

/// The shortest `HOOKLINE_ADMIN_KEY` accepted: the key is the platform's only credential and
/// is checked by hash on every admin call, so it must not be guessable.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

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
        Ok(config)
    }

    pub fn from_env(mode: Mode) -> Result<Self, String> {
        Self::from_lookup(mode, |name| std::env::var(name).ok())
    }
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
}
