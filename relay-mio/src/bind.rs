//! Server-side BIND data phases: TCP BIND (an smux session in which the relay server is the
//! smux client, one stream per connection accepted on the bound listener) and UDP BIND
//! (SOCKS5-style datagram framing between the relay connection and the bound socket).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use relay_core::Address;
use relay_core::Decoded;
use relay_core::bind::{self, SendFailure, SendVerdict, UdpRelay};
use relay_core::buf::RecvBuf;
use relay_core::mux::{MuxConfig, MuxEvent, StreamId};
use relay_core::udp::{Datagram, MAX_DATAGRAM};

use crate::mux::{MuxLink, StreamPipe};
use crate::pipe::READ_BUDGET;

/// Drive passes per turn before a session waits for the next turn.
pub(crate) const PASSES: usize = 16;

/// Settings of the BIND data phases of a relay service.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// Mux settings of TCP BIND sessions (GOST's defaults).
    pub mux: MuxConfig,
    /// UDP BIND: largest datagram relayed each way (GOST `udpBufferSize`, 4096).
    pub udp_buffer_size: usize,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            mux: MuxConfig::default(),
            udp_buffer_size: relay_core::udp::GOST_UDP_BUFFER,
        }
    }
}

/// How a failed UDP send looks to the policy.
pub(crate) fn send_failure(e: &io::Error) -> SendFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::PermissionDenied => SendFailure::Destination,
        // EMSGSIZE has no stable kind.
        _ if e.raw_os_error() == Some(90) => SendFailure::Destination,
        _ => SendFailure::Socket,
    }
}

/// What a BIND listens with, between `Listen` and `Established`.
pub(crate) enum Listened {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Opens what a BIND asks for, registered under `token`; returns it and its address.
pub(crate) fn listen(
    addr: SocketAddr,
    udp: bool,
    registry: &Registry,
    token: Token,
) -> io::Result<(Listened, SocketAddr)> {
    if udp {
        let mut s = UdpSocket::bind(addr)?;
        let bound = s.local_addr()?;
        registry.register(&mut s, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok((Listened::Udp(s), bound))
    } else {
        let mut l = TcpListener::bind(addr)?;
        let bound = l.local_addr()?;
        registry.register(&mut l, token, Interest::READABLE)?;
        Ok((Listened::Tcp(l), bound))
    }
}

/// A TCP BIND after its response: the relay connection is an smux session (this end the smux
/// client); every accepted connection becomes a stream starting with the peer's address.
pub(crate) struct TcpBind {
    link: MuxLink,
    listener: TcpListener,
    streams: HashMap<StreamId, StreamPipe>,
    pub bound: SocketAddr,
    pub accepted: u64,
    pub yielded: bool,
    pub reason: Option<relay_core::mux::MuxError>,
}

impl TcpBind {
    pub(crate) fn new(link: MuxLink, listener: TcpListener, bound: SocketAddr) -> TcpBind {
        TcpBind {
            link,
            listener,
            streams: HashMap::new(),
            bound,
            accepted: 0,
            yielded: false,
            reason: None,
        }
    }

    /// The keepalive deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.link.session.poll_timeout()
    }

    /// Applies the keepalive timers.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        self.link.session.handle_timeout(now);
    }

    /// Moves everything as far as it goes; `true` once the session is over.
    pub(crate) fn drive(
        &mut self,
        conn: &mut TcpStream,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> bool {
        self.yielded = false;
        for _ in 0..PASSES {
            let mut progress = self.link.pump_in(conn, &mut self.yielded);
            while let Some(ev) = self.link.session.poll_event() {
                match ev {
                    // Streams the client opens are not served: closed at once, as GOST.
                    MuxEvent::StreamOpened { id } if !bind::SERVER_ACCEPTS_CLIENT_STREAMS => {
                        let _ = self.link.session.stream_close(id);
                    }
                    MuxEvent::SessionClosed { reason } => {
                        self.reason = Some(reason);
                    }
                    _ => {}
                }
            }
            if self.reason.is_some() {
                return true;
            }
            progress |= self.accept(registry, token);
            let session = &mut self.link.session;
            self.streams.retain(|_, p| {
                let d = p.drive(session, now);
                progress |= d.progress;
                if d.done {
                    let (up, down) = p.bytes();
                    log::debug!("tcp bind stream {}: up {up} B, down {down} B", p.id);
                    p.close(registry);
                }
                !d.done
            });
            progress |= self.link.pump_out(conn);
            if !progress {
                return false;
            }
        }
        self.yielded = true;
        false
    }

    fn accept(&mut self, registry: &Registry, token: Token) -> bool {
        let mut progress = false;
        for _ in 0..READ_BUDGET {
            let (mut conn, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("tcp bind {}: accept: {e}", self.bound);
                    return progress;
                }
            };
            progress = true;
            self.accepted += 1;
            let id = match self.link.session.open_stream() {
                Ok(id) => id,
                Err(e) => {
                    log::info!("tcp bind {}: no stream for {peer}: {e}", self.bound);
                    continue;
                }
            };
            let _ = conn.set_nodelay(true);
            if let Err(e) =
                registry.register(&mut conn, token, Interest::READABLE | Interest::WRITABLE)
            {
                log::info!("tcp bind {}: {e}", self.bound);
                let _ = self.link.session.stream_close(id);
                continue;
            }
            let header = bind::preamble(peer);
            self.streams
                .insert(id, StreamPipe::new(id, conn, true, None, header.as_slice()));
        }
        self.yielded = true;
        progress
    }

