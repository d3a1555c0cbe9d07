//! SOCKS4 and SOCKS4a CONNECT requests, and their two replies.
//!
//! ```text
//! VN(1)=4 | CD(1) | DSTPORT(2, BE) | DSTIP(4) | USERID | 0x00 [| DOMAIN | 0x00 when DSTIP = 0.0.0.x, x ≠ 0]
//! reply: VN(1)=0 | CD(1)=0x5A granted / 0x5B rejected | DSTPORT(2) | DSTIP(4)
//! ```
//!
//! ```
//! use relay_core::entry::socks4::{Socks4Request, encode_reply};
//! use relay_core::{Address, Decoded};
//! // SOCKS4a: CONNECT example.com:80, user "bob".
//! let bytes = b"\x04\x01\x00\x50\x00\x00\x00\x01bob\x00example.com\x00";
//! let Decoded::Complete { value, consumed } = Socks4Request::decode(bytes).unwrap() else { unreachable!() };
//! assert_eq!(consumed, bytes.len());
//! assert_eq!(value.target, Address::parse("example.com:80").unwrap());
//! assert_eq!(value.user_id, b"bob");
//! assert_eq!(encode_reply(true), [0, 0x5A, 0, 0, 0, 0, 0, 0]);
//! ```

use core::fmt;
use std::net::Ipv4Addr;

use crate::addr::{Address, Host};
use crate::codec::Decoded;

/// The SOCKS4 version byte.
pub const VERSION: u8 = 0x04;
/// Command CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// Reply "request granted".
pub const GRANTED: u8 = 0x5A;
/// Reply "request rejected or failed".
pub const REJECTED: u8 = 0x5B;
/// Longest USERID, and longest SOCKS4a domain, accepted (each without its NUL).
pub const MAX_FIELD: usize = 255;

/// A SOCKS4/4a CONNECT request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socks4Request<'a> {
    /// The destination: IPv4, or a domain for SOCKS4a.
    pub target: Address<'a>,
    /// The USERID field (may be empty).
    pub user_id: &'a [u8],
}

/// Why a SOCKS4 request was refused. Answer with [`encode_reply`]`(false)` then close, except
/// after [`Socks4Error::BadVersion`] (close without a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks4Error {
    /// VN is not 4.
    BadVersion,
    /// A command other than CONNECT (BIND is not supported).
    CommandNotSupported(u8),
    /// USERID or domain longer than [`MAX_FIELD`] without a terminating NUL.
    FieldTooLong,
    /// A SOCKS4a request with an empty domain.
    EmptyDomain,
}

impl fmt::Display for Socks4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks4Error::BadVersion => f.write_str("not SOCKS version 4"),
            Socks4Error::CommandNotSupported(c) => {
                write!(f, "SOCKS4 command {c:#04x} not supported")
            }
            Socks4Error::FieldTooLong => f.write_str("SOCKS4 user id or domain too long"),
            Socks4Error::EmptyDomain => f.write_str("SOCKS4a request with an empty domain"),
        }
    }
}

impl std::error::Error for Socks4Error {}

