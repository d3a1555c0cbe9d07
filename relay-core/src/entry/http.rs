//! HTTP proxy requests: `CONNECT host:port` tunnels and absolute-URI requests
//! (`GET http://host[:port]/path`) to forward, plus the canned responses a proxy sends.
//!
//! [`HttpRequest::decode`] returns `Partial` until the whole header block (ending in an empty
//! line) is in the buffer, and refuses a header block over [`MAX_HEAD`] bytes. It borrows
//! everything from the buffer; a forwarded request's head is rewritten to origin form, without
//! its `Proxy-*` headers, by [`HttpRequest::forward_head`] — as slices of the original, nothing is
//! allocated.
//!
//! ```
//! use relay_core::entry::http::{HttpRequest, HttpStatus, RequestKind};
//! use relay_core::{Address, Decoded};
//!
//! let bytes = b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\n\r\nBODY";
//! let Decoded::Complete { value: req, consumed } = HttpRequest::decode(bytes).unwrap() else { unreachable!() };
//! assert_eq!(&bytes[consumed..], b"BODY");
//! assert_eq!(req.target, Address::parse("example.com:80").unwrap());
//! assert_eq!(req.kind, RequestKind::Forward { path: b"/a?b=1" });
//! let mut out = [0u8; 128];
//! let n = req.write_forward_head(&mut out).unwrap();
//! assert_eq!(&out[..n], b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
//!
//! assert_eq!(HttpStatus::ConnectionEstablished.response(), b"HTTP/1.1 200 Connection established\r\n\r\n");
//! ```

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::addr::{Address, Host};
use crate::codec::{BufferTooSmall, Decoded, ensure_room};
use crate::wire::Status;

/// Largest header block accepted (request line, headers and the empty line), in bytes.
pub const MAX_HEAD: usize = 8192;

/// Port used when the request target names none (GOST adds `:80` to every port-less target,
/// CONNECT included).
pub const DEFAULT_PORT: u16 = 80;

/// The realm in the `Proxy-Authenticate` challenge.
pub const REALM: &str = "relay";

/// Why an HTTP proxy request was refused. [`HttpError::status`] is the response to send before
/// closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// No end of the header block within [`MAX_HEAD`] bytes (431).
    HeadTooLarge,
    /// The request line is not `METHOD SP TARGET SP VERSION` (400).
    BadRequestLine,
    /// The version is not `HTTP/1.0` or `HTTP/1.1` (400).
    BadVersion,
    /// A header line without a `name:` or a folded (continuation) line (400).
    BadHeader,
    /// The target's host or port cannot be parsed, or carries user info (400).
    BadTarget,
    /// An absolute URI whose scheme is not `http` (400).
    UnsupportedScheme,
    /// An origin-form request (`GET /path`): addressed to this server, not to a proxy (400).
    NotProxyRequest,
    /// A `Proxy-Authorization: Basic` value that is not base64 of `user:pass` (400).
    BadCredentials,
}

impl HttpError {
    /// The response to send for this error.
    pub fn status(self) -> HttpStatus {
        match self {
            HttpError::HeadTooLarge => HttpStatus::HeadersTooLarge,
            _ => HttpStatus::BadRequest,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::HeadTooLarge => "HTTP header block too large",
            HttpError::BadRequestLine => "malformed HTTP request line",
            HttpError::BadVersion => "unsupported HTTP version",
            HttpError::BadHeader => "malformed HTTP header",
            HttpError::BadTarget => "malformed request target",
            HttpError::UnsupportedScheme => "request target scheme is not http",
            HttpError::NotProxyRequest => "origin-form request sent to a proxy",
            HttpError::BadCredentials => "malformed Proxy-Authorization",
        })
    }
}

impl std::error::Error for HttpError {}

