//! Webhook URL checks done when a webhook is created or changed.

use crate::error::ValidationError;
use crate::limits::MAX_URL_BYTES;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private_targets: bool,
}

/// Checks scheme, length, host, and (unless allowed) that a literal IP host is global.
/// Hostnames are checked again after DNS resolution at delivery time.
pub fn validate_webhook_url(
    field: &str,
    raw: &str,
    policy: TargetPolicy,
) -> Result<Url, ValidationError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(ValidationError::new(
            field,
            format!("is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let url = Url::parse(raw)
        .map_err(|e| ValidationError::new(field, format!("is not a valid absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(ValidationError::new(
                field,
                "must use https (http targets are disabled)",
            ));
        }
        other => {
            return Err(ValidationError::new(
                field,
                format!("scheme '{other}' is not allowed; use https"),
            ));
        }
    }
    let host = url
        .host()
        .ok_or_else(|| ValidationError::new(field, "has no host"))?;
    if !policy.allow_private_targets {
        let ip = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(d) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Host::Domain(_) => None,
        };
        if let Some(ip) = ip.filter(|ip| !is_global(*ip)) {
            return Err(ValidationError::new(
                field,
                format!("points at a non-public address ({ip})"),
            ));
        }
    }
    Ok(url)
}

/// Whether an address is publicly routable: not loopback, private, link-local (metadata),
/// CGNAT, unique-local, multicast, documentation, reserved, or an IPv4-mapped form of those.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (embeds IPv4)
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)) // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private_targets: false,
    };
    const LOCAL: TargetPolicy = TargetPolicy {
        allow_http: true,
        allow_private_targets: true,
    };

    #[test]
    fn refuses_non_global_literal_targets() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://localhost/",
            "https://api.localhost/",
        ] {
            let err = validate_webhook_url("url", url, STRICT).expect_err(url);
            assert_eq!(err.field, "url");
        }
    }

    #[test]
    fn accepts_public_https_and_local_targets_when_allowed() {
        assert!(validate_webhook_url("url", "https://example.com/hooks", STRICT).is_ok());
        assert!(validate_webhook_url("url", "https://93.184.216.34/", STRICT).is_ok());
        assert!(validate_webhook_url("url", "http://127.0.0.1:9000/hook", LOCAL).is_ok());
    }

    #[test]
    fn checks_scheme_length_and_shape() {
        assert!(
            validate_webhook_url("url", "http://example.com/", STRICT)
                .unwrap_err()
                .message
                .contains("https")
        );
        assert!(validate_webhook_url("url", "ftp://example.com/", LOCAL).is_err());
        assert!(validate_webhook_url("url", "not a url", LOCAL).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(
            validate_webhook_url("url", &long, LOCAL)
                .unwrap_err()
                .message
                .contains("longer")
        );
    }
}