/// Finds a NUL-terminated field at the front of `buf`: `Ok(Some((field, len with NUL)))`,
/// `Ok(None)` when more bytes are needed.
fn nul_field(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Socks4Error> {
    match buf.iter().take(MAX_FIELD + 1).position(|&b| b == 0) {
        Some(i) => Ok(Some((&buf[..i], i + 1))),
        None if buf.len() > MAX_FIELD => Err(Socks4Error::FieldTooLong),
        None => Ok(None),
    }
}

impl<'a> Socks4Request<'a> {
    /// Decodes a request at the front of `buf`. `Partial` until it is whole; bytes after it are
    /// the client's first payload.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Socks4Request<'a>>, Socks4Error> {
        match buf.first() {
            None => return Ok(Decoded::Partial { needed: 9 }),
            Some(&VERSION) => {}
            Some(_) => return Err(Socks4Error::BadVersion),
        }
        match buf.get(1) {
            None | Some(&CMD_CONNECT) => {}
            Some(&c) => return Err(Socks4Error::CommandNotSupported(c)),
        }
        let Some(h) = buf.get(..8) else {
            return Ok(Decoded::Partial { needed: 9 });
        };
        let port = u16::from_be_bytes([h[2], h[3]]);
        let ip = Ipv4Addr::new(h[4], h[5], h[6], h[7]);
        let Some((user_id, ulen)) = nul_field(&buf[8..])? else {
            return Ok(Decoded::Partial {
                needed: buf.len() + 1,
            });
        };
        let mut consumed = 8 + ulen;
        let o = ip.octets();
        let host = if o[..3] == [0, 0, 0] && o[3] != 0 {
            let Some((domain, dlen)) = nul_field(&buf[consumed..])? else {
                return Ok(Decoded::Partial {
                    needed: buf.len() + 1,
                });
            };
            if domain.is_empty() {
                return Err(Socks4Error::EmptyDomain);
            }
            consumed += dlen;
            Host::Domain(domain)
        } else {
            Host::V4(ip)
        };
        Ok(Decoded::Complete {
            value: Socks4Request {
                target: Address { host, port },
                user_id,
            },
            consumed,
        })
    }
}

/// The 8-byte reply: `00 5A` (granted) or `00 5B` (rejected), port and address zero.
pub fn encode_reply(granted: bool) -> [u8; 8] {
    [
        0,
        if granted { GRANTED } else { REJECTED },
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_socks4() {
        let bytes = b"\x04\x01\x01\xbb\x0a\x00\x00\x01\x00rest";
        let (req, n) = Socks4Request::decode(bytes).unwrap().complete().unwrap();
        assert_eq!(n, 9);
        assert_eq!(req.target, Address::parse("10.0.0.1:443").unwrap());
        assert_eq!(req.user_id, b"");
    }

    #[test]
    fn refusals() {
        assert_eq!(Socks4Request::decode(&[5]), Err(Socks4Error::BadVersion));
        assert_eq!(
            Socks4Request::decode(&[4, 2]),
            Err(Socks4Error::CommandNotSupported(2))
        );
        assert_eq!(
            Socks4Request::decode(b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00"),
            Err(Socks4Error::EmptyDomain)
        );
        let mut long = b"\x04\x01\x00\x50\x01\x02\x03\x04".to_vec();
        long.extend_from_slice(&[b'a'; MAX_FIELD + 1]);
        assert_eq!(Socks4Request::decode(&long), Err(Socks4Error::FieldTooLong));
        long.truncate(8 + MAX_FIELD);
        assert!(matches!(
            Socks4Request::decode(&long),
            Ok(Decoded::Partial { .. })
        ));
        assert_eq!(encode_reply(false), [0, 0x5B, 0, 0, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn prefixes_are_partial(user in proptest::collection::vec(1u8..=255, 0..40), domain in proptest::collection::vec(1u8..=255, 1..40), port in any::<u16>()) {
            let mut v = vec![4, 1];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 9]);
            v.extend_from_slice(&user);
            v.push(0);
            v.extend_from_slice(&domain);
            v.push(0);
            let (req, n) = Socks4Request::decode(&v).unwrap().complete().unwrap();
            prop_assert_eq!(n, v.len());
            prop_assert_eq!(req.target, Address { host: Host::Domain(&domain), port });
            for cut in 0..v.len() {
                match Socks4Request::decode(&v[..cut]).unwrap() {
                    Decoded::Partial { needed } => prop_assert!(needed > cut),
                    Decoded::Complete { .. } => prop_assert!(false),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Decoded::Complete { consumed, .. }) = Socks4Request::decode(&bytes) {
                prop_assert!(consumed <= bytes.len());
            }
        }
    }
}
