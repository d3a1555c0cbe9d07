//! Owned addresses for actions that outlive the input buffer (dial this, listen there).
//!
//! An [`Address`] borrows its domain from the bytes it was decoded from. A [`Target`] copies it
//! into a fixed 255-byte array, so handing a dial request to an adapter never allocates.
//!
//! ```
//! use relay_core::{Address, target::{Target, TargetHost}};
//! let t = Target::from_address(&Address::parse("example.com:443").unwrap());
//! assert_eq!(t.host, TargetHost::Domain("example.com".parse().unwrap()));
//! assert_eq!(t.to_string(), "example.com:443");
//! assert_eq!(t.as_address(), Address::parse("example.com:443").unwrap());
//! ```

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::addr::{Address, Host};

/// A domain name of at most 255 bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain {
    len: u8,
    bytes: [u8; 255],
}

impl Domain {
    /// Copies `name`; `None` if it is longer than 255 bytes.
    pub fn new(name: &[u8]) -> Option<Domain> {
        let len = u8::try_from(name.len()).ok()?;
        let mut bytes = [0u8; 255];
        bytes[..name.len()].copy_from_slice(name);
        Some(Domain { len, bytes })
    }

    /// The raw bytes (never validated: GOST carries them as they are).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }
}

impl FromStr for Domain {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Domain::new(s.as_bytes()).ok_or(())
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The host of a [`Target`].
// The inline domain is the point: handing a target over never allocates.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetHost {
    /// An IP address.
    Ip(IpAddr),
    /// A domain name to resolve. Never empty: an empty domain (GOST's `:port`) becomes
    /// [`TargetHost::Local`].
    Domain(Domain),
    /// No host: GOST's `:port`, meaning this machine (dial) or every interface (listen).
    Local,
}

/// An owned host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host part.
    pub host: TargetHost,
    /// Port.
    pub port: u16,
}

impl Target {
    /// Copies an address; an empty domain becomes [`TargetHost::Local`].
    pub fn from_address(addr: &Address<'_>) -> Target {
        let host = match addr.host {
            Host::V4(v4) => TargetHost::Ip(IpAddr::V4(v4)),
            Host::V6(v6) => TargetHost::Ip(IpAddr::V6(v6)),
            Host::Domain([]) => TargetHost::Local,
            // `Address` domains come from a one-byte length, so they always fit.
            Host::Domain(d) => Domain::new(d).map_or(TargetHost::Local, TargetHost::Domain),
        };
        Target {
            host,
            port: addr.port,
        }
    }

    /// The address this target encodes as (`Local` as the empty domain, as GOST sends it).
    pub fn as_address(&self) -> Address<'_> {
        let host = match &self.host {
            TargetHost::Ip(IpAddr::V4(v4)) => Host::V4(*v4),
            TargetHost::Ip(IpAddr::V6(v6)) => Host::V6(*v6),
            TargetHost::Domain(d) => Host::Domain(d.as_bytes()),
            TargetHost::Local => Host::Domain(b""),
        };
        Address {
            host,
            port: self.port,
        }
    }

    /// The socket address to dial when no name resolution is needed: IP hosts as they are,
    /// `Local` as the IPv4 loopback (Go dials the local system for an empty host).
    pub fn dial_addr(&self) -> Option<SocketAddr> {
        match self.host {
            TargetHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            TargetHost::Local => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)),
            TargetHost::Domain(_) => None,
        }
    }

    /// The socket address to listen on: `Local` (and the unspecified address) as every IPv4
    /// interface, `None` for a domain (GOST's listen fails on an unresolvable name).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        match self.host {
            TargetHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            TargetHost::Local => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                self.port,
            )),
            TargetHost::Domain(_) => None,
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::from_address(&Address::from_socket(addr))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_address().fmt(f)
    }
}
