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

/// What a customer is told when the SSRF guard refuses a target, at create/PATCH time and at
/// delivery: never the address it is or resolves to (that is the operator's business).
pub const TARGET_NOT_ALLOWED: &str =
    "target not allowed: webhooks are delivered only to public internet addresses";

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
        // For http(s) the `url` crate has already normalised every IPv4 spelling (integer,
        // hex, octal, short, percent-encoded, full-width digits) to `Host::Ipv4`.
        let ip = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(d) if is_localhost_name(d) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Host::Domain(_) => None,
        };
        if ip.is_some_and(|ip| !is_global(ip)) {
            // The address is not repeated: a customer learns only that the target is refused.
            return Err(ValidationError::new(field, TARGET_NOT_ALLOWED));
        }
    }
    Ok(url)
}

/// `localhost` and `*.localhost` (RFC 6761), with or without the trailing root dot.
fn is_localhost_name(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// Whether an address is publicly routable, so a webhook may be delivered to it. Not global:
/// unspecified, loopback, private (RFC 1918), link-local (cloud metadata), CGNAT, unique-local,
/// site-local, multicast, broadcast, documentation, benchmarking, reserved, discard-only,
/// IETF protocol assignments (Teredo, ...), and every IPv6 form that carries an IPv4 address
/// the socket layer would reach (IPv4-mapped, -compatible, -translated). NAT64 (`64:ff9b::/96`)
/// and 6to4 (`2002::/16`) addresses are as global as the IPv4 address they embed.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // 0.0.0.0/8 "this network"
        || a == 10 // 10.0.0.0/8 private
        || a == 127 // 127.0.0.0/8 loopback
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10 CGNAT
        || (a == 169 && b == 254) // 169.254.0.0/16 link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // 172.16.0.0/12 private
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2.0/24 TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 192.88.99.0/24 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168) // 192.168.0.0/16 private
        || (a == 198 && (18..20).contains(&b)) // 198.18.0.0/15 benchmarking
        || (a == 198 && b == 51 && c == 100) // 198.51.100.0/24 TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // 203.0.113.0/24 TEST-NET-3
        || a >= 224) // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, 255.255.255.255 broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // 64:ff9b::/96, the well-known NAT64 prefix (DNS64 networks synthesise it for IPv4-only
    // hosts): as global as the IPv4 address it carries.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded_v4(s[6], s[7]));
    }
    // Only 2000::/3 is global unicast. That leaves out ::/128, ::1, the IPv4-compatible
    // (::/96), IPv4-mapped (::ffff:0:0/96) and IPv4-translated (::ffff:0:0:0/96) forms, the
    // local-use NAT64 prefix 64:ff9b:1::/48, discard-only 100::/64, SRv6 SIDs 5f00::/16,
    // unique-local fc00::/7, link-local fe80::/10, site-local fec0::/10 and multicast ff00::/8.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    // 2002::/16 6to4: as global as the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_global_v4(embedded_v4(s[1], s[2]));
    }
    // 2001::/23 IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID, ...
    let ietf_protocol = s[0] == 0x2001 && s[1] < 0x0200;
    // 2001:db8::/32 and 3fff::/20 documentation.
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000);
    !ietf_protocol && !documentation
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
            "https://127.255.255.254/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://100.127.255.255/",
            "https://0.0.0.0/",
            "https://0.1.2.3/",
            "https://192.0.0.8/",
            "https://192.0.2.1/",
            "https://198.18.0.1/",
            "https://198.51.100.7/",
            "https://203.0.113.9/",
            "https://224.0.0.1/",
            "https://240.0.0.1/",
            "https://255.255.255.255/",
            "https://[::]/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fc00::1]/",
            "https://[fe80::1]/",
            "https://[fec0::1]/",
            "https://[ff02::1]/",
            "https://[100::1]/",
            "https://[2001:db8::1]/",
            "https://[2001::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:8.8.8.8]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::10.0.0.1]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://[2002:7f00:1::]/",
            // Every IPv4 spelling the URL parser normalises.
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0x7f.1/",
            "https://017700000001/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://127.0.1/",
            "https://0/",
            "https://127.0.0.1./",
            "https://%31%32%37.0.0.1/",
            "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "https://0xa9.0xfe.0xa9.0xfe/",
            "https://2852039166/",
            "https://[0:0:0:0:0:ffff:7f00:1]/",
            "https://localhost/",
            "https://LOCALHOST/",
            "https://localhost./",
            "https://api.localhost/",
            "https://api.localhost./",
            "https://user:pw@127.0.0.1:8443/",
        ] {
            let err = match validate_webhook_url("url", url, STRICT) {
                Err(err) => err,
                Ok(parsed) => panic!("{url} was accepted (parsed as {parsed})"),
            };
            assert_eq!(err.field, "url");
            assert_eq!(err.message, TARGET_NOT_ALLOWED, "{url}");
        }
        // Zone ids are not valid in URLs at all.
        assert!(validate_webhook_url("url", "https://[fe80::1%25eth0]/", LOCAL).is_err());
    }

    #[test]
    fn refused_literal_targets_do_not_echo_the_normalised_address() {
        for (url, ip) in [
            ("https://2130706433/", "127.0.0.1"),
            ("https://0x7f.1/", "127.0.0.1"),
            ("https://017700000001/", "127.0.0.1"),
            ("https://0xa9fea9fe/", "169.254.169.254"),
            ("https://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"),
        ] {
            let err = validate_webhook_url("url", url, STRICT).unwrap_err();
            assert!(!err.message.contains(ip), "{url}: {}", err.message);
            assert_eq!(err.to_string(), format!("url: {TARGET_NOT_ALLOWED}"));
        }
    }

    #[test]
    fn non_global_addresses() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.255",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::8.8.8.8",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(!is_global(addr), "{ip} should not be global");
        }
    }

    #[test]
    fn global_addresses() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2002:808:808::1",
            "64:ff9b::8.8.8.8",
            "3fff:1000::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(is_global(addr), "{ip} should be global");
        }
    }

    #[test]
    fn accepts_public_https_and_local_targets_when_allowed() {
        assert!(validate_webhook_url("url", "https://example.com/hooks", STRICT).is_ok());
        assert!(validate_webhook_url("url", "https://93.184.216.34/", STRICT).is_ok());
        assert!(validate_webhook_url("url", "https://[2606:4700::1111]:8443/h", STRICT).is_ok());
        assert!(validate_webhook_url("url", "https://1.1.1.1/", STRICT).is_ok());
        // Hostnames are vetted after resolution, at delivery time.
        assert!(validate_webhook_url("url", "https://localhost.example.com/", STRICT).is_ok());
        assert!(validate_webhook_url("url", "http://127.0.0.1:9000/hook", LOCAL).is_ok());
        assert!(validate_webhook_url("url", "http://localhost:9000/hook", LOCAL).is_ok());
        assert!(validate_webhook_url("url", "http://[::1]:9000/hook", LOCAL).is_ok());
        assert!(validate_webhook_url("url", "http://2130706433/", LOCAL).is_ok());
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
