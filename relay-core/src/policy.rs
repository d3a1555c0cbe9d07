//! Which targets a server may connect to: GOST's bypass list (refused with status 3), an
//! optional allow list, and an SSRF guard that refuses loopback, private and other internal
//! addresses.
//!
//! The request is checked when it arrives ([`Policy::allows_target`]: domain and IP literal
//! rules); adapters check every address a name resolves to ([`Policy::allows_ip`]) before they
//! connect, and report a refusal as [`crate::server::DialError::Forbidden`].
//!
//! ```
//! use relay_core::policy::{Policy, Rule};
//! use relay_core::target::Target;
//! use relay_core::Address;
//!
//! let mut policy = Policy::default();
//! policy.deny.push("*.internal.example".parse::<Rule>().unwrap());
//! policy.deny.push("10.0.0.0/8".parse::<Rule>().unwrap());
//! policy.block_internal = true;
//! let t = |s: &str| Target::from_address(&Address::parse(s).unwrap());
//! assert!(!policy.allows_target(&t("db.internal.example:5432")));
//! assert!(!policy.allows_target(&t("10.1.2.3:80")));
//! assert!(!policy.allows_target(&t("127.0.0.1:22"))); // SSRF guard
//! assert!(policy.allows_target(&t("example.com:443")));
//! assert!(!policy.allows_ip("192.168.1.1".parse().unwrap())); // after resolution
//! ```

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::target::{Target, TargetHost};

/// One rule: an IP network or a domain pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// An address and prefix length (`10.0.0.0/8`, `::1/128`; a bare address is a host route).
    Network(IpAddr, u8),
    /// A domain: `example.com` matches exactly; `*.example.com` or `.example.com` match it and
    /// every subdomain. Case-insensitive.
    Domain(String),
}

/// A rule that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRule;

impl fmt::Display for BadRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an address, network (a.b.c.d/n) or domain pattern")
    }
}

impl std::error::Error for BadRule {}

impl FromStr for Rule {
    type Err = BadRule;
    fn from_str(s: &str) -> Result<Rule, BadRule> {
        let s = s.trim();
        if s.is_empty() {
            return Err(BadRule);
        }
        if let Some((ip, len)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| BadRule)?;
            let len: u8 = len.parse().map_err(|_| BadRule)?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return if len <= max {
                Ok(Rule::Network(ip, len))
            } else {
                Err(BadRule)
            };
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Rule::Network(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        if s.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(BadRule);
        }
        Ok(Rule::Domain(s.to_ascii_lowercase()))
    }
}

fn prefix_match(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl Rule {
    /// True when `ip` is in this network (IPv4-mapped IPv6 compares as IPv4).
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        let Rule::Network(net, bits) = self else {
            return false;
        };
        match (canonical(*net), canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix_match(&n.octets(), &i.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix_match(&n.octets(), &i.octets(), *bits),
            _ => false,
        }
    }

    /// True when `name` matches this domain pattern.
    pub fn matches_domain(&self, name: &[u8]) -> bool {
        let Rule::Domain(pattern) = self else {
            return false;
        };
        let name = name.strip_suffix(b".").unwrap_or(name);
        let eq = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        match pattern
            .strip_prefix("*.")
            .or_else(|| pattern.strip_prefix('.'))
        {
            Some(base) => {
                let base = base.as_bytes();
                eq(name, base)
                    || (name.len() > base.len()
                        && name[name.len() - base.len() - 1] == b'.'
                        && eq(&name[name.len() - base.len()..], base))
            }
            None => eq(name, pattern.as_bytes()),
        }
    }

    fn matches(&self, target: &Target) -> bool {
        match &target.host {
            TargetHost::Ip(ip) => self.matches_ip(*ip),
            TargetHost::Domain(d) => self.matches_domain(d.as_bytes()),
            TargetHost::Local => self.matches_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True for addresses a public-facing relay should not reach on a client's behalf: loopback,
/// private (RFC 1918, fc00::/7), link-local, shared (100.64/10), unspecified, broadcast,
/// multicast, documentation and benchmarking ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || v6 == Ipv6Addr::UNSPECIFIED
        }
    }
}

/// Target rules for a relay service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Targets refused with status 3 (GOST's bypass).
    pub deny: Vec<Rule>,
    /// When not empty, only these targets are allowed.
    pub allow: Vec<Rule>,
    /// Refuse internal addresses ([`is_internal`]), including names that resolve to them.
    pub block_internal: bool,
}

impl Policy {
    /// Whether the requested target may be dialled, judged on what the request says.
    pub fn allows_target(&self, target: &Target) -> bool {
        if self.deny.iter().any(|r| r.matches(target)) {
            return false;
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(target)) {
            return false;
        }
        match target.host {
            TargetHost::Ip(ip) => !self.block_internal || !is_internal(ip),
            TargetHost::Local => !self.block_internal,
            TargetHost::Domain(_) => true,
        }
    }

    /// Whether an address a target resolved to may be connected to: deny rules by network,
    /// and the SSRF guard.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        !(self.deny.iter().any(|r| r.matches_ip(ip)) || (self.block_internal && is_internal(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        let r: Rule = "10.0.0.0/8".parse().unwrap();
        assert!(r.matches_ip("10.255.0.1".parse().unwrap()));
        assert!(r.matches_ip("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!r.matches_ip("11.0.0.1".parse().unwrap()));
        let r: Rule = "192.168.1.0/23".parse().unwrap();
        assert!(r.matches_ip("192.168.0.9".parse().unwrap()));
        assert!(!r.matches_ip("192.168.2.9".parse().unwrap()));
        let r: Rule = "*.Example.com".parse().unwrap();
        assert!(r.matches_domain(b"a.b.example.COM."));
        assert!(r.matches_domain(b"example.com"));
        assert!(!r.matches_domain(b"badexample.com"));
        let r: Rule = "example.com".parse().unwrap();
        assert!(!r.matches_domain(b"a.example.com"));
        assert_eq!("1.2.3.4/33".parse::<Rule>(), Err(BadRule));
        assert_eq!("".parse::<Rule>(), Err(BadRule));
        assert_eq!(
            "::/0".parse::<Rule>(),
            Ok(Rule::Network(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))
        );
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.1.1",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list_restricts() {
        let p = Policy {
            allow: vec!["example.com".parse().unwrap()],
            ..Policy::default()
        };
        let t = |s: &str| Target::from_address(&crate::Address::parse(s).unwrap());
        assert!(p.allows_target(&t("example.com:1")));
        assert!(!p.allows_target(&t("other.com:1")));
    }
}