    /// Deregisters everything (the listener closes when dropped).
    pub(crate) fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.listener);
        for p in self.streams.values_mut() {
            p.close(registry);
        }
    }
}

/// The datagram side of a UDP BIND (server) or an rudp session (client): datagrams framed
/// SOCKS5-style on the relay connection.
pub(crate) struct DatagramLink {
    rb: RecvBuf,
    out: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    /// The size and error policy.
    pub relay: UdpRelay,
    /// The connection ended.
    pub eof: bool,
}

impl DatagramLink {
    /// A link over a relay connection; `head` was read already, `prefix` is to be written
    /// first.
    pub(crate) fn new(buffer_size: usize, head: &[u8], prefix: &[u8]) -> Self {
        let mut rb = RecvBuf::with_capacity(2 + 1 + 262 + MAX_DATAGRAM);
        rb.extend(head);
        let mut out = vec![0u8; (2 + 1 + 262 + MAX_DATAGRAM).max(prefix.len())];
        out[..prefix.len()].copy_from_slice(prefix);
        DatagramLink {
            rb,
            out: out.into_boxed_slice(),
            out_start: 0,
            out_end: prefix.len(),
            relay: UdpRelay::new(buffer_size),
            eof: false,
        }
    }

    /// The next whole datagram from the connection, reading it as needed: `Ok(None)` when none
    /// is whole yet (or the connection ended: see `eof`). Call [`DatagramLink::consume`] after
    /// using it.
    pub(crate) fn next(
        &mut self,
        conn: &mut TcpStream,
    ) -> io::Result<Option<(Datagram<'_>, usize)>> {
        loop {
            // Decoding twice keeps the borrow checker happy; frames are small to parse.
            match Datagram::decode(self.rb.data()) {
                Ok(Decoded::Complete { .. }) => break,
                Ok(Decoded::Partial { .. }) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.eof {
                return Ok(None);
            }
            let space = self.rb.unfilled();
            if space.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "datagram too large",
                ));
            }
            match conn.read(space) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(None);
                }
                Ok(n) => self.rb.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        match Datagram::decode(self.rb.data()) {
            Ok(Decoded::Complete { value, consumed }) => {
                let d = self.relay.from_stream(value);
                Ok(Some((d, consumed)))
            }
            _ => Ok(None),
        }
    }

    /// Drops the datagram [`DatagramLink::next`] returned.
    pub(crate) fn consume(&mut self, n: usize) {
        self.rb.consume(n);
    }

    /// Writes pending framed bytes; `Ok(true)` when none are left.
    pub(crate) fn flush(&mut self, conn: &mut TcpStream) -> io::Result<bool> {
        while self.out_start < self.out_end {
            match conn.write(&self.out[self.out_start..self.out_end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_start += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out_start = 0;
        self.out_end = 0;
        Ok(true)
    }

    /// Frames one datagram for the connection (call only after [`DatagramLink::flush`]
    /// returned `true`); dropped per the policy.
    pub(crate) fn send(&mut self, addr: Address<'_>, payload: &[u8]) {
        let d = Datagram { addr, payload };
        let Some(d) = self.relay.to_stream(d) else {
            return;
        };
        if let Ok(n) = d.encode(&mut self.out) {
            self.out_start = 0;
            self.out_end = n;
        }
    }
}

/// A UDP BIND after its response: datagrams between the relay connection and the socket.
pub(crate) struct UdpBind {
    link: DatagramLink,
    socket: UdpSocket,
    scratch: Box<[u8]>,
    pub bound: SocketAddr,
    pub yielded: bool,
}

impl UdpBind {
    pub(crate) fn new(link: DatagramLink, socket: UdpSocket, bound: SocketAddr) -> UdpBind {
        UdpBind {
            link,
            socket,
            scratch: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            bound,
            yielded: false,
        }
    }

    /// The association's counters.
    pub(crate) fn stats(&self) -> relay_core::bind::UdpRelayStats {
        self.link.relay.stats()
    }

    /// Moves datagrams both ways; `Err` or `Ok(true)` once the association is over.
    pub(crate) fn drive(&mut self, conn: &mut TcpStream) -> io::Result<bool> {
        let scratch = &mut self.scratch;
        self.yielded = false;
        // Client -> socket: the address is the destination.
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                self.yielded = true;
                break;
            }
            budget -= 1;
            let Some((d, used)) = self.link.next(conn)? else {
                if self.link.eof {
                    return Ok(true);
                }
                break;
            };
            let sent = match d.addr.socket_addr() {
                // Domain destinations are not resolved on the loop: dropped.
                None => Err((SendFailure::Unresolvable, io::ErrorKind::NotFound.into())),
                Some(to) => match self.socket.send_to(d.payload, to) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => Err((send_failure(&e), e)),
                },
            };
            self.link.consume(used);
            if let Err((failure, e)) = sent {
                log::debug!("udp bind {}: send: {e}", self.bound);
                if self.link.relay.send_failed(failure) == SendVerdict::End {
                    return Err(e);
                }
            }
        }
        // Socket -> client: the address is the peer.
        let mut budget = READ_BUDGET;
        while self.link.flush(conn)? {
            if budget == 0 {
                self.yielded = true;
                break;
            }
            budget -= 1;
            match self.socket.recv_from(scratch) {
                Ok((n, peer)) => self.link.send(Address::from_socket(peer), &scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors surface here; the socket stays usable.
                Err(e) => log::debug!("udp bind {}: {e}", self.bound),
            }
        }
        Ok(false)
    }

    /// Deregisters the socket.
    pub(crate) fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }
}
