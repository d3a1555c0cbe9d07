//! Entry points: the client-facing proxy handshakes a relay client node accepts before it
//! relays (SOCKS5, SOCKS4/4a, HTTP), and the first-byte sniffing of GOST's `auto` handler.
//!
//! | module | what it does |
//! |---|---|
//! | [`socks5`] | SOCKS5 server handshake (RFC 1928/1929): CONNECT and UDP ASSOCIATE |
//! | [`socks4`] | SOCKS4/4a CONNECT request and replies |
//! | [`http`] | HTTP proxy requests (CONNECT and absolute-URI) and canned responses |
//!
//! ```
//! use relay_core::entry::{detect, Protocol};
//! assert_eq!(detect(&[0x05, 0x01, 0x00]), Some(Protocol::Socks5));
//! assert_eq!(detect(b"CONNECT example.com:443 HTTP/1.1\r\n"), Some(Protocol::Http));
//! assert_eq!(detect(&[]), None);
//! ```

pub mod http;
pub mod socks4;
pub mod socks5;

/// The protocol a client speaks, guessed from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// First byte 0x05.
    Socks5,
    /// First byte 0x04.
    Socks4,
    /// First byte an ASCII upper-case letter (an HTTP method: `CONNECT`, `GET`, …).
    Http,
    /// Anything else. GOST's `auto` handler hands these to its HTTP handler too.
    Unknown,
}

/// Guesses the protocol from the first bytes a client sent; `None` until there is one byte.
///
/// ```
/// use relay_core::entry::{detect, Protocol};
/// assert_eq!(detect(&[0x04]), Some(Protocol::Socks4));
/// assert_eq!(detect(b"\x16\x03\x01"), Some(Protocol::Unknown)); // a TLS ClientHello
/// ```
pub fn detect(first_bytes: &[u8]) -> Option<Protocol> {
    Some(match *first_bytes.first()? {
        0x05 => Protocol::Socks5,
        0x04 => Protocol::Socks4,
        b'A'..=b'Z' => Protocol::Http,
        _ => Protocol::Unknown,
    })
}

/// What an entry handshake answers once its upstream connection is known. The replies come
/// from here so that adapters never pick a reply code.
///
/// ```
/// use relay_core::entry::Answer;
/// assert_eq!(Answer::Socks5.success(), &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(Answer::Socks4.failure(), &[0, 0x5b, 0, 0, 0, 0, 0, 0]);
/// assert!(Answer::HttpConnect.failure().starts_with(b"HTTP/1.1 502"));
/// assert!(Answer::HttpForward.success().is_empty()); // the origin's own response follows
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A SOCKS5 CONNECT.
    Socks5,
    /// A SOCKS4/4a CONNECT.
    Socks4,
    /// An HTTP `CONNECT`.
    HttpConnect,
    /// An HTTP request with an absolute URI, forwarded to the origin.
    HttpForward,
}

impl Answer {
    /// The reply once connected (SOCKS5 with the unspecified bound address `0.0.0.0:0`).
    pub fn success(self) -> &'static [u8] {
        match self {
            Answer::Socks5 => &[socks5::VERSION, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            Answer::Socks4 => &[0, 0x5a, 0, 0, 0, 0, 0, 0],
            Answer::HttpConnect => http::HttpStatus::ConnectionEstablished.response(),
            Answer::HttpForward => &[],
        }
    }

    /// The reply when the upstream connection failed (host unreachable, rejected, bad gateway).
    pub fn failure(self) -> &'static [u8] {
        match self {
            Answer::Socks5 => &[socks5::VERSION, 4, 0, 1, 0, 0, 0, 0, 0, 0],
            Answer::Socks4 => &[0, 0x5b, 0, 0, 0, 0, 0, 0],
            Answer::HttpConnect | Answer::HttpForward => http::HttpStatus::BadGateway.response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_byte() {
        for b in 0..=255u8 {
            let p = detect(&[b, 0]).unwrap();
            match b {
                5 => assert_eq!(p, Protocol::Socks5),
                4 => assert_eq!(p, Protocol::Socks4),
                b'A'..=b'Z' => assert_eq!(p, Protocol::Http),
                _ => assert_eq!(p, Protocol::Unknown),
            }
        }
    }
}
