//! The retry policy: delays between attempts, as `HOOKLINE_RETRY_SCHEDULE` spells them.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// Impilo's: 15 minutes after the first failure, then 30, then 60 (four attempts).
    fn default() -> Self {
        Self {
            delays: vec![
                Duration::from_secs(15 * 60),
                Duration::from_secs(30 * 60),
                Duration::from_secs(60 * 60),
            ],
        }
    }
}

impl RetryPolicy {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Parses `15m,30m,60m` (units `ms`, `s`, `m`, `h`, `d`; an empty string means no retries).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self { delays: vec![] });
        }
        raw.split(',')
            .map(|d| parse_duration(d.trim()))
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    /// How long to wait after the `failed_attempts`-th failure, or `None` when it was the last.
    pub fn delay_after(&self, failed_attempts: usize) -> Option<Duration> {
        failed_attempts
            .checked_sub(1)
            .and_then(|i| self.delays.get(i))
            .copied()
    }

    pub fn max_attempts(&self) -> usize {
        self.delays.len() + 1
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

/// Parses `15s`, `30m`, `1h` (and `250ms`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration like 15s, 30m, 1h or 5d"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("'{raw}' has no unit: use s, m, h or d")),
    };
    // An overflow would panic (debug) or wrap (release).
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("'{raw}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_impilos_schedule() {
        let p = RetryPolicy::default();
        assert_eq!(p, RetryPolicy::parse("15m,30m,60m").unwrap());
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.delay_after(1), Some(Duration::from_secs(900)));
        assert_eq!(p.delay_after(3), Some(Duration::from_secs(3600)));
        assert_eq!(p.delay_after(4), None);
        assert_eq!(p.delay_after(0), None);
    }

    #[test]
    fn parses_units_and_rejects_nonsense() {
        assert_eq!(
            RetryPolicy::parse("1s, 2m,3h").unwrap().delays(),
            &[
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(10800)
            ]
        );
        assert!(RetryPolicy::parse("5").is_err());
        assert!(RetryPolicy::parse("m").is_err());
        assert!(RetryPolicy::parse("1w").is_err());
        assert_eq!(
            RetryPolicy::parse("1d").unwrap().delays(),
            &[Duration::from_secs(86_400)]
        );
        assert_eq!(RetryPolicy::parse("").unwrap().max_attempts(), 1);
    }
}