/// The responses this proxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpStatus {
    /// `200 Connection established` (CONNECT succeeded; the tunnel starts right after).
    ConnectionEstablished,
    /// `400 Bad Request`.
    BadRequest,
    /// `403 Forbidden`.
    Forbidden,
    /// `407 Proxy Authentication Required`, with a Basic challenge for realm [`REALM`].
    ProxyAuthRequired,
    /// `431 Request Header Fields Too Large`.
    HeadersTooLarge,
    /// `502 Bad Gateway`.
    BadGateway,
    /// `503 Service Unavailable`.
    ServiceUnavailable,
    /// `504 Gateway Timeout`.
    GatewayTimeout,
}

impl HttpStatus {
    /// The numeric status code.
    pub fn code(self) -> u16 {
        match self {
            HttpStatus::ConnectionEstablished => 200,
            HttpStatus::BadRequest => 400,
            HttpStatus::Forbidden => 403,
            HttpStatus::ProxyAuthRequired => 407,
            HttpStatus::HeadersTooLarge => 431,
            HttpStatus::BadGateway => 502,
            HttpStatus::ServiceUnavailable => 503,
            HttpStatus::GatewayTimeout => 504,
        }
    }

    /// The whole response (status line, headers, empty line). Every response but 200 has an
    /// empty body and `Connection: close`: close after sending it.
    ///
    /// ```
    /// use relay_core::entry::http::HttpStatus;
    /// let r = HttpStatus::ProxyAuthRequired.response();
    /// assert!(r.starts_with(b"HTTP/1.1 407 Proxy Authentication Required\r\n"));
    /// assert!(r.windows(39).any(|w| w == b"Proxy-Authenticate: Basic realm=\"relay\""));
    /// ```
    pub fn response(self) -> &'static [u8] {
        match self {
            HttpStatus::ConnectionEstablished => b"HTTP/1.1 200 Connection established\r\n\r\n",
            HttpStatus::BadRequest => {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::Forbidden => {
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::ProxyAuthRequired => {
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"relay\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::HeadersTooLarge => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::BadGateway => {
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::ServiceUnavailable => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpStatus::GatewayTimeout => {
                b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
        }
    }

    /// The response for a relay status from the next hop.
    ///
    /// | relay status | HTTP |
    /// |---|---|
    /// | 0 OK | 200 |
    /// | 3 Forbidden | 403 |
    /// | 4 Timeout | 504 |
    /// | 5 Service Unavailable | 503 |
    /// | 1, 2, 6, 7, 8 and anything else | 502 (the next hop failed or refused this node) |
    ///
    /// GOST's HTTP handler answers 503 to every failure of its chain.
    ///
    /// ```
    /// use relay_core::entry::http::HttpStatus;
    /// use relay_core::wire::Status;
    /// assert_eq!(HttpStatus::from_status(Status::NETWORK_UNREACHABLE), HttpStatus::BadGateway);
    /// ```
    pub fn from_status(status: Status) -> HttpStatus {
        match status {
            Status::OK => HttpStatus::ConnectionEstablished,
            Status::FORBIDDEN => HttpStatus::Forbidden,
            Status::TIMEOUT => HttpStatus::GatewayTimeout,
            Status::SERVICE_UNAVAILABLE => HttpStatus::ServiceUnavailable,
            _ => HttpStatus::BadGateway,
        }
    }
}

/// What kind of proxy request this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind<'a> {
    /// `CONNECT host:port`: answer [`HttpStatus::ConnectionEstablished`], then tunnel.
    Connect,
    /// A request to forward to the target. `path` is the origin-form target taken from the
    /// absolute URI (`/path?query`), possibly empty or starting with `?` (a `/` is put in front
    /// when the head is rewritten).
    Forward {
        /// Path and query of the absolute URI.
        path: &'a [u8],
    },
}

/// A proxy request's head, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// The method (`CONNECT`, `GET`, …).
    pub method: &'a [u8],
    /// Where to connect.
    pub target: Address<'a>,
    /// Tunnel or forward.
    pub kind: RequestKind<'a>,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'a [u8],
    /// The header lines, each with its line ending, without the final empty line.
    headers: &'a [u8],
}

/// A user name and password from a `Proxy-Authorization: Basic` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPass<'a> {
    /// The user name: the decoded value up to its first `:`.
    pub user: &'a [u8],
    /// The password: everything after that `:` (may itself contain `:`).
    pub pass: &'a [u8],
}

