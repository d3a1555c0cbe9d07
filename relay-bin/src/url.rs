//! A Go `net/url`-like splitter for GOST's `-L` / `-F` arguments.
//!
//! The `url` crate rejects an empty host with a port (`relay://:8420`), which
//! is GOST's canonical form, so this module splits the string by hand:
//! `[scheme://][user[:pass]@][host]:port[,host:port…][/t1,t2][?k=v&…]`.
//!
//! GOST normalisation (config.md §1.1): an argument without `://`, or one
//! starting with `:`, gets the scheme `auto`. Port ranges (`:8000-8010`) are
//! valid GOST syntax but are rejected here with [`UrlError::PortRange`].

use std::fmt;

use percent_encoding::percent_decode_str;

/// One parsed `-L` / `-F` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdUrl {
    /// The scheme as written (`relay`, `relay+tls`, `auto` when absent), lower-cased.
    pub scheme: String,
    /// The user name from `user:pass@`, or from `?auth=` when no userinfo was given.
    pub username: Option<String>,
    /// The password from `user:pass@` / `?auth=` (may be empty).
    pub password: Option<String>,
    /// The addresses of the authority, split at commas (`host:port`, host may be empty).
    pub hosts: Vec<HostPort>,
    /// Path targets (`/t1,t2`), split at commas, empty when there is no path.
    pub targets: Vec<HostPort>,
    /// Query parameters in order of first appearance (first value wins); `auth` is kept.
    pub query: Vec<(String, String)>,
}

/// A `host:port` pair; `host` is empty for `:8420`, and keeps IPv6 brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address, possibly empty; IPv6 literals keep their `[` `]`.
    pub host: String,
    /// The port number.
    pub port: u16,
}

impl HostPort {
    /// The host without IPv6 brackets (what GOST uses as a TLS server name).
    pub fn hostname(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why an argument could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme contains characters Go's `net/url` does not allow.
    BadScheme(String),
    /// An address has no `:port`.
    MissingPort(String),
    /// A port is not a decimal number in 0..=65535.
    BadPort(String),
    /// A port range `a-b`: GOST expands it, this implementation does not (yet).
    PortRange(String),
    /// A host contains characters that are not allowed.
    BadHost(String),
    /// A `%xx` escape is malformed or decodes to invalid UTF-8.
    BadEscape(String),
    /// `?auth=` is not base64 of `user:pass`.
    BadAuth(String),
    /// No address at all was given.
    EmptyAddress,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::BadScheme(s) => write!(f, "invalid scheme {s:?}"),
            UrlError::MissingPort(s) => write!(f, "missing port in address {s:?}"),
            UrlError::BadPort(s) => write!(f, "invalid port {s:?}"),
            UrlError::PortRange(s) => write!(
                f,
                "port range {s:?} is not supported (list the ports as separate -L flags)"
            ),
            UrlError::BadHost(s) => write!(f, "invalid host {s:?}"),
            UrlError::BadEscape(s) => write!(f, "invalid URL escape in {s:?}"),
            UrlError::BadAuth(s) => {
                write!(f, "invalid auth parameter {s:?} (want base64 of user:pass)")
            }
            UrlError::EmptyAddress => write!(f, "missing address"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parse one `-L` / `-F` argument with GOST's normalisation.
pub fn parse(input: &str) -> Result<CmdUrl, UrlError> {
    let s = input.trim();
    let (scheme, rest) = match s.find("://") {
        Some(i) if !s.starts_with(':') => (&s[..i], &s[i + 3..]),
        _ => ("auto", s),
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(UrlError::BadScheme(scheme));
    }
    // Go drops the fragment first.
    let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
    let (before_query, raw_query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };

    let mut username = None;
    let mut password = None;
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        username = Some(unescape(u, false)?);
        password = p.map(|p| unescape(p, false)).transpose()?;
    }

    let query = parse_query(raw_query)?;
    let auth_param = query
        .iter()
        .find(|(k, _)| k == "auth")
        .filter(|_| userinfo.is_none());
    if let Some((_, v)) = auth_param {
        let decoded = base64_decode(v).ok_or_else(|| UrlError::BadAuth(v.clone()))?;
        let text = String::from_utf8(decoded).map_err(|_| UrlError::BadAuth(v.clone()))?;
        let (u, p) = text.split_once(':').unwrap_or((&text, ""));
        username = Some(u.to_string());
        password = Some(p.to_string());
    }

    if hostlist.is_empty() {
        return Err(UrlError::EmptyAddress);
    }
    let hosts = hostlist
        .split(',')
        .map(parse_host_port)
        .collect::<Result<Vec<_>, _>>()?;

    let path = unescape(path, false)?;
    let trimmed = path.trim_matches('/');
    let targets = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed
            .split(',')
            .map(|t| parse_host_port(t.trim()))
            .collect::<Result<Vec<_>, _>>()?
    };

    Ok(CmdUrl {
        scheme,
        username,
        password,
        hosts,
        targets,
        query,
    })
}

/// Parse a `host:port` address as used in YAML `addr` fields (host may be empty).
pub fn parse_addr(s: &str) -> Result<HostPort, UrlError> {
    parse_host_port(s.trim())
}

fn parse_host_port(s: &str) -> Result<HostPort, UrlError> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| UrlError::BadHost(s.to_string()))?;
        let host = &s[..end + 2];
        let after = &inner[end + 1..];
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| UrlError::MissingPort(s.to_string()))?;
        if !inner[..end]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%'))
        {
            return Err(UrlError::BadHost(s.to_string()));
        }
        (host, port)
    } else {
        let i = s
            .rfind(':')
            .ok_or_else(|| UrlError::MissingPort(s.to_string()))?;
        let host = &s[..i];
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%'))
        {
            return Err(UrlError::BadHost(host.to_string()));
        }
        (host, &s[i + 1..])
    };
    if port.contains('-') {
        return Err(UrlError::PortRange(s.to_string()));
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::BadPort(port.to_string()));
    }
    let port: u32 = port
        .parse()
        .map_err(|_| UrlError::BadPort(port.to_string()))?;
    let port = u16::try_from(port).map_err(|_| UrlError::BadPort(port.to_string()))?;
    Ok(HostPort {
        host: unescape(host, false)?,
        port,
    })
}

