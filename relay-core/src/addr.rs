//! The SOCKS5-style address: `ATYP | ADDR | PORT`.
//!
//! The same layout is the body of the relay Addr feature (type 2), the address in the
//! SOCKS5-style UDP datagram header used by UDP BIND / association, and the address of a SOCKS5
//! request. One codec serves all three.
//!
//! | ATYP | ADDR |
//! |---|---|
//! | `0x01` | 4 bytes IPv4 |
//! | `0x03` | 1 length byte `n`, then `n` bytes of domain (0–255, not validated) |
//! | `0x04` | 16 bytes IPv6 |
//!
//! followed by a big-endian u16 port.
//!
//! ```
//! use relay_core::{Address, Decoded, Host};
//! let bytes = [0x03, 0x00, 0x00, 0x16]; // zero-length domain, port 22: GOST's ":22"
//! let Decoded::Complete { value, consumed } = Address::decode(&bytes).unwrap() else { panic!() };
//! assert_eq!(consumed, 4);
//! assert_eq!(value, Address { host: Host::Domain(b""), port: 22 });
//! assert_eq!(value, Address::parse(":22").unwrap());
//! let mut out = [0u8; 8];
//! assert_eq!(value.encode(&mut out).unwrap(), 4);
//! assert_eq!(&out[..4], &bytes);
//! ```

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::codec::{Decoded, EncodeError, ensure_room};

/// ATYP value of an IPv4 address.
pub const ATYP_IPV4: u8 = 0x01;
/// ATYP value of a domain name.
pub const ATYP_DOMAIN: u8 = 0x03;
/// ATYP value of an IPv6 address.
pub const ATYP_IPV6: u8 = 0x04;

/// The host part of an [`Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// An IPv4 address (ATYP 1).
    V4(Ipv4Addr),
    /// An IPv6 address (ATYP 4).
    V6(Ipv6Addr),
    /// A domain name (ATYP 3): raw bytes, possibly empty, never validated. GOST sends an empty
    /// domain for `:port`, meaning "this host".
    Domain(&'a [u8]),
}

/// A host and a port, borrowing a domain name from the buffer it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address<'a> {
    /// Host part.
    pub host: Host<'a>,
    /// Port.
    pub port: u16,
}

/// Why an address could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// The bytes end before the address does (Go: `short buffer`).
    ShortBuffer,
    /// ATYP is not 1, 3 or 4 (Go: `bad address type`).
    BadAddressType,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::ShortBuffer => "address truncated",
            AddrError::BadAddressType => "bad address type",
        })
    }
}

impl std::error::Error for AddrError {}

/// Why `host:port` text could not be turned into an [`Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrParseError {
    /// The text is empty.
    Empty,
    /// The port is not a decimal number from 0 to 65535.
    BadPort,
    /// A domain longer than 255 bytes.
    DomainTooLong,
}

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrParseError::Empty => "empty address",
            AddrParseError::BadPort => "port is not a number from 0 to 65535",
            AddrParseError::DomainTooLong => "domain longer than 255 bytes",
        })
    }
}

impl std::error::Error for AddrParseError {}

/// Internal outcome of scanning an address at the front of a buffer.
enum Scan<'a> {
    Done(Address<'a>, usize),
    Short(usize),
}

fn scan(buf: &[u8]) -> Result<Scan<'_>, AddrError> {
    let Some(&atyp) = buf.first() else {
        return Ok(Scan::Short(4));
    };
    let (host, host_end) = match atyp {
        ATYP_IPV4 => {
            let Some(b) = buf.get(1..5) else {
                return Ok(Scan::Short(7));
            };
            (Host::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), 5)
        }
        ATYP_IPV6 => {
            let Some(b) = buf.get(1..17) else {
                return Ok(Scan::Short(19));
            };
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            (Host::V6(Ipv6Addr::from(octets)), 17)
        }
        ATYP_DOMAIN => {
            let Some(&n) = buf.get(1) else {
                return Ok(Scan::Short(4));
            };
            let end = 2 + n as usize;
            let Some(name) = buf.get(2..end) else {
                return Ok(Scan::Short(end + 2));
            };
            (Host::Domain(name), end)
        }
        _ => return Err(AddrError::BadAddressType),
    };
    let Some(p) = buf.get(host_end..host_end + 2) else {
        return Ok(Scan::Short(host_end + 2));
    };
    let port = u16::from_be_bytes([p[0], p[1]]);
    Ok(Scan::Done(Address { host, port }, host_end + 2))
}