/// One header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name, as sent.
    pub name: &'a [u8],
    /// Field value, surrounding whitespace removed.
    pub value: &'a [u8],
    /// The whole line, line ending included.
    pub line: &'a [u8],
}

/// Iterator over the header fields of an [`HttpRequest`].
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = split_line(self.rest);
        self.rest = rest;
        // Lines were checked by the decoder: every one has a colon.
        let text = trim_eol(line);
        let colon = text.iter().position(|&b| b == b':').unwrap_or(text.len());
        Some(Header {
            name: &text[..colon],
            value: trim(text.get(colon + 1..).unwrap_or(&[])),
            line,
        })
    }
}

/// Splits off the first line, line ending included; all of `buf` when it has none.
fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => buf.split_at(i + 1),
        None => (buf, &[]),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Length of the header block (through the empty line), if it ends within [`MAX_HEAD`] bytes.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_HEAD) {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// Parses `host[:port]` (host may be a bracketed IPv6 literal), borrowing a domain.
fn parse_authority(auth: &[u8]) -> Result<Address<'_>, HttpError> {
    let (host, port) = if let Some(rest) = auth.strip_prefix(b"[") {
        let close = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(HttpError::BadTarget)?;
        let text = core::str::from_utf8(&rest[..close]).map_err(|_| HttpError::BadTarget)?;
        let v6: Ipv6Addr = text.parse().map_err(|_| HttpError::BadTarget)?;
        let port = match &rest[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(HttpError::BadTarget),
        };
        (Host::V6(v6), port)
    } else {
        let (host, port) = match auth.iter().rposition(|&b| b == b':') {
            Some(i) => (&auth[..i], Some(&auth[i + 1..])),
            None => (auth, None),
        };
        if host.is_empty()
            || host.len() > 255
            || host
                .iter()
                .any(|&b| b <= b' ' || b"/?#@[]:\x7f".contains(&b))
        {
            return Err(HttpError::BadTarget);
        }
        let v4 = core::str::from_utf8(host)
            .ok()
            .and_then(|t| t.parse::<Ipv4Addr>().ok());
        (v4.map_or(Host::Domain(host), Host::V4), port)
    };
    let port = match port {
        None | Some([]) => DEFAULT_PORT,
        Some(p) if p.len() <= 5 && p.iter().all(u8::is_ascii_digit) => core::str::from_utf8(p)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(HttpError::BadTarget)?,
        Some(_) => return Err(HttpError::BadTarget),
    };
    Ok(Address { host, port })
}

/// Splits an absolute `http://` URI into its authority and its path-and-query.
fn split_absolute(uri: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadTarget)?;
    if !uri[..colon].eq_ignore_ascii_case(b"http") {
        return Err(HttpError::UnsupportedScheme);
    }
    let rest = uri[colon + 1..]
        .strip_prefix(b"//")
        .ok_or(HttpError::BadTarget)?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let path = &rest[end..];
    let path = &path[..path.iter().position(|&b| b == b'#').unwrap_or(path.len())];
    Ok((&rest[..end], path))
}

