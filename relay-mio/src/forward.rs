//! Local port forwarding through a relay chain: one TCP connection per accepted local
//! connection ([`FwdConn`]), one UDP CONNECT tunnel per local UDP peer ([`UdpSession`]).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use relay_core::Decoded;
use relay_core::buf::RecvBuf;
use relay_core::client::Client;
use relay_core::route::{Chain, RoutePlan};
use relay_core::target::Target;
use relay_core::udp::{LengthFrame, MAX_DATAGRAM};

use crate::dial::{ConnectState, connect_state, tcp_connect};
use crate::driver::{Ctx, Next};
use crate::pipe::{Half, Pipe, PipeError, READ_BUDGET, Strip};

/// How long a connect to a chain's first node may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Places the hop requests in `up`, in hop order: those that must go out at once are written
/// at once, the first lazy one and every one after it wait for the first payload (held when
/// `hold_lazy`). True when a request waits for payload (a lazy node), false when every request
/// could go out at once.
pub(crate) fn queue_requests(clients: &mut [Client], up: &mut Half, hold_lazy: bool) -> bool {
    let mut lazy = false;
    for c in clients.iter_mut() {
        if !lazy {
            if let Some(req) = c.poll_transmit() {
                up.push(req, false);
                continue;
            }
            lazy = true;
        }
        up.push(c.take_request(), hold_lazy);
    }
    lazy
}

/// Connects to the plan's first node.
fn connect_first(plan: &RoutePlan, ctx: &Ctx<'_>) -> io::Result<TcpStream> {
    tcp_connect(&mut vec![plan.first_hop], ctx.registry, ctx.token)
}

/// One forwarded local TCP connection.
pub(crate) struct FwdConn {
    peer: SocketAddr,
    svc: usize,
    local: TcpStream,
    upstream: TcpStream,
    connected: bool,
    pipe: Pipe,
    strip: Strip,
    plan: RoutePlan,
    target: Target,
    deadline: Option<Instant>,
    started: Instant,
    open: bool,
}

impl FwdConn {
    /// Starts the connect to the first node for `local`, accepted from `peer`.
    pub(crate) fn new(
        peer: SocketAddr,
        svc: usize,
        local: TcpStream,
        mut plan: RoutePlan,
        target: Target,
        ctx: &Ctx<'_>,
    ) -> io::Result<FwdConn> {
        let mut clients = std::mem::take(&mut plan.clients);
        let mut pipe = Pipe::new();
        queue_requests(&mut clients, &mut pipe.up, true);
        let upstream = connect_first(&plan, ctx)?;
        Ok(FwdConn {
            peer,
            svc,
            local,
            upstream,
            connected: false,
            pipe,
            strip: Strip::new(clients),
            plan,
            target,
            deadline: Some(ctx.now + CONNECT_TIMEOUT),
            started: ctx.now,
            open: false,
        })
    }

    /// The service it belongs to.
    pub(crate) fn svc(&self) -> usize {
        self.svc
    }

    /// The local stream, for registration.
    pub(crate) fn local_mut(&mut self) -> &mut TcpStream {
        &mut self.local
    }

    /// True when the last drive stopped on a read budget.
    pub(crate) fn wants_more(&self) -> bool {
        self.connected && self.pipe.yielded()
    }

    /// The connect deadline, while connecting.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Gives up on a connect past its deadline.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        if !self.connected && self.deadline.is_some_and(|d| ctx.now >= d) {
            log::info!(
                "tcp forward {} -> {}: connect to {} timed out",
                self.peer,
                self.target,
                self.plan.first_hop
            );
            chain.report(&self.plan, 0, false, ctx.now);
            return Next::Close;
        }
        self.drive(ctx, chain)
    }

    /// Does everything that can be done without blocking.
    pub(crate) fn drive(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        if !self.connected {
            match connect_state(&self.upstream) {
                ConnectState::Pending => return Next::Keep,
                ConnectState::Failed(e) => {
                    log::info!(
                        "tcp forward {} -> {}: connect to {}: {e}",
                        self.peer,
                        self.target,
                        self.plan.first_hop
                    );
                    chain.report(&self.plan, 0, false, ctx.now);
                    return Next::Close;
                }
                ConnectState::Done => {
                    let _ = self.upstream.set_nodelay(true);
                    self.connected = true;
                    self.deadline = None;
                    self.open = true;
                    log::info!(
                        "tcp forward {} -> {} via {}: open",
                        self.peer,
                        self.target,
                        self.plan.first_hop
                    );
                }
            }
        }
        let was_done = self.strip.is_done();
        let result = self
            .pipe
            .drive(&mut self.local, &mut self.upstream, Some(&mut self.strip));
        if !was_done && self.strip.is_done() {
            chain.report(&self.plan, 0, true, ctx.now);
        }
        match result {
            Ok(false) => Next::Keep,
            Ok(true) => Next::Close,
            Err(e @ PipeError::Refused(..)) => {
                // A refusal is the hop's answer, not a failure of its node: like GOST's lazy
                // connector, only connects to the first node count against the fail filter.
                log::info!("tcp forward {} -> {}: {e}", self.peer, self.target);
                Next::Close
            }
            Err(PipeError::Io(e)) => {
                log::debug!("tcp forward {} -> {}: {e}", self.peer, self.target);
                Next::Close
            }
        }
    }

    /// Deregisters both streams and logs the end.
    pub(crate) fn close(mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.local);
        let _ = registry.deregister(&mut self.upstream);
        if self.open {
            log::info!(
                "tcp forward {} -> {}: closed, up {} B, down {} B, {:?}",
                self.peer,
                self.target,
                self.pipe.up.bytes,
                self.pipe.down.bytes,
                self.started.elapsed()
            );
        }
    }
}

