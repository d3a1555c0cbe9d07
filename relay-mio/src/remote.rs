//! Remote port forwarding, client side (GOST's `rtcp` / `rudp`): BIND on the relay server at
//! the end of a chain, then carry what arrives there to a local target; bind again after a
//! failure or a dead session, with [`relay_core::bind::Rebind`]'s delays.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use relay_core::Decoded;
use relay_core::bind::{Rebind, RebindConfig, SendVerdict, decode_preamble, preamble_eof};
use relay_core::buf::RecvBuf;
use relay_core::client::{Client, ClientEvent};
use relay_core::mux::{MuxConfig, MuxError, MuxEvent, Role, StreamId};
use relay_core::route::{Chain, RoutePlan};
use relay_core::server::Transport;
use relay_core::target::Target;
use relay_core::udp::MAX_DATAGRAM;

use crate::bind::{DatagramLink, PASSES, send_failure};
use crate::dial::{ConnectState, connect_state, tcp_connect};
use crate::driver::{Ctx, Next};
use crate::forward::queue_requests;
use crate::mux::{MuxLink, StreamPipe};
use crate::pipe::{Half, PREFIX_ROOM, READ_BUDGET};

pub use relay_core::bind::RemoteEvent;

/// Settings of [`crate::EventLoop::add_rtcp`] and [`crate::EventLoop::add_rudp`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Mux settings of TCP BIND sessions (GOST's defaults; both ends must agree).
    pub mux: MuxConfig,
    /// When to bind again.
    pub rebind: RebindConfig,
    /// Deadline of one bind attempt: connecting to the first node and the responses (15 s).
    pub bind_timeout: Duration,
    /// Deadline for connecting to the local target (15 s).
    pub dial_timeout: Duration,
    /// rudp: largest datagram relayed each way (GOST's `readBufferSize`, 8192).
    pub udp_buffer_size: usize,
    /// rudp: a peer's local socket is dropped after this long without traffic (GOST `ttl`, 5 s).
    pub udp_ttl: Duration,
    /// rudp: most remote peers served at once (1024); datagrams from further peers are dropped.
    pub udp_max_peers: usize,
    /// Where to report [`RemoteEvent`]s (ignored once the receiver is gone).
    pub events: Option<Sender<RemoteEvent>>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            mux: MuxConfig::default(),
            rebind: RebindConfig::default(),
            bind_timeout: Duration::from_secs(15),
            dial_timeout: Duration::from_secs(15),
            udp_buffer_size: 8192,
            udp_ttl: Duration::from_secs(5),
            udp_max_peers: 1024,
            events: None,
        }
    }
}

/// One TCP BIND stream on the client: its header first, then a pipe to the local target.
enum RStream {
    Preamble(Vec<u8>),
    Pipe(StreamPipe),
}

struct Peer {
    socket: UdpSocket,
    last: Instant,
}

enum State {
    /// Waiting to bind (at the unit's deadline).
    Idle,
    /// Connecting to the chain's first node.
    Connecting(TcpStream),
    /// Requests written (or being written), reading the responses.
    Handshake {
        stream: TcpStream,
        resp: RecvBuf,
        next: usize,
    },
    /// rtcp: the smux session (this end the smux server).
    Tcp {
        stream: TcpStream,
        link: Box<MuxLink>,
        streams: HashMap<StreamId, RStream>,
    },
    /// rudp: datagrams with one local socket per remote peer.
    Udp {
        stream: TcpStream,
        link: Box<DatagramLink>,
        peers: HashMap<Target, Peer>,
        scratch: Box<[u8]>,
    },
}

/// One remote-forwarding service: it binds, serves, and binds again, forever.
pub(crate) struct RemoteConn {
    svc: usize,
    transport: Transport,
    listen: Target,
    target: SocketAddr,
    options: RemoteOptions,
    rebind: Rebind,
    state: State,
    plan: Option<RoutePlan>,
    clients: Vec<Client>,
    up: Half,
    deadline: Option<Instant>,
    attempt: u64,
    since: Instant,
    yielded: bool,
}

