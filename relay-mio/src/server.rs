//! One accepted relay connection: the [`Server`] handshake, the dial it asks for, then the data
//! phase it announces (a TCP tunnel or a length-framed UDP tunnel).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpStream, UdpSocket};
use relay_core::Decoded;
use relay_core::buf::RecvBuf;
use relay_core::mux::Role;
use relay_core::route::RoutePlan;
use relay_core::select::NodeSet;
use relay_core::server::{
    DialError, DialRequest, DialTarget, Established, ListenRequest, Server, ServerOutput, Transport,
};
use relay_core::target::{Target, TargetHost};
use relay_core::udp::{LengthFrame, MAX_DATAGRAM};

use crate::bind::{DatagramLink, Listened, TcpBind, UdpBind, listen};
use crate::dial::{ConnectState, connect_state, tcp_connect, udp_connect};
use crate::driver::{Ctx, Next};
use crate::forward::queue_requests;
use crate::mux::MuxLink;
use crate::pipe::{Half, PREFIX_ROOM, Pipe, READ_BUDGET, Strip};

enum Dialed {
    Tcp(TcpStream),
    Udp(UdpSocket),
    /// Connected to the first node of the service's chain.
    Chain(TcpStream),
}

enum State {
    /// Reading the request.
    Handshake,
    /// A name lookup is running on a helper thread.
    Resolving,
    /// A TCP connect is in progress; `rest` are the addresses still to try (last first).
    Connecting {
        stream: TcpStream,
        rest: Vec<SocketAddr>,
    },
    /// The dial succeeded; the core is about to announce the data phase.
    Dialed(Dialed),
    /// TCP tunnel (or any tunnel through a chain).
    Tcp(TcpStream),
    /// UDP tunnel.
    Udp(Box<UdpTunnel>),
    /// TCP BIND: an smux session with streams from the bound listener.
    TcpBind(Box<TcpBind>),
    /// UDP BIND: datagrams between the connection and the bound socket.
    UdpBind(Box<UdpBind>),
    /// Writing what the core sent before its close.
    Closing,
    /// Finished.
    Closed,
}

/// The state of one accepted relay connection.
pub(crate) struct RelayConn {
    peer: SocketAddr,
    svc: usize,
    client: TcpStream,
    server: Server,
    /// `up` holds the request while it arrives, then the payload behind it; `down` the
    /// responses, then the target's bytes.
    pipe: Pipe,
    state: State,
    network: Transport,
    target: Option<Target>,
    pick: Option<usize>,
    /// The route through the service's chain, if it has one.
    route: Option<RoutePlan>,
    /// The hop responses to strip from the chain's downstream.
    strip: Option<Strip>,
    started: Instant,
    open: bool,
    /// What a BIND listens with, until its data phase.
    listened: Option<Listened>,
}

impl RelayConn {
    pub(crate) fn new(
        peer: SocketAddr,
        svc: usize,
        client: TcpStream,
        server: Server,
        now: Instant,
    ) -> RelayConn {
        RelayConn {
            peer,
            svc,
            client,
            server,
            pipe: Pipe::new(),
            state: State::Handshake,
            network: Transport::Tcp,
            target: None,
            pick: None,
            route: None,
            strip: None,
            started: now,
            open: false,
            listened: None,
        }
    }

    /// The service it belongs to.
    pub(crate) fn svc(&self) -> usize {
        self.svc
    }

    /// True while the request is still being read (the connection may be evicted then).
    pub(crate) fn in_handshake(&self) -> bool {
        matches!(self.state, State::Handshake)
    }

    /// True when the last drive stopped on a read budget: drive it again on the next turn.
    pub(crate) fn wants_more(&self) -> bool {
        match &self.state {
            State::Tcp(_) => self.pipe.yielded(),
            State::Udp(t) => t.yielded,
            State::TcpBind(b) => b.yielded,
            State::UdpBind(b) => b.yielded,
            _ => false,
        }
    }

