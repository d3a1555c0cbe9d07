//! BIND (remote port forwarding) after the handshake: the decisions an adapter needs while a BIND
//! is up.
//!
//! The handshake itself is in [`crate::server`] (`ServerOutput::Listen`, `Established::TcpBind` /
//! `UdpBind`) and [`crate::client`] ([`crate::client::Client::bind`]). What follows it:
//!
//! | item | what it decides |
//! |---|---|
//! | [`preamble`] / [`decode_preamble`] | the relay response (OK + Addr(peer)) that starts every TCP BIND stream |
//! | [`Rebind`] | when a remote-forwarding client binds again after a failure or a dead session |
//! | [`UdpRelay`] | the UDP BIND data phase: size cap, truncation and drop counters, what a send error does |
//!
//! Deliberate differences from GOST are listed in the repository's `docs/bind.md`.
//!
//! ```
//! use std::net::SocketAddr;
//! use relay_core::bind::{decode_preamble, preamble};
//! use relay_core::Decoded;
//!
//! // The relay server opens a stream per accepted connection and starts it with this header.
//! let peer: SocketAddr = "203.0.113.7:51234".parse().unwrap();
//! let header = preamble(peer);
//! assert_eq!(header.as_slice(), &[1, 0, 0, 10, 2, 0, 7, 1, 203, 0, 113, 7, 0xc8, 0x22]);
//!
//! // The client reads it back; it may arrive split, and payload may follow it.
//! let mut stream_bytes = header.as_slice().to_vec();
//! stream_bytes.extend_from_slice(b"ping");
//! assert!(matches!(decode_preamble(&stream_bytes[..5]), Ok(Decoded::Partial { .. })));
//! let Decoded::Complete { value, consumed } = decode_preamble(&stream_bytes).unwrap() else { panic!() };
//! assert_eq!(value.peer.unwrap().to_string(), "203.0.113.7:51234");
//! assert_eq!(&stream_bytes[consumed..], b"ping");
//! ```

use core::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::addr::Address;
use crate::codec::Decoded;
use crate::server::ResponseBytes;
use crate::target::Target;
use crate::udp::{Datagram, GOST_UDP_BUFFER, MAX_DATAGRAM};
use crate::wire::{DecodeError, Feature, Response, Status};

/// The header a relay server writes as the first bytes of every TCP BIND stream: a relay
/// response with status OK and one Addr feature holding the remote peer's address (IPv4 and
/// IPv4-mapped peers as ATYP 1, IPv6 as ATYP 4), as GOST writes it in one piece.
pub fn preamble(peer: SocketAddr) -> ResponseBytes {
    ResponseBytes::of(Status::OK, Some(Address::from_socket(peer)))
}

/// What a TCP BIND stream's header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// The remote peer that connected to the bound port (first Addr feature). `None` when the
    /// header carries no address, which GOST's client also tolerates.
    pub peer: Option<Target>,
    /// An optional second Addr feature: a "host" hint. The relay server never sends one (GOST's
    /// tunnel handler, which shares the client code, does).
    pub host: Option<Target>,
}

/// Why a TCP BIND stream's header was not usable. It concerns that stream only: the adapter
/// closes the stream and keeps the session (GOST drops the whole session and rebinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreambleError {
    /// The header's status is not OK.
    Rejected(Status),
    /// The header could not be decoded.
    Malformed(DecodeError),
    /// The stream ended before the header was whole.
    Truncated,
}

impl fmt::Display for PreambleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreambleError::Rejected(s) => write!(f, "stream header with status {s}"),
            PreambleError::Malformed(e) => write!(f, "bad stream header: {e}"),
            PreambleError::Truncated => f.write_str("stream ended inside its header"),
        }
    }
}

impl std::error::Error for PreambleError {}

/// Decodes a TCP BIND stream's header from the stream's first bytes. `Partial` until it is whole
/// (it may arrive split across frames); then the header and how many bytes it took; what follows
/// is the remote peer's data. An error concerns this stream only.
pub fn decode_preamble(buf: &[u8]) -> Result<Decoded<Preamble>, PreambleError> {
    let (response, consumed) = match Response::decode(buf).map_err(PreambleError::Malformed)? {
        Decoded::Partial { needed } => return Ok(Decoded::Partial { needed }),
        Decoded::Complete { value, consumed } => (value, consumed),
    };
    if response.status != Status::OK {
        return Err(PreambleError::Rejected(response.status));
    }
    let mut addrs = response.features.iter().filter_map(|f| match f {
        Feature::Addr(a) => Some(Target::from_address(&a)),
        _ => None,
    });
    let peer = addrs.next();
    let host = addrs.next();
    Ok(Decoded::Complete {
        value: Preamble { peer, host },
        consumed,
    })
}