impl RemoteConn {
    pub(crate) fn new(
        svc: usize,
        transport: Transport,
        listen: Target,
        target: SocketAddr,
        options: RemoteOptions,
        now: Instant,
    ) -> RemoteConn {
        RemoteConn {
            svc,
            transport,
            listen,
            target,
            rebind: Rebind::new(options.rebind),
            options,
            state: State::Idle,
            plan: None,
            clients: Vec::new(),
            up: Half::new(PREFIX_ROOM),
            deadline: Some(now),
            attempt: 0,
            since: now,
            yielded: false,
        }
    }

    /// The service it belongs to.
    pub(crate) fn svc(&self) -> usize {
        self.svc
    }

    fn kind(&self) -> &'static str {
        match self.transport {
            Transport::Tcp => "rtcp",
            Transport::Udp => "rudp",
        }
    }

    fn report(&self, event: RemoteEvent) {
        if let Some(tx) = &self.options.events {
            let _ = tx.send(event);
        }
    }

    /// True when the last drive stopped on a budget.
    pub(crate) fn wants_more(&self) -> bool {
        self.yielded
    }

    /// The next retry, bind deadline, keepalive, local connect or idle peer.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Idle | State::Connecting(_) | State::Handshake { .. } => self.deadline,
            State::Tcp { link, streams, .. } => {
                let connects = streams.values().filter_map(|s| match s {
                    RStream::Pipe(p) => p.deadline,
                    RStream::Preamble(_) => None,
                });
                connects.chain(link.session.poll_timeout()).min()
            }
            State::Udp { peers, .. } => peers.values().map(|p| p.last + self.options.udp_ttl).min(),
        }
    }

    /// Retries, deadlines, keepalive.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        let now = ctx.now;
        match &mut self.state {
            State::Idle => {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.start(ctx, chain);
                }
            }
            State::Connecting(_) | State::Handshake { .. } => {
                if self.deadline.is_some_and(|d| now >= d) {
                    if let Some(plan) = &self.plan {
                        chain.report(plan, 0, false, now);
                    }
                    self.bind_failed(io::ErrorKind::TimedOut, "timed out", ctx);
                }
            }
            State::Tcp { link, .. } => link.session.handle_timeout(now),
            State::Udp { peers, .. } => {
                let ttl = self.options.udp_ttl;
                peers.retain(|key, p| {
                    let keep = now < p.last + ttl;
                    if !keep {
                        log::debug!("rudp peer {key}: idle, socket closed");
                        let _ = ctx.registry.deregister(&mut p.socket);
                    }
                    keep
                });
            }
        }
        self.drive(ctx, chain)
    }

    fn start(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) {
        self.attempt += 1;
        let kind = self.kind();
        log::info!(
            "{kind} {} -> {}: bind attempt {}",
            self.listen,
            self.target,
            self.attempt
        );
        let plan = match chain.plan_bind(ctx.now, self.transport, &self.listen.as_address()) {
            Ok(p) => p,
            Err(e) => return self.bind_failed(io::ErrorKind::InvalidInput, e, ctx),
        };
        match tcp_connect(&mut vec![plan.first_hop], ctx.registry, ctx.token) {
            Ok(s) => {
                self.deadline = Some(ctx.now + self.options.bind_timeout);
                self.plan = Some(plan);
                self.state = State::Connecting(s);
            }
            Err(e) => {
                chain.report(&plan, 0, false, ctx.now);
                self.bind_failed(e.kind(), e, ctx)
            }
        }
    }

    fn bind_failed(&mut self, error: io::ErrorKind, why: impl std::fmt::Display, ctx: &Ctx<'_>) {
        self.teardown(ctx.registry);
        let retry_in = self.rebind.bind_failed(ctx.now);
        log::warn!(
            "{} {}: bind failed: {why}; retrying in {retry_in:?}",
            self.kind(),
            self.listen
        );
        self.report(RemoteEvent::BindFailed { error, retry_in });
        self.deadline = Some(ctx.now + retry_in);
    }

    fn session_ended(&mut self, why: impl std::fmt::Display, ctx: &Ctx<'_>) {
        self.teardown(ctx.registry);
        let retry_in = self.rebind.session_ended(ctx.now);
        log::warn!(
            "{} {}: session ended ({why}) after {:?}; binding again in {retry_in:?}",
            self.kind(),
            self.listen,
            ctx.now.saturating_duration_since(self.since)
        );
        self.report(RemoteEvent::SessionEnded { retry_in });
        self.deadline = Some(ctx.now + retry_in);
    }

    /// Drops every socket of the current attempt or session.
    fn teardown(&mut self, registry: &Registry) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {}
            State::Connecting(mut s) | State::Handshake { stream: mut s, .. } => {
                let _ = registry.deregister(&mut s);
            }
            State::Tcp {
                mut stream,
                mut streams,
                ..
            } => {
                let _ = registry.deregister(&mut stream);
                for s in streams.values_mut() {
                    if let RStream::Pipe(p) = s {
                        p.close(registry);
                    }
                }
            }
            State::Udp {
                mut stream,
                mut peers,
                ..
            } => {
                let _ = registry.deregister(&mut stream);
                for p in peers.values_mut() {
                    let _ = registry.deregister(&mut p.socket);
                }
            }
        }
        self.plan = None;
        self.clients.clear();
        self.up = Half::new(PREFIX_ROOM);
        self.yielded = false;
    }

    /// Does everything that can be done without blocking. Never closes.
    pub(crate) fn drive(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> Next {
        self.yielded = false;
        loop {
            let changed = match &mut self.state {
                State::Idle => false,
                State::Connecting(_) => self.check_connect(ctx, chain),
                State::Handshake { .. } => self.handshake(ctx, chain),
                State::Tcp { .. } => self.drive_tcp(ctx),
                State::Udp { .. } => self.drive_udp(ctx),
            };
            if !changed {
                return Next::Keep;
            }
        }
    }

    fn check_connect(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> bool {
        let State::Connecting(s) = &mut self.state else {
            return false;
        };
        match connect_state(s) {
            ConnectState::Pending => false,
            ConnectState::Failed(e) => {
                if let Some(plan) = &self.plan {
                    chain.report(plan, 0, false, ctx.now);
                }
                self.bind_failed(e.kind(), e, ctx);
                true
            }
            ConnectState::Done => {
                let _ = s.set_nodelay(true);
                let State::Connecting(stream) = std::mem::replace(&mut self.state, State::Idle)
                else {
                    return false;
                };
                let mut clients = self
                    .plan
                    .as_mut()
                    .map(|p| std::mem::take(&mut p.clients))
                    .unwrap_or_default();
                // A BIND has no payload to wait for: every request goes out now.
                queue_requests(&mut clients, &mut self.up, false);
                self.clients = clients;
                self.state = State::Handshake {
                    stream,
                    resp: RecvBuf::with_capacity(PREFIX_ROOM),
                    next: 0,
                };
                true
            }
        }
    }

    fn handshake(&mut self, ctx: &mut Ctx<'_>, chain: &mut Chain) -> bool {
        let State::Handshake { stream, resp, next } = &mut self.state else {
            return false;
        };
        if let Err(e) = self.up.flush(stream) {
            self.bind_failed(e.kind(), e, ctx);
            return true;
        }
        let mut bound = None;
        let mut failure: Option<(io::ErrorKind, String)> = None;
        'read: loop {
            let space = resp.unfilled();
            if space.is_empty() {
                failure = Some((io::ErrorKind::InvalidData, "response too large".into()));
                break;
            }
            match std::io::Read::read(stream, space) {
                Ok(0) => {
                    let e = self
                        .clients
                        .get_mut(*next)
                        .and_then(Client::handle_eof)
                        .map_or("closed".to_string(), |e| e.to_string());
                    failure = Some((io::ErrorKind::UnexpectedEof, e));
                    break;
                }
                Ok(n) => resp.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    failure = Some((e.kind(), e.to_string()));
                    break;
                }
            }
            while let Some(client) = self.clients.get_mut(*next) {
                match client.handle_response(resp.data()) {
                    Ok(Decoded::Partial { .. }) => continue 'read,
                    Ok(Decoded::Complete { value, consumed }) => {
                        let ClientEvent::Established { bound: b } = value;
                        bound = b;
                        resp.consume(consumed);
                        *next += 1;
                    }
                    Err(e) => {
                        failure =
                            Some((io::ErrorKind::ConnectionRefused, format!("hop {next}: {e}")));
                        break 'read;
                    }
                }
            }
            break;
        }
        if let Some((kind, why)) = failure {
            return {
                self.bind_failed(kind, why, ctx);
                true
            };
        }
        // Every response is in.
        if let Some(plan) = &self.plan {
            chain.report(plan, 0, true, ctx.now);
        }
        let State::Handshake { stream, resp, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return false;
        };
        self.rebind.established(ctx.now);
        self.since = ctx.now;
        self.deadline = None;
        let at = bound.map_or("an unknown address".to_string(), |b| b.to_string());
        log::info!(
            "{} {}: bound on the server at {at}",
            self.kind(),
            self.listen
        );
        self.report(RemoteEvent::Bound { bound });
        match self.transport {
            Transport::Tcp => {
                match MuxLink::new(Role::Server, self.options.mux, ctx.now, resp.data(), &[]) {
                    Ok(link) => {
                        self.state = State::Tcp {
                            stream,
                            link: Box::new(link),
                            streams: HashMap::new(),
                        }
                    }
                    Err(e) => {
                        self.state = State::Handshake {
                            stream,
                            resp,
                            next: 0,
                        };
                        self.session_ended(e, ctx);
                    }
                }
            }
            Transport::Udp => {
                let link = DatagramLink::new(self.options.udp_buffer_size, resp.data(), &[]);
                self.state = State::Udp {
                    stream,
                    link: Box::new(link),
                    peers: HashMap::new(),
                    scratch: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
                };
            }
        }
        true
    }

    fn drive_tcp(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Tcp {
            stream,
            link,
            streams,
        } = &mut self.state
        else {
            return false;
        };
        let mut ended: Option<MuxError> = None;
        let mut yielded = false;
        for pass in 0..=PASSES {
            if pass == PASSES {
                yielded = true;
                break;
            }
            let mut progress = link.pump_in(stream, &mut yielded);
            while let Some(ev) = link.session.poll_event() {
                match ev {
                    MuxEvent::StreamOpened { id } => {
                        streams.insert(id, RStream::Preamble(Vec::new()));
                        progress = true;
                    }
                    MuxEvent::SessionClosed { reason } => ended = Some(reason),
                    _ => {}
                }
            }
            if ended.is_some() {
                break;
            }
            let session = &mut link.session;
            let (target, dial_timeout) = (self.target, self.options.dial_timeout);
            streams.retain(|&id, s| {
                if let RStream::Preamble(buf) = s {
                    match read_preamble(session, id, buf) {
                        Ok(None) => return true,
                        Ok(Some((peer, rest))) => {
                            progress = true;
                            match connect_local(target, ctx.registry, ctx.token) {
                                Ok(local) => {
                                    log::debug!("rtcp stream {id} from {peer} -> {target}");
                                    let mut p = StreamPipe::new(
                                        id,
                                        local,
                                        false,
                                        Some(ctx.now + dial_timeout),
                                        &[],
                                    );
                                    p.push_down(&rest);
                                    *s = RStream::Pipe(p);
                                }
                                Err(e) => {
                                    log::info!(
                                        "rtcp stream {id} from {peer}: connect {target}: {e}"
                                    );
                                    let _ = session.stream_close(id);
                                    return false;
                                }
                            }
                        }
                        Err(e) => {
                            // This stream only; the session goes on.
                            log::info!("rtcp stream {id}: {e}; stream closed");
                            let _ = session.stream_close(id);
                            return false;
                        }
                    }
                }
                let RStream::Pipe(p) = s else {
                    return true;
                };
                let d = p.drive(session, ctx.now);
                progress |= d.progress;
                yielded |= p.yielded;
                if d.done {
                    let (up, down) = p.bytes();
                    log::debug!("rtcp stream {id}: up {down} B, down {up} B");
                    p.close(ctx.registry);
                }
                !d.done
            });
            progress |= link.pump_out(stream);
            if !progress {
                break;
            }
        }
        self.yielded |= yielded;
        if let Some(reason) = ended {
            self.session_ended(reason, ctx);
            return true;
        }
        false
    }

    fn drive_udp(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Udp {
            stream,
            link,
            peers,
            scratch,
        } = &mut self.state
        else {
            return false;
        };
        let result = (|| -> io::Result<bool> {
            // Server -> target: the address is the remote peer.
            for _ in 0..READ_BUDGET {
                let Some((d, used)) = link.next(stream)? else {
                    if link.eof {
                        return Ok(true);
                    }
                    break;
                };
                let key = Target::from_address(&d.addr);
                if !peers.contains_key(&key) {
                    if peers.len() >= self.options.udp_max_peers.max(1) {
                        log::debug!("rudp peer {key}: too many peers; datagram dropped");
                        link.consume(used);
                        continue;
                    }
                    match udp_local(self.target, ctx.registry, ctx.token) {
                        Ok(socket) => {
                            peers.insert(
                                key,
                                Peer {
                                    socket,
                                    last: ctx.now,
                                },
                            );
                        }
                        Err(e) => {
                            log::info!("rudp peer {key}: socket to {}: {e}", self.target);
                            link.consume(used);
                            continue;
                        }
                    }
                }
                let Some(peer) = peers.get_mut(&key) else {
                    continue;
                };
                peer.last = ctx.now;
                let sent = peer.socket.send(d.payload);
                link.consume(used);
                if let Err(e) = sent {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        continue;
                    }
                    log::debug!("rudp peer {key}: send: {e}");
                    if link.relay.send_failed(send_failure(&e)) == SendVerdict::End {
                        return Err(e);
                    }
                }
            }
            // Target -> server, tagged with the peer.
            for (key, peer) in peers.iter_mut() {
                let mut budget = READ_BUDGET;
                while link.flush(stream)? {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    match peer.socket.recv(scratch) {
                        Ok(n) => {
                            peer.last = ctx.now;
                            link.send(key.as_address(), &scratch[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // ICMP errors from the target: keep the peer until it goes idle.
                            log::debug!("rudp peer {key}: {e}");
                            break;
                        }
                    }
                }
            }
            Ok(false)
        })();
        match result {
            Ok(false) => false,
            Ok(true) => {
                self.session_ended("the server closed the connection", ctx);
                true
            }
            Err(e) => {
                self.session_ended(e, ctx);
                true
            }
        }
    }

    /// Deregisters everything.
    pub(crate) fn close(mut self, registry: &Registry) {
        self.teardown(registry);
    }
}

/// Reads a TCP BIND stream's header: `Ok(Some)` with the peer and the bytes after it.
fn read_preamble(
    session: &mut relay_core::mux::Session,
    id: StreamId,
    buf: &mut Vec<u8>,
) -> Result<Option<(String, Vec<u8>)>, relay_core::bind::PreambleError> {
    let mut chunk = [0u8; 512];
    loop {
        if let Decoded::Complete { value, consumed } = decode_preamble(buf)? {
            let peer = value
                .peer
                .map_or("an unknown peer".to_string(), |p| p.to_string());
            return Ok(Some((peer, buf.split_off(consumed))));
        }
        match session.stream_read(id, &mut chunk) {
            Ok(0) => return Err(preamble_eof(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(MuxError::WouldBlock) => return Ok(None),
            Err(_) => return Err(preamble_eof(buf)),
        }
    }
}

fn connect_local(target: SocketAddr, registry: &Registry, token: Token) -> io::Result<TcpStream> {
    tcp_connect(&mut vec![target], registry, token)
}

fn udp_local(target: SocketAddr, registry: &Registry, token: Token) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    registry.register(&mut socket, token, Interest::READABLE)?;
    Ok(socket)
}