/// Go `url.ParseQuery`-like: `&`-separated, `+` is a space, first value wins.
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = unescape(k, true)?;
        let v = unescape(v, true)?;
        if !out.iter().any(|(ek, _)| *ek == k) {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn unescape(s: &str, plus_is_space: bool) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(UrlError::BadEscape(s.to_string()));
        }
    }
    let replaced;
    let src = if plus_is_space && s.contains('+') {
        replaced = s.replace('+', " ");
        replaced.as_str()
    } else {
        s
    };
    percent_decode_str(src)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError::BadEscape(s.to_string()))
}

/// Standard base64 (padding optional, as Go's `StdEncoding` is lenient enough for GOST users).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn empty_host_and_auto_scheme() {
        let u = parse(":8420").unwrap();
        assert_eq!(u.scheme, "auto");
        assert_eq!(u.hosts, vec![hp("", 8420)]);
        let u = parse("relay://:8420").unwrap();
        assert_eq!(u.scheme, "relay");
        let u = parse("host:1").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.hosts[0].clone()),
            ("auto", hp("host", 1))
        );
    }

    #[test]
    fn userinfo_path_query() {
        let u = parse("relay://us%40r:p%3Ass@:8420/a:1,b:2?bind=true&x=a+b&bind=false").unwrap();
        assert_eq!(u.username.as_deref(), Some("us@r"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(u.targets, vec![hp("a", 1), hp("b", 2)]);
        assert_eq!(
            u.query,
            vec![("bind".into(), "true".into()), ("x".into(), "a b".into())]
        );
    }

    #[test]
    fn auth_query_only_without_userinfo() {
        let u = parse("relay://host:8420?auth=dXNlcjpwYXNz").unwrap();
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("pass"));
        let u = parse("relay://a:b@host:8420?auth=dXNlcjpwYXNz").unwrap();
        assert_eq!(u.username.as_deref(), Some("a"));
        assert!(matches!(
            parse("relay://h:1?auth=***"),
            Err(UrlError::BadAuth(_))
        ));
    }

    #[test]
    fn multiple_hosts_and_ipv6() {
        let u = parse("relay://h1:8420,[::1]:8421?strategy=rand").unwrap();
        assert_eq!(u.hosts, vec![hp("h1", 8420), hp("[::1]", 8421)]);
        assert_eq!(u.hosts[1].hostname(), "::1");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse("relay://:8000-8010"),
            Err(UrlError::PortRange(_))
        ));
        assert!(matches!(
            parse("relay://host"),
            Err(UrlError::MissingPort(_))
        ));
        assert!(matches!(parse("relay://:99999"), Err(UrlError::BadPort(_))));
        assert!(matches!(parse("relay://h o:1"), Err(UrlError::BadHost(_))));
        assert!(matches!(parse("re lay://:1"), Err(UrlError::BadScheme(_))));
        assert!(matches!(
            parse("relay://:1?a=%zz"),
            Err(UrlError::BadEscape(_))
        ));
        assert!(matches!(parse("relay://"), Err(UrlError::EmptyAddress)));
        assert!(matches!(
            parse("relay://:1/t"),
            Err(UrlError::MissingPort(_))
        ));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("Y").is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_urlish(s in "[a-z+]{0,6}(://)?([a-z%:@]{0,5}@)?[a-z0-9.:\\[\\],%-]{0,20}(/[a-z0-9:,%]{0,10})?(\\?[a-z=&%+]{0,12})?") {
            let _ = parse(&s);
        }
    }
}