impl<'a> HttpRequest<'a> {
    /// Decodes a proxy request head at the front of `buf`; `consumed` covers the head through
    /// its empty line, and what follows (a request body, or tunnel data) is left to the caller.
    ///
    /// Lines may end in CRLF or a bare LF. `Partial` until the empty line is in; an error as soon
    /// as [`MAX_HEAD`] bytes hold none.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<HttpRequest<'a>>, HttpError> {
        let Some(end) = head_end(buf) else {
            if buf.len() >= MAX_HEAD {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(Decoded::Partial {
                needed: buf.len() + 1,
            });
        };
        let head = &buf[..end];
        let (request_line, rest) = split_line(head);
        if rest.is_empty() {
            // The first line is the empty line.
            return Err(HttpError::BadRequestLine);
        }
        let (headers, _empty_line) = rest.split_at(rest.len() - split_last_line_len(rest));
        let mut parts = trim_eol(request_line).split(|&b| b == b' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HttpError::BadRequestLine);
        };
        if !is_token(method) || uri.is_empty() {
            return Err(HttpError::BadRequestLine);
        }
        if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
            return Err(HttpError::BadVersion);
        }
        let mut lines = headers;
        while !lines.is_empty() {
            let (line, rest) = split_line(lines);
            lines = rest;
            let text = trim_eol(line);
            let colon = text
                .iter()
                .position(|&b| b == b':')
                .ok_or(HttpError::BadHeader)?;
            if !is_token(&text[..colon]) {
                return Err(HttpError::BadHeader);
            }
        }
        let (target, kind) = if method == b"CONNECT" {
            (parse_authority(uri)?, RequestKind::Connect)
        } else if uri.starts_with(b"/") || uri == b"*" {
            return Err(HttpError::NotProxyRequest);
        } else {
            let (authority, path) = split_absolute(uri)?;
            if authority.contains(&b'@') {
                return Err(HttpError::BadTarget);
            }
            (parse_authority(authority)?, RequestKind::Forward { path })
        };
        Ok(Decoded::Complete {
            value: HttpRequest {
                method,
                target,
                kind,
                version,
                headers,
            },
            consumed: end,
        })
    }

    /// The header fields, in order.
    pub fn headers(&self) -> Headers<'a> {
        Headers { rest: self.headers }
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The base64 token of a `Proxy-Authorization: Basic …` header; `None` without one or for
    /// another scheme.
    pub fn proxy_basic_token(&self) -> Option<&'a [u8]> {
        let value = self.header(b"proxy-authorization")?;
        let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
        scheme.eq_ignore_ascii_case(b"basic").then(|| trim(token))
    }

    /// The user and password of a `Proxy-Authorization: Basic` header, decoded into `scratch`
    /// (`MAX_HEAD * 3 / 4` bytes always suffice). `Ok(None)` without such a header; check the
    /// pair with an [`Authenticator`](crate::auth::Authenticator) and answer
    /// [`HttpStatus::ProxyAuthRequired`] when it fails.
    ///
    /// ```
    /// use relay_core::entry::http::{HttpRequest, UserPass};
    /// let bytes = b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYTpzcw==\r\n\r\n";
    /// let (req, _) = HttpRequest::decode(bytes).unwrap().complete().unwrap();
    /// let mut scratch = [0u8; 64];
    /// assert_eq!(req.proxy_credentials(&mut scratch).unwrap(), Some(UserPass { user: b"user", pass: b"pa:ss" }));
    /// ```
    pub fn proxy_credentials<'o>(
        &self,
        scratch: &'o mut [u8],
    ) -> Result<Option<UserPass<'o>>, HttpError> {
        let Some(token) = self.proxy_basic_token() else {
            return Ok(None);
        };
        let n = base64_decode(token, scratch).ok_or(HttpError::BadCredentials)?;
        let pair = &scratch[..n];
        let colon = pair
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::BadCredentials)?;
        Ok(Some(UserPass {
            user: &pair[..colon],
            pass: &pair[colon + 1..],
        }))
    }

    /// The head to send to the origin for a [`RequestKind::Forward`] request, as slices to write
    /// in order: the request line in origin form (`GET /path HTTP/1.1`), every header except
    /// `Proxy-*` ones, and the empty line. Empty for CONNECT.
    pub fn forward_head(&self) -> ForwardHead<'a> {
        ForwardHead {
            request: *self,
            stage: if matches!(self.kind, RequestKind::Forward { .. }) {
                0
            } else {
                9
            },
            headers: self.headers(),
        }
    }

    /// Total length of [`HttpRequest::forward_head`].
    pub fn forward_head_len(&self) -> usize {
        self.forward_head().map(<[u8]>::len).sum()
    }

    /// Writes [`HttpRequest::forward_head`] into `out`, returning the length written. Nothing
    /// is written on error.
    pub fn write_forward_head(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.forward_head_len();
        ensure_room(out, len)?;
        let mut at = 0;
        for part in self.forward_head() {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(len)
    }
}