    /// When the core (or a BIND session's keepalive) wants [`RelayConn::on_timeout`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::TcpBind(b) => b.deadline(),
            _ => self.server.poll_timeout(),
        }
    }

    /// Applies the core's deadlines, then continues.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if let State::TcpBind(b) = &mut self.state {
            b.on_timeout(ctx.now);
            return self.drive(ctx);
        }
        self.server.handle_timeout(ctx.now);
        self.run_outputs(ctx);
        self.drive(ctx)
    }

    /// The name lookup of a `Resolving` connection finished.
    pub(crate) fn on_resolved(
        &mut self,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut Ctx<'_>,
    ) -> Next {
        if matches!(self.state, State::Resolving) {
            match result {
                Ok(addrs) => self.connect(addrs, ctx),
                Err(e) => self.dial_failed(e, ctx),
            }
        }
        self.drive(ctx)
    }

    /// Does everything that can be done without blocking.
    pub(crate) fn drive(&mut self, ctx: &mut Ctx<'_>) -> Next {
        while self.step(ctx) {}
        if matches!(self.state, State::Closed) {
            Next::Close
        } else {
            Next::Keep
        }
    }

    /// One step; true when the state changed and another step may progress.
    fn step(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let result = match &mut self.state {
            State::Handshake => return self.read_request(ctx),
            State::Resolving | State::Dialed(_) | State::Closed => return false,
            State::Connecting { .. } => return self.check_connect(ctx),
            State::Tcp(target) => {
                let was_done = self.strip.as_ref().is_none_or(Strip::is_done);
                let result = self
                    .pipe
                    .drive(&mut self.client, target, self.strip.as_mut());
                if !was_done && self.strip.as_ref().is_some_and(Strip::is_done) {
                    if let (Some(plan), Some(chain)) = (&self.route, ctx.chain.as_deref_mut()) {
                        chain.report(plan, 0, true, ctx.now);
                    }
                }
                result.map_err(|e| e.to_string())
            }
            State::Udp(tunnel) => tunnel
                .drive(&mut self.client, &mut self.pipe.down)
                .map_err(|e| e.to_string()),
            State::TcpBind(b) => Ok(b.drive(&mut self.client, ctx.registry, ctx.token, ctx.now)),
            State::UdpBind(b) => b.drive(&mut self.client).map_err(|e| e.to_string()),
            State::Closing => match self.pipe.down.flush(&mut self.client) {
                Ok(false) => Ok(false),
                Ok(true) | Err(_) => Ok(true),
            },
        };
        match result {
            Ok(false) => false,
            Ok(true) => {
                self.state = State::Closed;
                true
            }
            Err(e) => {
                log::debug!("relay {}: {e}", self.peer);
                self.state = State::Closed;
                true
            }
        }
    }

    fn read_request(&mut self, ctx: &mut Ctx<'_>) -> bool {
        loop {
            match self.pipe.up.read_from(&mut self.client) {
                Ok(None) => return false,
                Ok(Some(0)) | Err(_) => self.server.handle_eof(),
                Ok(Some(_)) => {
                    let used = self.server.handle_input(self.pipe.up.pending(), ctx.now);
                    self.pipe.up.consume(used);
                }
            }
            self.run_outputs(ctx);
            if !matches!(self.state, State::Handshake) {
                return true;
            }
            if self.pipe.up.eof {
                // Unreachable with a well-behaved core; never spin on a closed stream.
                self.state = State::Closed;
                return true;
            }
        }
    }

    fn run_outputs(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(out) = self.server.poll_output() {
            match out {
                ServerOutput::Transmit(bytes) => self.pipe.down.push(bytes.as_slice(), false),
                ServerOutput::Dial(req) => self.start_dial(req, ctx),
                ServerOutput::Listen(req) => self.start_listen(req, ctx),
                ServerOutput::Established(est) => self.establish(est, ctx),
                ServerOutput::Close(reason) => {
                    log::info!("relay {}: closed during handshake: {reason:?}", self.peer);
                    self.state = State::Closing;
                }
            }
        }
    }

    fn start_dial(&mut self, req: DialRequest, ctx: &mut Ctx<'_>) {
        self.network = req.network;
        let target = match req.target {
            DialTarget::Requested(t) => t,
            DialTarget::Forward => {
                let picked = ctx
                    .forward
                    .as_deref_mut()
                    .and_then(|set: &mut NodeSet<Target>| set.pick(ctx.now).map(|(i, t)| (i, *t)));
                match picked {
                    Some((i, t)) => {
                        self.pick = Some(i);
                        t
                    }
                    None => return self.server.dial_done(Err(DialError::NoTarget), ctx.now),
                }
            }
        };
        self.target = Some(target);
        if ctx.chain.is_some() {
            return self.dial_chain(target, ctx);
        }
        if let Some(addr) = target.dial_addr() {
            return self.connect(vec![addr], ctx);
        }
        match (&target.host, target.port) {
            (TargetHost::Domain(d), port) if d.as_str().is_some() => {
                let name = d.as_str().unwrap_or_default().to_string();
                ctx.resolver.resolve(ctx.key, ctx.serial, name, port);
                self.state = State::Resolving;
            }
            _ => self.dial_failed(io::ErrorKind::InvalidInput.into(), ctx),
        }
    }

    /// Connects to the first node of the service's chain (the hops resolve the target).
    fn dial_chain(&mut self, target: Target, ctx: &mut Ctx<'_>) {
        let planned = match ctx.chain.as_deref_mut() {
            Some(chain) => chain.plan(ctx.now, self.network, &target.as_address()),
            None => return,
        };
        match planned {
            Ok(plan) => {
                let connected = tcp_connect(&mut vec![plan.first_hop], ctx.registry, ctx.token);
                self.route = Some(plan);
                match connected {
                    Ok(stream) => {
                        self.state = State::Connecting {
                            stream,
                            rest: Vec::new(),
                        }
                    }
                    Err(e) => self.dial_failed(e, ctx),
                }
            }
            Err(e) => self.dial_failed(io::Error::other(e), ctx),
        }
    }

    /// Connects to `addrs`, in order, skipping those the service's policy refuses.
    fn connect(&mut self, mut addrs: Vec<SocketAddr>, ctx: &mut Ctx<'_>) {
        let config = self.server.config();
        addrs.retain(|a| config.allows_resolved(a.ip()));
        if addrs.is_empty() {
            self.report(false, ctx);
            self.state = State::Resolving;
            self.server.dial_done(Err(DialError::Forbidden), ctx.now);
            return self.run_outputs(ctx);
        }
        addrs.reverse();
        match self.network {
            Transport::Udp => match addrs.last() {
                Some(&addr) => match udp_connect(addr, ctx.registry, ctx.token) {
                    Ok(s) => self.dial_ok(Dialed::Udp(s), ctx),
                    Err(e) => self.dial_failed(e, ctx),
                },
                None => self.dial_failed(io::ErrorKind::NotFound.into(), ctx),
            },
            Transport::Tcp => match tcp_connect(&mut addrs, ctx.registry, ctx.token) {
                Ok(stream) => {
                    self.state = State::Connecting {
                        stream,
                        rest: addrs,
                    }
                }
                Err(e) => self.dial_failed(e, ctx),
            },
        }
    }

    fn check_connect(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Connecting { stream, rest } = &mut self.state else {
            return false;
        };
        match connect_state(stream) {
            ConnectState::Pending => false,
            ConnectState::Done => {
                let _ = stream.set_nodelay(true);
                if let State::Connecting { stream, .. } =
                    std::mem::replace(&mut self.state, State::Resolving)
                {
                    let dialed = if self.route.is_some() {
                        Dialed::Chain(stream)
                    } else {
                        Dialed::Tcp(stream)
                    };
                    self.dial_ok(dialed, ctx);
                }
                true
            }
            ConnectState::Failed(e) => {
                let _ = ctx.registry.deregister(stream);
                let mut rest = std::mem::take(rest);
                match tcp_connect(&mut rest, ctx.registry, ctx.token) {
                    Ok(stream) => self.state = State::Connecting { stream, rest },
                    Err(_) => self.dial_failed(e, ctx),
                }
                true
            }
        }
    }

    fn report(&mut self, ok: bool, ctx: &mut Ctx<'_>) {
        if let (Some(i), Some(set)) = (self.pick, ctx.forward.as_deref_mut()) {
            set.report(i, ok, ctx.now);
        }
    }

    fn dial_ok(&mut self, dialed: Dialed, ctx: &mut Ctx<'_>) {
        self.report(true, ctx);
        self.state = State::Dialed(dialed);
        self.server.dial_done(Ok(()), ctx.now);
        self.run_outputs(ctx);
    }

    fn dial_failed(&mut self, e: io::Error, ctx: &mut Ctx<'_>) {
        if let Some(t) = &self.target {
            log::debug!("relay {}: dial {t}: {e}", self.peer);
        }
        self.report(false, ctx);
        if let (Some(plan), Some(chain)) = (self.route.take(), ctx.chain.as_deref_mut()) {
            chain.report(&plan, 0, false, ctx.now);
        }
        self.state = State::Resolving;
        self.server.dial_done(Err(DialError::Failed), ctx.now);
        self.run_outputs(ctx);
    }

    /// Opens what a BIND asks for (domain listen addresses are not resolved on the loop).
    fn start_listen(&mut self, req: ListenRequest, ctx: &mut Ctx<'_>) {
        let result = match req.addr.listen_addr() {
            Some(addr) => listen(addr, req.network == Transport::Udp, ctx.registry, ctx.token),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "domain listen addresses are not resolved by the mio runtime",
            )),
        };
        match result {
            Ok((l, bound)) => {
                self.listened = Some(l);
                self.server.listen_done(Ok(bound));
            }
            Err(e) => {
                log::info!("relay {}: bind {}: {e}", self.peer, req.addr);
                self.server.listen_done(Err(()));
            }
        }
    }

    fn establish_bind(&mut self, est: Established, ctx: &mut Ctx<'_>) {
        self.state = State::Closing;
        let head = self.pipe.up.pending().to_vec();
        let prefix = self.pipe.down.pending().to_vec();
        self.pipe.up.consume(usize::MAX);
        self.pipe.down.consume(usize::MAX);
        match (est, self.listened.take()) {
            (Established::TcpBind { bound }, Some(Listened::Tcp(listener))) => {
                match MuxLink::new(Role::Client, ctx.bind.mux, ctx.now, &head, &prefix) {
                    Ok(link) => {
                        log::info!("relay {}: tcp bind on {bound}", self.peer);
                        self.state = State::TcpBind(Box::new(TcpBind::new(link, listener, bound)));
                    }
                    Err(e) => log::info!("relay {}: tcp bind: {e}", self.peer),
                }
            }
            (Established::UdpBind { bound }, Some(Listened::Udp(socket))) => {
                log::info!("relay {}: udp bind on {bound}", self.peer);
                let link = DatagramLink::new(ctx.bind.udp_buffer_size, &head, &prefix);
                self.state = State::UdpBind(Box::new(UdpBind::new(link, socket, bound)));
            }
            (est, _) => log::info!("relay {}: {est:?} without its listener", self.peer),
        }
    }

    fn establish(&mut self, est: Established, ctx: &mut Ctx<'_>) {
        if matches!(
            est,
            Established::TcpBind { .. } | Established::UdpBind { .. }
        ) {
            return self.establish_bind(est, ctx);
        }
        let dialed = match std::mem::replace(&mut self.state, State::Closing) {
            State::Dialed(d) => d,
            _ => return,
        };
        let head = self.pipe.up.pending().len() as u64;
        match (est, dialed) {
            (Established::Tcp { downstream_prefix }, Dialed::Tcp(t)) => {
                self.pipe.down.push(downstream_prefix.as_slice(), true);
                self.pipe.up.bytes = head;
                self.pipe.down.bytes = 0;
                self.state = State::Tcp(t);
            }
            (Established::Udp { downstream_prefix }, Dialed::Udp(s)) => {
                let tunnel =
                    UdpTunnel::new(s, self.pipe.up.pending(), downstream_prefix.as_slice());
                self.pipe.up.consume(usize::MAX);
                self.state = State::Udp(Box::new(tunnel));
            }
            (
                Established::Tcp { downstream_prefix } | Established::Udp { downstream_prefix },
                Dialed::Chain(stream),
            ) => {
                let Some(plan) = self.route.as_mut() else {
                    return;
                };
                let mut clients = std::mem::take(&mut plan.clients);
                let head_bytes = self.pipe.up.pending();
                let requests: usize = clients.iter().map(|c| c.request().len()).sum();
                let mut up = Half::with_room(PREFIX_ROOM + requests);
                // Lazy hop requests wait for payload; payload that came with the relay request
                // lets them go at once.
                queue_requests(&mut clients, &mut up, head_bytes.is_empty());
                up.push(head_bytes, false);
                up.bytes = head;
                self.pipe.up = up;
                self.pipe.down.push(downstream_prefix.as_slice(), true);
                self.pipe.down.bytes = 0;
                self.strip = Some(Strip::new(clients));
                self.state = State::Tcp(stream);
            }
            (other, _) => {
                log::info!("relay {}: data phase {other:?} is not served", self.peer);
                return;
            }
        }
        self.open = true;
        log::info!(
            "relay {} -> {} ({:?}): open",
            self.peer,
            self.target_name(),
            self.network
        );
    }

    fn target_name(&self) -> String {
        self.target
            .map_or_else(|| "forward target".to_string(), |t| t.to_string())
    }

    /// Deregisters everything and logs the tunnel's end.
    pub(crate) fn close(mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.client);
        match &mut self.listened {
            Some(Listened::Tcp(l)) => {
                let _ = registry.deregister(l);
            }
            Some(Listened::Udp(s)) => {
                let _ = registry.deregister(s);
            }
            None => {}
        }
        let (up, down) = match &mut self.state {
            State::Connecting { stream, .. } | State::Tcp(stream) => {
                let _ = registry.deregister(stream);
                (self.pipe.up.bytes, self.pipe.down.bytes)
            }
            State::Dialed(Dialed::Tcp(stream) | Dialed::Chain(stream)) => {
                let _ = registry.deregister(stream);
                (0, 0)
            }
            State::Dialed(Dialed::Udp(s)) => {
                let _ = registry.deregister(s);
                (0, 0)
            }
            State::Udp(t) => {
                let _ = registry.deregister(&mut t.socket);
                (t.up, t.down)
            }
            State::TcpBind(b) => {
                b.close(registry);
                log::info!(
                    "relay {}: tcp bind {} ended ({}), {} connection(s), {:?}",
                    self.peer,
                    b.bound,
                    b.reason.unwrap_or(relay_core::mux::MuxError::Closed),
                    b.accepted,
                    self.started.elapsed()
                );
                return;
            }
            State::UdpBind(b) => {
                b.close(registry);
                log::info!(
                    "relay {}: udp bind {} ended: {:?}, {:?}",
                    self.peer,
                    b.bound,
                    b.stats(),
                    self.started.elapsed()
                );
                return;
            }
            _ => (self.pipe.up.bytes, self.pipe.down.bytes),
        };
        if self.open {
            log::info!(
                "relay {} -> {} ({:?}): closed, up {up} B, down {down} B, {:?}",
                self.peer,
                self.target_name(),
                self.network,
                self.started.elapsed()
            );
        }
    }
}