/// The stream ended after `buf` without a whole header: [`PreambleError::Truncated`], or the
/// error `buf` already shows.
pub fn preamble_eof(buf: &[u8]) -> PreambleError {
    match decode_preamble(buf) {
        Err(e) => e,
        Ok(_) => PreambleError::Truncated,
    }
}

/// Settings of the [`Rebind`] backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebindConfig {
    /// Delay after the first failure, and after a session that lived (GOST: 1 s).
    pub initial: Duration,
    /// Largest delay (30 s; GOST: 5 s).
    pub max: Duration,
    /// A session that lived at least this long resets the backoff when it ends (10 s, one
    /// keepalive interval); a shorter one counts as a failed attempt.
    pub stable_after: Duration,
}

impl Default for RebindConfig {
    fn default() -> Self {
        RebindConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// When a remote-forwarding client (rtcp / rudp) binds again: capped exponential backoff.
///
/// Failed binds wait `initial`, then twice as long each time, up to `max` (1, 2, 4, 8, 16, 30,
/// 30 … s by default). An established session that dies after living `stable_after` resets the
/// backoff (next wait `initial`, as GOST's 1 s); one that dies sooner continues it, so a server
/// that accepts and immediately drops does not get hammered. Time is an argument.
///
/// ```
/// use std::time::{Duration, Instant};
/// use relay_core::bind::{Rebind, RebindConfig};
///
/// let mut r = Rebind::new(RebindConfig::default());
/// let t0 = Instant::now();
/// let s = Duration::from_secs;
/// assert_eq!([r.bind_failed(t0), r.bind_failed(t0), r.bind_failed(t0)], [s(1), s(2), s(4)]);
/// r.established(t0);
/// assert_eq!(r.session_ended(t0 + s(60)), s(1)); // it lived: start over
/// ```
#[derive(Debug, Clone)]
pub struct Rebind {
    config: RebindConfig,
    next: Duration,
    since: Option<Instant>,
}

impl Rebind {
    /// A policy with nothing failed yet.
    pub fn new(config: RebindConfig) -> Rebind {
        Rebind {
            next: config.initial,
            config,
            since: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RebindConfig {
        &self.config
    }

    fn take(&mut self) -> Duration {
        let delay = self.next.min(self.config.max);
        self.next = delay.saturating_mul(2).min(self.config.max);
        delay
    }

    /// A bind attempt failed at `now` (connect, refusal, no response): how long to wait before
    /// the next.
    pub fn bind_failed(&mut self, _now: Instant) -> Duration {
        self.since = None;
        self.take()
    }

    /// The server accepted the bind at `now`.
    pub fn established(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// The established session ended at `now`: how long to wait before binding again.
    pub fn session_ended(&mut self, now: Instant) -> Duration {
        let lived = self.since.take().map(|t| now.saturating_duration_since(t));
        if lived.is_some_and(|d| d >= self.config.stable_after) {
            self.next = self.config.initial;
        }
        self.take()
    }
}

/// What a failed send of a datagram was about, as far as the adapter can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// A domain destination did not resolve.
    Unresolvable,
    /// The destination refused or is unreachable (ICMP errors reported on the socket), or the
    /// datagram was too large for the path.
    Destination,
    /// The socket itself failed.
    Socket,
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendVerdict {
    /// Drop this datagram, keep the association.
    Drop,
    /// End the association (close the relay connection and the socket).
    End,
}

/// Counters of a [`UdpRelay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpRelayStats {
    /// Datagrams framed onto the stream.
    pub to_stream: u64,
    /// Datagrams taken from the stream to send.
    pub from_stream: u64,
    /// Datagrams cut to the size cap (either direction).
    pub truncated: u64,
    /// Bytes cut off by truncation.
    pub truncated_bytes: u64,
    /// Empty datagrams not framed (GOST's reader would lose the framing on them).
    pub dropped_empty: u64,
    /// Datagrams dropped because their send failed.
    pub dropped_send: u64,
}

/// The data-phase policy of UDP BIND / association, for either end of the stream.
///
/// * Datagrams are capped at the configured buffer size (`udpBufferSize`, GOST 4096 on the
///   server, 8192 on the rudp client); longer ones are cut, and **counted** (GOST cuts silently).
/// * Empty datagrams are never framed onto the stream (GOST's reader desynchronises on RSV 0):
///   dropped and counted. An empty datagram read *from* the stream is passed on.
/// * A failed send ends the association only when the socket itself failed; an unresolvable
///   domain or a destination error drops that datagram (GOST ends the association on any send
///   error).
///
/// ```
/// use relay_core::bind::UdpRelay;
/// use relay_core::udp::Datagram;
/// use relay_core::Address;
///
/// let mut relay = UdpRelay::new(4);
/// let addr = Address::parse("127.0.0.1:53").unwrap();
/// let d = relay.to_stream(Datagram { addr, payload: b"abcdef" }).unwrap();
/// assert_eq!(d.payload, b"abcd");
/// assert_eq!(relay.to_stream(Datagram { addr, payload: b"" }), None);
/// assert_eq!((relay.stats().truncated, relay.stats().dropped_empty), (1, 1));
/// ```
#[derive(Debug, Clone)]
pub struct UdpRelay {
    max: usize,
    stats: UdpRelayStats,
}

impl Default for UdpRelay {
    fn default() -> Self {
        UdpRelay::new(GOST_UDP_BUFFER)
    }
}

impl UdpRelay {
    /// A relay capping datagrams at `buffer_size` bytes (clamped to 1…65535).
    pub fn new(buffer_size: usize) -> UdpRelay {
        UdpRelay {
            max: buffer_size.clamp(1, MAX_DATAGRAM),
            stats: UdpRelayStats::default(),
        }
    }

    /// The size cap.
    pub fn max_payload(&self) -> usize {
        self.max
    }

    /// The counters so far.
    pub fn stats(&self) -> UdpRelayStats {
        self.stats
    }

    fn cap<'a>(&mut self, d: Datagram<'a>) -> Datagram<'a> {
        let (d, cut) = d.truncated(self.max);
        if cut > 0 {
            self.stats.truncated += 1;
            self.stats.truncated_bytes += cut as u64;
        }
        d
    }

    /// A datagram received on a UDP socket, to be framed onto the stream (server: from the
    /// bound socket, address = the peer; client: a reply from the local target, address = the
    /// peer it answers). `None`: drop it.
    pub fn to_stream<'a>(&mut self, d: Datagram<'a>) -> Option<Datagram<'a>> {
        if d.payload.is_empty() {
            self.stats.dropped_empty += 1;
            return None;
        }
        self.stats.to_stream += 1;
        Some(self.cap(d))
    }