/// Length of the last line of `buf` (the empty line ending a head: 1 or 2 bytes).
fn split_last_line_len(buf: &[u8]) -> usize {
    if buf.ends_with(b"\r\n") { 2 } else { 1 }
}

/// Iterator over the slices of a rewritten head; see [`HttpRequest::forward_head`].
#[derive(Debug, Clone)]
pub struct ForwardHead<'a> {
    request: HttpRequest<'a>,
    stage: u8,
    headers: Headers<'a>,
}

impl<'a> Iterator for ForwardHead<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let path = match self.request.kind {
            RequestKind::Forward { path } => path,
            RequestKind::Connect => &[],
        };
        loop {
            let stage = self.stage;
            self.stage += 1;
            let part: &'a [u8] = match stage {
                0 => self.request.method,
                1 => b" ",
                2 if path.first() != Some(&b'/') => b"/",
                2 => continue,
                3 if !path.is_empty() => path,
                3 => continue,
                4 => b" ",
                5 => self.request.version,
                6 => b"\r\n",
                7 => match self.headers.find(|h| {
                    !h.name
                        .get(..6)
                        .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
                }) {
                    Some(h) => {
                        self.stage = 7;
                        h.line
                    }
                    None => continue,
                },
                8 => b"\r\n",
                _ => {
                    self.stage = 9;
                    return None;
                }
            };
            return Some(part);
        }
    }
}