/// The data phase of a UDP CONNECT: length-framed datagrams on the client stream, plain ones
/// on a connected UDP socket. Buffers are allocated once, here; when the client stream is not
/// writable, the socket is not read (datagrams wait in, or are dropped by, the kernel).
pub(crate) struct UdpTunnel {
    socket: UdpSocket,
    rb: RecvBuf,
    out: Box<[u8]>,
    frame_at: usize,
    start: usize,
    end: usize,
    eof: bool,
    up: u64,
    down: u64,
    yielded: bool,
}

impl UdpTunnel {
    fn new(socket: UdpSocket, head: &[u8], prefix: &[u8]) -> UdpTunnel {
        let mut rb = RecvBuf::with_capacity(LengthFrame::HEADER_LEN + MAX_DATAGRAM);
        rb.extend(head);
        let mut out = vec![0u8; prefix.len() + LengthFrame::HEADER_LEN + MAX_DATAGRAM];
        out[..prefix.len()].copy_from_slice(prefix);
        UdpTunnel {
            socket,
            rb,
            out: out.into_boxed_slice(),
            frame_at: prefix.len(),
            start: 0,
            end: 0,
            eof: false,
            up: 0,
            down: 0,
            yielded: false,
        }
    }

    /// Moves datagrams both ways; `Ok(true)` once the client's stream has ended (the tunnel
    /// lives as long as it, as in GOST). `before` holds bytes to write to the client first.
    fn drive(&mut self, client: &mut TcpStream, before: &mut Half) -> io::Result<bool> {
        self.yielded = false;
        if !before.flush(client)? {
            return Ok(false);
        }
        let mut reads = 0;
        'up: loop {
            while let Ok(Decoded::Complete { value, consumed }) =
                LengthFrame::decode(self.rb.data())
            {
                match self.socket.send(value) {
                    Ok(_) => {
                        self.up += value.len() as u64;
                        self.rb.consume(consumed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'up,
                    Err(e) => return Err(e),
                }
            }
            if self.eof {
                return Ok(true);
            }
            if reads == READ_BUDGET {
                self.yielded = true;
                break;
            }
            reads += 1;
            match client.read(self.rb.unfilled()) {
                Ok(0) => self.eof = true,
                Ok(n) => self.rb.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => return Err(e),
            }
        }
        let mut reads = 0;
        loop {
            while self.start < self.end {
                match client.write(&self.out[self.start..self.end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            if reads == READ_BUDGET {
                self.yielded = true;
                return Ok(false);
            }
            reads += 1;
            let at = self.frame_at;
            let payload = at + LengthFrame::HEADER_LEN;
            match self.socket.recv(&mut self.out[payload..]) {
                Ok(n) => {
                    let header = LengthFrame::header(n)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    self.out[at..payload].copy_from_slice(&header);
                    self.start = 0;
                    self.end = payload + n;
                    self.frame_at = 0;
                    self.down += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}