impl<'a> Address<'a> {
    /// Decodes an address at the front of a stream buffer (SOCKS5 style): `Partial` while the
    /// buffer is too short, an error only for a bad ATYP.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Address<'a>>, AddrError> {
        Ok(match scan(buf)? {
            Scan::Done(value, consumed) => Decoded::Complete { value, consumed },
            Scan::Short(needed) => Decoded::Partial { needed },
        })
    }

    /// Decodes the body of a relay Addr feature, with GOST's rules: a body shorter than 4 bytes
    /// is `ShortBuffer` before ATYP is looked at, and bytes after the port are ignored.
    pub fn decode_body(body: &'a [u8]) -> Result<Address<'a>, AddrError> {
        if body.len() < 4 {
            return Err(AddrError::ShortBuffer);
        }
        match scan(body)? {
            Scan::Done(value, _) => Ok(value),
            Scan::Short(_) => Err(AddrError::ShortBuffer),
        }
    }

    /// Parses `host:port` text the way GOST's address parser does, borrowing a domain from `text`.
    ///
    /// `[v6]:port` and `v4:port` give IP addresses (an IPv4-mapped IPv6 becomes IPv4); anything
    /// else, including an empty host (`:8080`), is a domain. Text that cannot be split at a colon
    /// is all host with port 0 (`demo.sock`). Unlike GOST, a port outside 0–65535 is refused
    /// instead of being cut to 16 bits.
    pub fn parse(text: &'a str) -> Result<Address<'a>, AddrParseError> {
        if text.is_empty() {
            return Err(AddrParseError::Empty);
        }
        let (host, port) = match split_host_port(text) {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|_| AddrParseError::BadPort)?,
            ),
            None => (text, 0),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Host::V4(v4),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::V4(v4),
                None => Host::V6(v6),
            },
            Err(_) if host.len() > 255 => return Err(AddrParseError::DomainTooLong),
            Err(_) => Host::Domain(host.as_bytes()),
        };
        Ok(Address { host, port })
    }

    /// The address of a socket: IPv4 (including IPv4-mapped IPv6) as ATYP 1, IPv6 as ATYP 4.
    pub fn from_socket(addr: SocketAddr) -> Address<'static> {
        let host = match addr.ip() {
            IpAddr::V4(v4) => Host::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::V4(v4),
                None => Host::V6(v6),
            },
        };
        Address {
            host,
            port: addr.port(),
        }
    }

    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::V4(v4) => Some(SocketAddr::from((v4, self.port))),
            Host::V6(v6) => Some(SocketAddr::from((v6, self.port))),
            Host::Domain(_) => None,
        }
    }

    /// The ATYP byte this address is encoded with.
    pub fn atyp(&self) -> u8 {
        match self.host {
            Host::V4(_) => ATYP_IPV4,
            Host::V6(_) => ATYP_IPV6,
            Host::Domain(_) => ATYP_DOMAIN,
        }
    }

    /// Length of the encoding: 7 (IPv4), 19 (IPv6) or 4 + domain length.
    pub fn encoded_len(&self) -> usize {
        match self.host {
            Host::V4(_) => 7,
            Host::V6(_) => 19,
            Host::Domain(d) => 4 + d.len(),
        }
    }

    /// Refuses a domain over 255 bytes, which has no encoding.
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        match self.host {
            Host::Domain(d) if d.len() > 255 => Err(EncodeError::DomainTooLong),
            _ => Ok(()),
        }
    }

    /// Encodes into `out`, returning the length written. Nothing is written on error.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        ensure_room(out, len)?;
        out[0] = self.atyp();
        let host_end = match self.host {
            Host::V4(v4) => {
                out[1..5].copy_from_slice(&v4.octets());
                5
            }
            Host::V6(v6) => {
                out[1..17].copy_from_slice(&v6.octets());
                17
            }
            Host::Domain(d) => {
                out[1] = d.len() as u8;
                out[2..2 + d.len()].copy_from_slice(d);
                2 + d.len()
            }
        };
        out[host_end..host_end + 2].copy_from_slice(&self.port.to_be_bytes());
        Ok(len)
    }
}

/// Splits `host:port` like Go's `net.SplitHostPort`: `[h]:p`, or `h:p` with exactly one colon.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::V4(v4) => write!(f, "{v4}"),
            Host::V6(v6) => write!(f, "[{v6}]"),
            Host::Domain(d) => write!(f, "{}", String::from_utf8_lossy(d)),
        }
    }
}

impl fmt::Display for Address<'_> {
    /// `host:port` as GOST prints it: IPv6 bracketed, an empty domain as `:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_follows_gost_parser() {
        let a = Address::parse("1.2.3.4:80").unwrap();
        assert_eq!(a.host, Host::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(a.port, 80);
        assert_eq!(
            Address::parse("[::1]:443").unwrap().host,
            Host::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            Address::parse("example.com:8080").unwrap().host,
            Host::Domain(b"example.com")
        );
        assert_eq!(Address::parse("1.2.3.4").unwrap().port, 0);
        assert_eq!(
            Address::parse("demo.sock").unwrap().host,
            Host::Domain(b"demo.sock")
        );
        assert_eq!(Address::parse("host:abc"), Err(AddrParseError::BadPort));
        assert_eq!(Address::parse("host:70000"), Err(AddrParseError::BadPort));
        assert_eq!(Address::parse(""), Err(AddrParseError::Empty));
        assert_eq!(
            Address::parse(":0").unwrap(),
            Address {
                host: Host::Domain(b""),
                port: 0
            }
        );
        assert_eq!(
            Address::parse("[::ffff:1.2.3.4]:5").unwrap().host,
            Host::V4(Ipv4Addr::new(1, 2, 3, 4))
        );
    }

    #[test]
    fn body_short_before_type() {
        assert_eq!(
            Address::decode_body(&[0xff, 0, 0]),
            Err(AddrError::ShortBuffer)
        );
        assert_eq!(
            Address::decode_body(&[0xff, 0, 0, 0]),
            Err(AddrError::BadAddressType)
        );
        assert_eq!(
            Address::decode_body(&[1, 1, 2, 3, 4, 0]),
            Err(AddrError::ShortBuffer)
        );
    }

    #[test]
    fn display_matches_gost() {
        assert_eq!(Address::parse(":22").unwrap().to_string(), ":22");
        assert_eq!(Address::parse("[::1]:1").unwrap().to_string(), "[::1]:1");
    }
}