    /// A datagram decoded from the stream, to be sent on a UDP socket (server: from the bound
    /// socket to its address; client: to the local target on behalf of its address).
    pub fn from_stream<'a>(&mut self, d: Datagram<'a>) -> Datagram<'a> {
        self.stats.from_stream += 1;
        self.cap(d)
    }

    /// A send of a datagram from the stream failed.
    pub fn send_failed(&mut self, failure: SendFailure) -> SendVerdict {
        match failure {
            SendFailure::Unresolvable | SendFailure::Destination => {
                self.stats.dropped_send += 1;
                SendVerdict::Drop
            }
            SendFailure::Socket => SendVerdict::End,
        }
    }
}

/// Whether a relay server in TCP BIND accepts a stream the client opened. It does not: GOST
/// closes such streams at once (FIN), and so should the adapter.
pub const SERVER_ACCEPTS_CLIENT_STREAMS: bool = false;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_bad_status_and_truncation() {
        assert_eq!(
            decode_preamble(&[1, 3, 0, 0]),
            Err(PreambleError::Rejected(Status::FORBIDDEN))
        );
        assert_eq!(preamble_eof(&[1, 0, 0]), PreambleError::Truncated);
        assert!(matches!(
            decode_preamble(&[2, 0, 0, 0]),
            Err(PreambleError::Malformed(_))
        ));
        let Ok(Decoded::Complete { value, .. }) = decode_preamble(&[1, 0, 0, 0]) else {
            panic!()
        };
        assert_eq!(value.peer, None);
    }

    #[test]
    fn udp_relay_send_errors() {
        let mut r = UdpRelay::new(0);
        assert_eq!(r.max_payload(), 1);
        assert_eq!(r.send_failed(SendFailure::Unresolvable), SendVerdict::Drop);
        assert_eq!(r.send_failed(SendFailure::Destination), SendVerdict::Drop);
        assert_eq!(r.send_failed(SendFailure::Socket), SendVerdict::End);
        assert_eq!(r.stats().dropped_send, 2);
    }
}

/// What a remote-forwarding (rtcp/rudp) client reports as it goes, on either runtime (for logs,
/// metrics and tests).
// `Target` holds its domain inline (no allocation per event), as elsewhere.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteEvent {
    /// The server accepted a bind and listens at `bound` (the address in its response).
    Bound {
        /// The server's listening address, if it said.
        bound: Option<Target>,
    },
    /// A bind attempt failed; the next is in `retry_in`.
    BindFailed {
        /// What went wrong (`ConnectionRefused`: the server refused the bind).
        error: std::io::ErrorKind,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An established bind ended; the next attempt is in `retry_in`.
    SessionEnded {
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}