/// Decodes standard base64 (RFC 4648 alphabet, `=` padding optional) into `out`, returning the
/// decoded length; `None` for a character outside the alphabet, a misplaced `=`, a dangling
/// single character, or `out` too small.
///
/// ```
/// use relay_core::entry::http::base64_decode;
/// let mut out = [0u8; 16];
/// assert_eq!(base64_decode(b"dTpw", &mut out), Some(3));
/// assert_eq!(&out[..3], b"u:p");
/// assert_eq!(base64_decode(b"YQ", &mut out), Some(1));
/// assert_eq!(base64_decode(b"Y!==", &mut out), None);
/// ```
pub fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let data = match input {
        [rest @ .., b'=', b'='] if input.len() % 4 == 0 => rest,
        [rest @ .., b'='] if input.len() % 4 == 0 => rest,
        _ => input,
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let needed = data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1);
    if out.len() < needed {
        return None;
    }
    let mut at = 0;
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * (4 - chunk.len()) as u32;
        let bytes = acc.to_be_bytes();
        let n = chunk.len() - 1;
        out[at..at + n].copy_from_slice(&bytes[1..1 + n]);
        at += n;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<HttpRequest<'_>, HttpError> {
        HttpRequest::decode(bytes).map(|d| d.complete().expect("complete").0)
    }

    #[test]
    fn connect_variants() {
        let r =
            decode(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").unwrap();
        assert_eq!(r.kind, RequestKind::Connect);
        assert_eq!(r.target, Address::parse("example.com:443").unwrap());
        assert_eq!(r.forward_head().count(), 0);
        let r = decode(b"CONNECT [::1]:22 HTTP/1.0\n\n").unwrap();
        assert_eq!(r.target, Address::parse("[::1]:22").unwrap());
        let r = decode(b"CONNECT 10.1.2.3 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.target, Address::parse("10.1.2.3:80").unwrap());
        assert_eq!(
            decode(b"CONNECT h:99999 HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadTarget)
        );
        assert_eq!(
            decode(b"CONNECT ::1:22 HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadTarget)
        );
        assert_eq!(
            decode(b"CONNECT :22 HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadTarget)
        );
        assert_eq!(
            decode(b"CONNECT [::1 HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadTarget)
        );
    }

    #[test]
    fn forward_rewrites_head() {
        let bytes = b"POST HTTP://[2001:db8::1]:8080?x HTTP/1.0\r\nproxy-authorization: Basic eDp5\r\nContent-Length: 2\r\nPROXY-CONNECTION: close\r\nX: y\r\n\r\nhi";
        let (r, n) = HttpRequest::decode(bytes).unwrap().complete().unwrap();
        assert_eq!(&bytes[n..], b"hi");
        assert_eq!(r.target, Address::parse("[2001:db8::1]:8080").unwrap());
        assert_eq!(r.kind, RequestKind::Forward { path: b"?x" });
        let mut out = [0u8; 256];
        let m = r.write_forward_head(&mut out).unwrap();
        assert_eq!(
            &out[..m],
            b"POST /?x HTTP/1.0\r\nContent-Length: 2\r\nX: y\r\n\r\n"
        );
        assert_eq!(m, r.forward_head_len());
        assert_eq!(
            r.write_forward_head(&mut out[..m - 1]),
            Err(BufferTooSmall { needed: m })
        );
        let mut scratch = [0u8; 8];
        assert_eq!(
            r.proxy_credentials(&mut scratch).unwrap(),
            Some(UserPass {
                user: b"x",
                pass: b"y"
            })
        );
        assert_eq!(r.header(b"x"), Some(&b"y"[..]));

        let r = decode(b"GET http://h HTTP/1.1\r\n\r\n").unwrap();
        let mut out = [0u8; 64];
        let m = r.write_forward_head(&mut out).unwrap();
        assert_eq!(&out[..m], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.target, Address::parse("h:80").unwrap());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            decode(b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(HttpError::NotProxyRequest)
        );
        assert_eq!(
            decode(b"GET https://h/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::UnsupportedScheme)
        );
        assert_eq!(
            decode(b"GET http://u:p@h/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadTarget)
        );
        assert_eq!(
            decode(b"GET http://h/ HTTP/2\r\n\r\n"),
            Err(HttpError::BadVersion)
        );
        assert_eq!(
            decode(b"GET  http://h/ HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequestLine)
        );
        assert_eq!(decode(b"\r\n"), Err(HttpError::BadRequestLine));
        assert_eq!(
            decode(b"GET http://h/ HTTP/1.1\r\nNoColon\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        assert_eq!(
            decode(b"GET http://h/ HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        let big = vec![b'A'; MAX_HEAD];
        assert_eq!(HttpRequest::decode(&big), Err(HttpError::HeadTooLarge));
        assert_eq!(
            HttpRequest::decode(&big[..MAX_HEAD - 1]).unwrap(),
            Decoded::Partial { needed: MAX_HEAD }
        );
        let r = decode(b"CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic !!!!\r\n\r\n").unwrap();
        assert_eq!(
            r.proxy_credentials(&mut [0u8; 8]),
            Err(HttpError::BadCredentials)
        );
        let r = decode(b"CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Digest abc\r\n\r\n").unwrap();
        assert_eq!(r.proxy_credentials(&mut [0u8; 8]), Ok(None));
    }

    #[test]
    fn head_at_exact_limit() {
        let mut head = b"CONNECT h:1 HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEAD - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), MAX_HEAD);
        assert!(decode(&head).is_ok());
    }

    #[test]
    fn status_mapping() {
        assert_eq!(HttpStatus::from_status(Status::OK).code(), 200);
        assert_eq!(HttpStatus::from_status(Status::TIMEOUT).code(), 504);
        assert_eq!(
            HttpStatus::from_status(Status::SERVICE_UNAVAILABLE).code(),
            503
        );
        assert_eq!(HttpStatus::from_status(Status::FORBIDDEN).code(), 403);
        assert_eq!(HttpStatus::from_status(Status(200)).code(), 502);
        for s in [
            HttpStatus::ConnectionEstablished,
            HttpStatus::BadRequest,
            HttpStatus::Forbidden,
            HttpStatus::ProxyAuthRequired,
            HttpStatus::HeadersTooLarge,
            HttpStatus::BadGateway,
            HttpStatus::ServiceUnavailable,
            HttpStatus::GatewayTimeout,
        ] {
            let r = s.response();
            assert!(r.starts_with(format!("HTTP/1.1 {} ", s.code()).as_bytes()));
            assert!(r.ends_with(b"\r\n\r\n"));
        }
    }

    fn base64_encode(data: &[u8]) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for chunk in data.chunks(3) {
            let mut b = [0u8; 3];
            b[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize]);
                } else {
                    out.push(b'=');
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..100), strip in any::<bool>()) {
            let mut enc = base64_encode(&data);
            if strip {
                while enc.last() == Some(&b'=') {
                    enc.pop();
                }
            }
            let mut out = vec![0u8; data.len()];
            prop_assert_eq!(base64_decode(&enc, &mut out), Some(data.len()));
            prop_assert_eq!(out, data);
        }

        #[test]
        fn any_prefix_is_partial(host in "[a-z0-9.-]{1,30}", port in any::<u16>(), path in "(/[a-z0-9]{0,8}){0,3}", connect in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
            let line = if connect {
                format!("CONNECT {host}:{port} HTTP/1.1\r\n")
            } else {
                format!("GET http://{host}:{port}{path} HTTP/1.1\r\n")
            };
            let mut bytes = line.into_bytes();
            bytes.extend_from_slice(b"Host: x\r\nProxy-Authorization: Basic dTpw\r\n\r\n");
            let head_len = bytes.len();
            bytes.extend_from_slice(&tail);
            let whole = HttpRequest::decode(&bytes);
            let ok = whole.unwrap().complete().unwrap();
            prop_assert_eq!(ok.1, head_len);
            prop_assert_eq!(ok.0.target.port, port);
            for cut in 0..head_len {
                prop_assert_eq!(HttpRequest::decode(&bytes[..cut]).unwrap(), Decoded::Partial { needed: cut + 1 });
            }
            prop_assert_eq!(HttpRequest::decode(&bytes[..head_len]), whole);
            let mut out = vec![0u8; ok.0.forward_head_len()];
            ok.0.write_forward_head(&mut out).unwrap();
            prop_assert!(!out.windows(6).any(|w| w.eq_ignore_ascii_case(b"proxy-")));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Decoded::Complete { value, consumed }) = HttpRequest::decode(&bytes) {
                prop_assert!(consumed <= bytes.len());
                let _ = value.headers().count();
                let mut out = vec![0u8; value.forward_head_len()];
                let _ = value.write_forward_head(&mut out).unwrap();
                let _ = value.proxy_credentials(&mut [0u8; 256]);
            }
        }

        #[test]
        fn arbitrary_heads_never_panic(line in "[ -~]{0,60}", headers in proptest::collection::vec("[ -~]{0,30}", 0..5)) {
            let mut bytes = line.into_bytes();
            bytes.extend_from_slice(b"\r\n");
            for h in headers {
                bytes.extend_from_slice(h.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            if let Ok(Decoded::Complete { value, .. }) = HttpRequest::decode(&bytes) {
                let mut out = vec![0u8; value.forward_head_len()];
                let _ = value.write_forward_head(&mut out).unwrap();
                let _ = value.proxy_credentials(&mut [0u8; 256]);
            }
        }
    }
}
