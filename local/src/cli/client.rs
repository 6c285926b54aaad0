//! The HTTP client of the management commands: one base URL, one key, and errors turned into
//! messages that say what to do.

use super::{CliError, CliResult, GlobalArgs, config};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub struct Api {
    http: reqwest::Client,
    /// Without a trailing slash or `/api/v3`.
    base: String,
    key: Option<String>,
    pub json: bool,
}

/// A failed call as the API answered it, for commands that handle some statuses themselves.
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Api {
    /// Flags win over the environment (clap reads both), which wins over the profile.
    pub fn connect(global: &GlobalArgs) -> CliResult<Self> {
        let profile = config::load(global.config.as_deref(), global.profile.as_deref())?;
        let raw_url = global
            .url
            .clone()
            .or(profile.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let parsed = reqwest::Url::parse(raw_url.trim()).map_err(|error| {
            CliError::Usage(format!(
                "--url '{raw_url}' is not a URL ({error}); give one like {DEFAULT_URL}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(CliError::Usage(format!(
                "--url '{raw_url}' must be an http:// or https:// URL with a host, like {DEFAULT_URL}"
            )));
        }
        let base = raw_url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/api/v3").unwrap_or(base).to_string();
        let key = global
            .key
            .clone()
            .or(profile.key)
            .filter(|k| !k.trim().is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| CliError::Usage(format!("HTTP client: {error}")))?;
        Ok(Self {
            http,
            base,
            key,
            json: global.json,
        })
    }

    /// Calls `method /api/v3{path}` and returns the answer's JSON (`null` for an empty body), or
    /// the API's error as a message with a hint.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> CliResult<Value> {
        self.try_call(method, path, query, body)
            .await?
            .map_err(|failure| CliError::Api(self.explain(&failure)))
    }

    /// Like `call`, but an error the API answered is returned for the caller to handle.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> CliResult<Result<Value, ApiFailure>> {
        let key = self.key.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no API key: pass --key, set HOOKLINE_KEY, or put `key` in a profile of the config file"
                    .into(),
            )
        })?;
        let mut url = reqwest::Url::parse(&format!("{}/api/v3{path}", self.base))
            .map_err(|error| CliError::Usage(format!("{path}: {error}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method, url.clone()).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Ok(Value::Null));
            }
            return serde_json::from_str(&text).map(Ok).map_err(|_| {
                CliError::Api(format!(
                    "{url} answered {status} with a body that is not JSON: is {} a Hookline?",
                    self.base
                ))
            });
        }
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = error["error"]["code"].as_str().unwrap_or("").to_string();
        let message = error["error"]["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| first_line(&text));
        Ok(Err(ApiFailure {
            status,
            code,
            message,
        }))
    }

    /// The error line for a failure, with what to try next where the status tells.
    pub fn explain(&self, failure: &ApiFailure) -> String {
        let hint = match failure.status {
            401 => " (check --key, HOOKLINE_KEY or the profile's key)",
            403 if failure.message.contains("admin key") => {
                " (use the admin key for platform commands: accounts, keys, event-types add, events)"
            }
            403 => " (use an account key: webhooks, logs, retry and status act for one account)",
            404 if failure.code.is_empty() => " (is --url the base URL of a Hookline?)",
            429 | 503 => " (try again shortly)",
            _ => "",
        };
        let code = if failure.code.is_empty() {
            String::new()
        } else {
            format!(" {}", failure.code)
        };
        format!("{}{code}: {}{hint}", failure.status, failure.message)
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        use std::error::Error;
        // The innermost cause says it best ("Connection refused", "dns error: ...").
        let mut cause: &dyn Error = error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if error.is_timeout() {
            "timed out".to_string()
        } else {
            cause.to_string()
        };
        CliError::Unreachable(format!(
            "cannot reach Hookline at {}: {what}. Is it running? Check --url or HOOKLINE_URL",
            self.base
        ))
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "(empty answer)".into()
    } else {
        line.chars().take(200).collect()
    }
}