/// One local UDP peer's tunnel: a UDP CONNECT through the chain, datagrams length-framed.
pub(crate) struct UdpSession {
    peer: SocketAddr,
    socket: Arc<UdpSocket>,
    upstream: TcpStream,
    connected: bool,
    up: Half,
    strip: Strip,
    rb: RecvBuf,
    plan: RoutePlan,
    target: Target,
    keepalive: bool,
    ttl: Duration,
    last: Instant,
    started: Instant,
    sent: u64,
    received: u64,
    yielded: bool,
}

impl UdpSession {
    /// Starts the tunnel for `peer`; its datagrams are queued with [`UdpSession::queue`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        peer: SocketAddr,
        socket: Arc<UdpSocket>,
        mut plan: RoutePlan,
        target: Target,
        keepalive: bool,
        ttl: Duration,
        ctx: &Ctx<'_>,
    ) -> io::Result<UdpSession> {
        let mut clients = std::mem::take(&mut plan.clients);
        // The first datagram follows at once: lazy requests go out with it.
        let mut up = Half::new(LengthFrame::HEADER_LEN + MAX_DATAGRAM);
        queue_requests(&mut clients, &mut up, false);
        let upstream = connect_first(&plan, ctx)?;
        log::info!(
            "udp forward {peer} -> {target} via {}: open",
            plan.first_hop
        );
        Ok(UdpSession {
            peer,
            socket,
            upstream,
            connected: false,
            up,
            strip: Strip::new(clients),
            rb: RecvBuf::with_capacity(LengthFrame::HEADER_LEN + MAX_DATAGRAM),
            plan,
            target,
            keepalive,
            ttl,
            last: ctx.now,
            started: ctx.now,
            sent: 0,
            received: 0,
            yielded: false,
        })
    }

    /// Queues one datagram from the peer; dropped when the stream is that far behind.
    pub(crate) fn queue(&mut self, datagram: &[u8], now: Instant) {
        let Ok(header) = LengthFrame::header(datagram.len()) else {
            return;
        };
        if self.up.space() < LengthFrame::HEADER_LEN + datagram.len() {
            log::trace!("udp forward {}: stream full, datagram dropped", self.peer);
            return;
        }
        self.up.push(&header, false);
        self.up.push(datagram, false);
        self.sent += 1;
        self.last = now;
    }

    /// True when the last drive stopped on a read budget.
    pub(crate) fn wants_more(&self) -> bool {
        self.yielded
    }

    /// The idle deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.last + self.ttl)
    }

    /// Ends the session once idle for `ttl`.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        if ctx.now >= self.last + self.ttl {
            return Next::Close;
        }
        self.drive(ctx, chain)
    }

    /// Does everything that can be done without blocking.
    pub(crate) fn drive(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        if !self.connected {
            match connect_state(&self.upstream) {
                ConnectState::Pending => return Next::Keep,
                ConnectState::Failed(e) => {
                    log::info!(
                        "udp forward {} -> {}: connect to {}: {e}",
                        self.peer,
                        self.target,
                        self.plan.first_hop
                    );
                    chain.report(&self.plan, 0, false, ctx.now);
                    return Next::Close;
                }
                ConnectState::Done => {
                    let _ = self.upstream.set_nodelay(true);
                    self.connected = true;
                }
            }
        }
        if let Err(e) = self.up.flush(&mut self.upstream) {
            log::debug!("udp forward {}: {e}", self.peer);
            return Next::Close;
        }
        self.yielded = false;
        let mut reads = 0;
        loop {
            if reads == READ_BUDGET {
                self.yielded = true;
                return Next::Keep;
            }
            reads += 1;
            let n = match self.upstream.read(self.rb.unfilled()) {
                Ok(0) => return Next::Close,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) => {
                    log::debug!("udp forward {}: {e}", self.peer);
                    return Next::Close;
                }
            };
            self.rb.filled(n);
            if !self.strip.is_done() {
                match self.strip.feed(self.rb.data()) {
                    Ok(used) => self.rb.consume(used),
                    Err(e) => {
                        // As for TCP: a refusal does not count against the node.
                        log::info!("udp forward {} -> {}: {e}", self.peer, self.target);
                        return Next::Close;
                    }
                }
                if !self.strip.is_done() {
                    continue;
                }
                chain.report(&self.plan, 0, true, ctx.now);
            }
            while let Ok(Decoded::Complete { value, consumed }) =
                LengthFrame::decode(self.rb.data())
            {
                // A reply the local socket cannot take now is dropped, as UDP would.
                let _ = self.socket.send_to(value, self.peer);
                self.rb.consume(consumed);
                self.received += 1;
                self.last = ctx.now;
                if !self.keepalive {
                    // GOST's default: the session ends with its first reply.
                    return Next::Close;
                }
            }
        }
    }

    /// The peer this session serves.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Deregisters the stream and logs the end.
    pub(crate) fn close(mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.upstream);
        log::info!(
            "udp forward {} -> {}: closed, {} datagrams up, {} down, {:?}",
            self.peer,
            self.target,
            self.sent,
            self.received,
            self.started.elapsed()
        );
    }
}
