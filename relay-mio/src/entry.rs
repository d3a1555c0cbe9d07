//! Proxy entry connections (SOCKS5, SOCKS4/4a, HTTP, or GOST's `auto`): the core's handshake
//! machines, then a tunnel to the target, directly or through a relay chain.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry};
use relay_core::auth::Credentials;
use relay_core::bind::SendVerdict;
use relay_core::buf::RecvBuf;
use relay_core::entry::http::{HttpRequest, MAX_HEAD, RequestKind};
use relay_core::entry::socks4::{self, Socks4Request};
use relay_core::entry::socks5::{self, Socks5Request, Socks5Server, Step};
use relay_core::entry::{Answer, Protocol, detect};
use relay_core::route::{Chain, RoutePlan};
use relay_core::server::Transport;
use relay_core::target::{Target, TargetHost};
use relay_core::udp::{Datagram, MAX_DATAGRAM};
use relay_core::{Address, Decoded};

use crate::bind::{DatagramLink, send_failure};
use crate::dial::{ConnectState, connect_state, tcp_connect};
use crate::driver::{Ctx, Next};
use crate::forward::queue_requests;
use crate::pipe::{Half, PREFIX_ROOM, Pipe, PipeError, READ_BUDGET, Strip};

/// Deadline for a client's proxy handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Which proxy protocols an entry service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// SOCKS5 only.
    Socks5,
    /// HTTP only (CONNECT and absolute-URI requests).
    Http,
    /// SOCKS4/4a, SOCKS5 and HTTP, told apart by the first byte (GOST's `auto`).
    Auto,
}

fn no_auth() -> &'static Credentials {
    static NO_AUTH: OnceLock<Credentials> = OnceLock::new();
    NO_AUTH.get_or_init(Credentials::new)
}

enum State {
    /// Reading the client's handshake.
    Handshake,
    /// A name lookup runs on a helper thread (direct entries).
    Resolving,
    /// Connecting to the target (direct) or the chain's first node.
    Connecting {
        stream: TcpStream,
        rest: Vec<SocketAddr>,
    },
    /// Chain with a `nodelay` last node: the requests are out, waiting for every hop's response
    /// before answering the client (docs/e2e-findings.md F1).
    Waiting { stream: TcpStream, resp: RecvBuf },
    /// Tunnel.
    Tunnel(TcpStream),
    /// SOCKS5 UDP ASSOCIATE: datagrams over a relay UDP BIND, while the control connection
    /// lasts.
    Associate {
        stream: TcpStream,
        assoc: Box<Association>,
    },
    /// Writing the last reply, then closing.
    Closing,
    /// Finished.
    Closed,
}

/// One accepted entry connection.
pub(crate) struct EntryConn {
    peer: SocketAddr,
    svc: usize,
    local: TcpStream,
    kind: EntryKind,
    rb: RecvBuf,
    socks5: Option<Socks5Server<'static>>,
    protocol: Option<Protocol>,
    state: State,
    target: Option<Target>,
    /// The request is a SOCKS5 UDP ASSOCIATE (a relay UDP BIND through the chain).
    associate: bool,
    answer: Answer,
    head: Vec<u8>,
    plan: Option<RoutePlan>,
    strip: Option<Strip>,
    pipe: Pipe,
    dial_timeout: Duration,
    deadline: Option<Instant>,
    started: Instant,
}

impl EntryConn {
    pub(crate) fn new(
        peer: SocketAddr,
        svc: usize,
        local: TcpStream,
        kind: EntryKind,
        dial_timeout: Duration,
        now: Instant,
    ) -> EntryConn {
        EntryConn {
            peer,
            svc,
            local,
            kind,
            rb: RecvBuf::with_capacity(MAX_HEAD + 1024),
            socks5: None,
            protocol: None,
            state: State::Handshake,
            target: None,
            associate: false,
            answer: Answer::Socks5,
            head: Vec::new(),
            plan: None,
            strip: None,
            pipe: Pipe::new(),
            dial_timeout,
            deadline: Some(now + HANDSHAKE_TIMEOUT),
            started: now,
        }
    }

    /// The service it belongs to.
    pub(crate) fn svc(&self) -> usize {
        self.svc
    }

    /// The local stream, for registration.
    pub(crate) fn local_mut(&mut self) -> &mut TcpStream {
        &mut self.local
    }

    /// True while the request is still being read (the connection may be evicted then).
    pub(crate) fn in_handshake(&self) -> bool {
        matches!(self.state, State::Handshake)
    }

    /// True when the last drive stopped on a read budget.
    pub(crate) fn wants_more(&self) -> bool {
        match &self.state {
            State::Tunnel(_) => self.pipe.yielded(),
            State::Associate { assoc, .. } => assoc.yielded,
            _ => false,
        }
    }

    /// The handshake, connect or response deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Applies a passed deadline, then continues.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if self.deadline.is_some_and(|d| ctx.now >= d) {
            self.deadline = None;
            match self.state {
                State::Handshake => {
                    log::info!("proxy {}: handshake timed out", self.peer);
                    self.state = State::Closed;
                }
                State::Waiting { ref resp, .. } if resp.is_empty() && !self.associate => {
                    // No response yet: a relay server that holds its OK response until the
                    // target speaks (GOST's default) looks the same as a slow dial. Answer
                    // success; the responses are stripped when they come (as without nodelay).
                    log::debug!(
                        "proxy {} -> {}: no relay response within the dial timeout",
                        self.peer,
                        self.target_name()
                    );
                    self.answer_success();
                }
                State::Resolving | State::Connecting { .. } | State::Waiting { .. } => {
                    log::info!("proxy {} -> {}: timed out", self.peer, self.target_name());
                    if let (Some(plan), Some(chain)) = (&self.plan, ctx.chain.as_deref_mut()) {
                        chain.report(plan, 0, false, ctx.now);
                    }
                    self.fail(ctx);
                }
                _ => {}
            }
        }
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
                Ok(mut addrs) => {
                    addrs.reverse();
                    self.connect(addrs, ctx);
                }
                Err(e) => {
                    log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
                    self.fail(ctx);
                }
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

    fn target_name(&self) -> String {
        if self.associate {
            return "UDP ASSOCIATE".to_string();
        }
        self.target
            .map_or_else(|| "?".to_string(), |t| t.to_string())
    }

    /// Answers the failure reply, then closes.
    fn fail(&mut self, _ctx: &mut Ctx<'_>) {
        self.pipe.down.push(self.answer.failure(), false);
        self.state = State::Closing;
    }

    /// Writes a refusal, then closes.
    fn refuse(&mut self, reply: &[u8], why: impl std::fmt::Display) {
        log::info!("proxy {}: {why}", self.peer);
        self.pipe.down.push(reply, false);
        self.state = State::Closing;
    }

    fn step(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let result: Result<bool, String> = match &mut self.state {
            State::Handshake => return self.handshake(ctx),
            State::Resolving | State::Closed => return false,
            State::Connecting { .. } => return self.check_connect(ctx),
            State::Waiting { .. } => return self.wait_response(ctx),
            State::Tunnel(upstream) => {
                let was_done = self.strip.as_ref().is_none_or(Strip::is_done);
                let r = self
                    .pipe
                    .drive(&mut self.local, upstream, self.strip.as_mut());
                if !was_done && self.strip.as_ref().is_some_and(Strip::is_done) {
                    if let (Some(plan), Some(chain)) = (&self.plan, ctx.chain.as_deref_mut()) {
                        chain.report(plan, 0, true, ctx.now);
                    }
                }
                r.map_err(|e| e.to_string())
            }
            State::Associate { stream, assoc } => {
                // The success reply first; the control connection carries nothing else.
                match self.pipe.down.flush(&mut self.local) {
                    Ok(_) => assoc.drive(&mut self.local, stream),
                    Err(e) => Err(e),
                }
                .map_err(|e| e.to_string())
            }
            State::Closing => match self.pipe.down.flush(&mut self.local) {
                Ok(false) => Ok(false),
                Ok(true) | Err(_) => Ok(true),
            },
        };
        match result {
            Ok(false) => false,
            Ok(true) => {
                if let State::Associate { assoc, .. } = &self.state {
                    assoc.log_end(self.peer, self.started);
                } else if matches!(self.state, State::Tunnel(_)) {
                    log::info!(
                        "proxy {} -> {}: closed, up {} B, down {} B, {:?}",
                        self.peer,
                        self.target_name(),
                        self.pipe.up.bytes,
                        self.pipe.down.bytes,
                        self.started.elapsed()
                    );
                }
                self.state = State::Closed;
                true
            }
            Err(e) => {
                log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
                if let State::Associate { assoc, .. } = &self.state {
                    assoc.log_end(self.peer, self.started);
                }
                self.state = State::Closed;
                true
            }
        }
    }

    /// Reads and runs the handshake; true when the state changed.
    fn handshake(&mut self, ctx: &mut Ctx<'_>) -> bool {
        loop {
            if !self.rb.is_empty() {
                match self.run_machine() {
                    Ok(Some(target)) => {
                        self.target = Some(target);
                        self.start_connect(target, ctx);
                        return true;
                    }
                    Ok(None) => {}
                    Err(()) => return true,
                }
            }
            // Replies of the handshake (SOCKS5 method selection) go out as they come.
            if self.pipe.down.flush(&mut self.local).is_err() {
                self.state = State::Closed;
                return true;
            }
            let space = self.rb.unfilled();
            if space.is_empty() {
                self.refuse(&[], "handshake too large");
                return true;
            }
            match std::io::Read::read(&mut self.local, space) {
                Ok(0) => {
                    self.state = State::Closed;
                    return true;
                }
                Ok(n) => self.rb.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    self.state = State::Closed;
                    return true;
                }
            }
        }
    }

    /// Runs the protocol machine on what was read: `Ok(Some(target))` once the request is
    /// whole, `Err` when the handshake ended (refused: the state says what follows).
    fn run_machine(&mut self) -> Result<Option<Target>, ()> {
        let protocol = match self.protocol {
            Some(p) => p,
            None => {
                let p = match (self.kind, detect(self.rb.data())) {
                    (EntryKind::Socks5, _) => Protocol::Socks5,
                    (EntryKind::Http, _) => Protocol::Http,
                    (EntryKind::Auto, Some(p)) => p,
                    (EntryKind::Auto, None) => return Ok(None),
                };
                self.protocol = Some(p);
                p
            }
        };
        match protocol {
            Protocol::Socks5 => self.socks5(),
            Protocol::Socks4 => self.socks4(),
            Protocol::Http | Protocol::Unknown => self.http(),
        }
    }

    fn socks5(&mut self) -> Result<Option<Target>, ()> {
        let machine = self
            .socks5
            .get_or_insert_with(|| Socks5Server::new(no_auth()));
        loop {
            match machine.handle_input(self.rb.data()) {
                Ok(Step::NeedMore { .. }) => return Ok(None),
                Ok(Step::Reply { consumed, reply }) => {
                    self.pipe.down.push(reply, false);
                    self.rb.consume(consumed);
                }
                Ok(Step::Request { consumed, request }) => {
                    let target = match request {
                        Socks5Request::Connect { target } => Target::from_address(&target),
                        // The association is a relay UDP BIND of the unspecified address; the
                        // client's hint is not used (its packets are taken from its IP).
                        Socks5Request::UdpAssociate { .. } => {
                            self.associate = true;
                            Target::from_address(&unspecified())
                        }
                    };
                    self.rb.consume(consumed);
                    self.answer = Answer::Socks5;
                    return Ok(Some(target));
                }
                Ok(Step::Refused { reply, error, .. }) => {
                    let reply = reply.to_vec();
                    self.refuse(&reply, error);
                    return Err(());
                }
                Err(e) => {
                    log::info!("proxy {}: {e}", self.peer);
                    self.state = State::Closed;
                    return Err(());
                }
            }
        }
    }

    fn socks4(&mut self) -> Result<Option<Target>, ()> {
        match Socks4Request::decode(self.rb.data()) {
            Ok(Decoded::Partial { .. }) => Ok(None),
            Ok(Decoded::Complete { value, consumed }) => {
                let target = Target::from_address(&value.target);
                self.rb.consume(consumed);
                self.answer = Answer::Socks4;
                Ok(Some(target))
            }
            Err(e) => {
                self.refuse(&socks4::encode_reply(false), e);
                Err(())
            }
        }
    }

    fn http(&mut self) -> Result<Option<Target>, ()> {
        match HttpRequest::decode(self.rb.data()) {
            Ok(Decoded::Partial { .. }) => Ok(None),
            Ok(Decoded::Complete { value, consumed }) => {
                let target = Target::from_address(&value.target);
                match value.kind {
                    RequestKind::Connect => self.answer = Answer::HttpConnect,
                    RequestKind::Forward { .. } => {
                        let mut head = vec![0u8; value.forward_head_len()];
                        match value.write_forward_head(&mut head) {
                            Ok(n) => head.truncate(n),
                            Err(e) => {
                                let reply = Answer::HttpForward.failure();
                                self.refuse(reply, e);
                                return Err(());
                            }
                        }
                        self.head = head;
                        self.answer = Answer::HttpForward;
                    }
                }
                self.rb.consume(consumed);
                Ok(Some(target))
            }
            Err(e) => {
                self.refuse(e.status().response(), e);
                Err(())
            }
        }
    }

    fn start_connect(&mut self, target: Target, ctx: &mut Ctx<'_>) {
        self.deadline = Some(ctx.now + self.dial_timeout);
        let (registry, token, now) = (ctx.registry, ctx.token, ctx.now);
        if let Some(chain) = ctx.chain.as_deref_mut() {
            return self.connect_chain(target, chain, now, registry, token);
        }
        if self.associate {
            log::info!("proxy {}: UDP ASSOCIATE needs a relay chain", self.peer);
            return self.fail(ctx);
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
            _ => {
                log::info!("proxy {}: cannot dial {target}", self.peer);
                self.fail(ctx);
            }
        }
    }

    fn connect_chain(
        &mut self,
        target: Target,
        chain: &mut Chain,
        now: Instant,
        registry: &mio::Registry,
        token: mio::Token,
    ) {
        let planned = if self.associate {
            chain.plan_bind(now, Transport::Udp, &target.as_address())
        } else {
            chain.plan(now, Transport::Tcp, &target.as_address())
        };
        match planned {
            Ok(plan) => {
                let first = plan.first_hop;
                self.plan = Some(plan);
                match tcp_connect(&mut vec![first], registry, token) {
                    Ok(stream) => {
                        self.state = State::Connecting {
                            stream,
                            rest: Vec::new(),
                        }
                    }
                    Err(e) => {
                        log::info!("proxy {} -> {target}: connect {first}: {e}", self.peer);
                        chain.report(self.plan.as_ref().expect("plan"), 0, false, now);
                        self.pipe.down.push(self.answer.failure(), false);
                        self.state = State::Closing;
                    }
                }
            }
            Err(e) => {
                log::info!("proxy {} -> {target}: {e}", self.peer);
                self.pipe.down.push(self.answer.failure(), false);
                self.state = State::Closing;
            }
        }
    }

    /// Connects to `addrs`, last first.
    fn connect(&mut self, mut addrs: Vec<SocketAddr>, ctx: &mut Ctx<'_>) {
        match tcp_connect(&mut addrs, ctx.registry, ctx.token) {
            Ok(stream) => {
                self.state = State::Connecting {
                    stream,
                    rest: addrs,
                }
            }
            Err(e) => {
                log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
                self.fail(ctx);
            }
        }
    }

    fn check_connect(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Connecting { stream, rest } = &mut self.state else {
            return false;
        };
        match connect_state(stream) {
            ConnectState::Pending => false,
            ConnectState::Failed(e) => {
                let _ = ctx.registry.deregister(stream);
                let mut rest = std::mem::take(rest);
                match tcp_connect(&mut rest, ctx.registry, ctx.token) {
                    Ok(stream) => self.state = State::Connecting { stream, rest },
                    Err(_) => {
                        log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
                        if let (Some(plan), Some(chain)) = (&self.plan, ctx.chain.as_deref_mut()) {
                            chain.report(plan, 0, false, ctx.now);
                        }
                        self.fail(ctx);
                    }
                }
                true
            }
            ConnectState::Done => {
                let _ = stream.set_nodelay(true);
                let State::Connecting { stream, .. } =
                    std::mem::replace(&mut self.state, State::Closed)
                else {
                    return false;
                };
                self.connected(stream, ctx);
                true
            }
        }
    }

    fn connected(&mut self, stream: TcpStream, ctx: &mut Ctx<'_>) {
        let mut head = std::mem::take(&mut self.head);
        head.extend_from_slice(self.rb.data());
        self.rb.consume(usize::MAX);
        let Some(plan) = self.plan.as_mut() else {
            // Direct: answer now, then the tunnel.
            self.deadline = None;
            self.pipe.down.push(self.answer.success(), false);
            let mut up = Half::with_room(PREFIX_ROOM + head.len());
            up.push(&head, false);
            self.pipe.up = up;
            self.open();
            self.state = State::Tunnel(stream);
            return;
        };
        let mut clients = std::mem::take(&mut plan.clients);
        let requests: usize = clients.iter().map(|c| c.request().len()).sum();
        let mut up = Half::with_room(PREFIX_ROOM + requests + head.len());
        // Every request goes out at once when every node is `nodelay`: then the responses can
        // be awaited before answering (GOST's nodelay connector). Otherwise GOST answers
        // success at once, and so do we. A UDP ASSOCIATE has no payload to wait for: its
        // requests go out now, and the BIND response is awaited.
        let lazy = queue_requests(&mut clients, &mut up, head.is_empty() && !self.associate)
            && !self.associate;
        self.strip = Some(Strip::new(clients));
        if lazy {
            self.deadline = None;
            up.push(&head, false);
            self.pipe.up = up;
            self.pipe.down.push(self.answer.success(), false);
            self.open();
            self.state = State::Tunnel(stream);
        } else {
            self.pipe.up = up;
            self.head = head;
            self.state = State::Waiting {
                stream,
                resp: RecvBuf::with_capacity(PREFIX_ROOM),
            };
        }
        let _ = ctx;
    }

    fn open(&self) {
        log::info!(
            "proxy {} -> {}: open",
            self.peer,
            self.target.map_or("?".to_string(), |t| t.to_string())
        );
    }

    /// Waits for every hop's response (F1), then answers.
    fn wait_response(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Waiting { stream, resp } = &mut self.state else {
            return false;
        };
        if let Err(e) = self.pipe.up.flush(stream) {
            log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
            self.fail(ctx);
            return true;
        }
        let Some(strip) = self.strip.as_mut() else {
            return false;
        };
        let mut refused: Option<PipeError> = None;
        for _ in 0..READ_BUDGET {
            let space = resp.unfilled();
            if space.is_empty() {
                refused = Some(PipeError::Io(io::ErrorKind::InvalidData.into()));
                break;
            }
            match std::io::Read::read(stream, space) {
                Ok(0) => {
                    refused = Some(
                        strip
                            .eof()
                            .err()
                            .unwrap_or(PipeError::Io(io::ErrorKind::UnexpectedEof.into())),
                    );
                    break;
                }
                Ok(n) => {
                    resp.filled(n);
                    match strip.feed(resp.data()) {
                        Ok(used) => resp.consume(used),
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                    if strip.is_done() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    refused = Some(PipeError::Io(e));
                    break;
                }
            }
        }
        if let Some(e) = refused {
            log::info!("proxy {} -> {}: {e}", self.peer, self.target_name());
            if matches!(e, PipeError::Io(_)) {
                if let (Some(plan), Some(chain)) = (&self.plan, ctx.chain.as_deref_mut()) {
                    chain.report(plan, 0, false, ctx.now);
                }
            }
            self.fail(ctx);
            return true;
        }
        if !strip.is_done() {
            return false;
        }
        if let (Some(plan), Some(chain)) = (&self.plan, ctx.chain.as_deref_mut()) {
            chain.report(plan, 0, true, ctx.now);
        }
        if self.associate {
            self.start_association(ctx);
        } else {
            self.answer_success();
        }
        true
    }

    /// Leaves `Waiting` once the relay UDP BIND is accepted: a UDP socket on the control
    /// connection's local IP, its address in the success reply, then the association.
    fn start_association(&mut self, ctx: &mut Ctx<'_>) {
        let State::Waiting { stream, resp } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        self.deadline = None;
        let opened = self
            .local
            .local_addr()
            .and_then(|a| Association::open(a.ip(), self.peer.ip(), resp.data(), ctx));
        let assoc = match opened {
            Ok(a) => a,
            Err(e) => {
                log::info!("proxy {}: UDP ASSOCIATE socket: {e}", self.peer);
                let mut stream = stream;
                let _ = ctx.registry.deregister(&mut stream);
                return self.fail(ctx);
            }
        };
        let mut reply = [0u8; 32];
        match socks5::encode_reply(
            socks5::ReplyCode::SUCCEEDED,
            &Address::from_socket(assoc.bound),
            &mut reply,
        ) {
            Ok(n) => self.pipe.down.push(&reply[..n], false),
            Err(e) => {
                log::info!("proxy {}: UDP ASSOCIATE reply: {e}", self.peer);
                let (mut stream, mut assoc) = (stream, assoc);
                let _ = ctx.registry.deregister(&mut stream);
                assoc.close(ctx.registry);
                return self.fail(ctx);
            }
        }
        log::info!("proxy {}: UDP ASSOCIATE open at {}", self.peer, assoc.bound);
        self.state = State::Associate {
            stream,
            assoc: Box::new(assoc),
        };
    }

    /// Leaves `Waiting`: the success reply, what followed the responses, then the tunnel.
    fn answer_success(&mut self) {
        let State::Waiting { stream, resp } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        self.deadline = None;
        self.pipe.down.push(self.answer.success(), false);
        self.pipe.down.push(resp.data(), false);
        let head = std::mem::take(&mut self.head);
        self.pipe.up.push(&head, false);
        self.open();
        self.state = State::Tunnel(stream);
    }

    /// Deregisters both streams.
    pub(crate) fn close(mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.local);
        match &mut self.state {
            State::Connecting { stream, .. }
            | State::Waiting { stream, .. }
            | State::Tunnel(stream) => {
                let _ = registry.deregister(stream);
            }
            State::Associate { stream, assoc } => {
                let _ = registry.deregister(stream);
                assoc.close(registry);
            }
            _ => {}
        }
    }
}

/// `0.0.0.0:0`: what a UDP ASSOCIATE binds on the relay server.
fn unspecified() -> Address<'static> {
    Address::from_socket(SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Datagrams dropped by an association, by reason (logged at its end).
#[derive(Debug, Default, Clone, Copy)]
struct Drops {
    /// From an IP other than the control connection's peer.
    foreign: u64,
    /// Not a SOCKS5 UDP packet (short, fragmented, bad address).
    malformed: u64,
    /// Read while the relay connection was still writing the previous one.
    busy: u64,
    /// From the relay before the client sent its first packet (no address to send to).
    no_client: u64,
    /// The send to the client failed or would block.
    unsent: u64,
}

/// The data phase of a SOCKS5 UDP ASSOCIATE (RFC 1928 §7) over a relay UDP BIND: SOCKS5 UDP
/// packets from the client go up the relay connection in the stream framing (the address is
/// the destination), datagrams from it go to the client's last address (the address is the
/// source). Memory is bounded: one datagram in flight each way; the rest are dropped, as UDP
/// would, and counted.
pub(crate) struct Association {
    link: DatagramLink,
    socket: UdpSocket,
    /// The socket's address, given to the client.
    pub bound: SocketAddr,
    /// Packets are taken from this IP only (the control connection's peer).
    client_ip: IpAddr,
    /// Where the client's last packet came from: replies go there.
    client: Option<SocketAddr>,
    buf: Box<[u8]>,
    up: u64,
    down: u64,
    drops: Drops,
    /// The last drive stopped on a budget.
    pub yielded: bool,
}

impl Association {
    /// Binds the client-side socket on `local_ip` (registered under the connection's token);
    /// `head` is what followed the relay responses.
    fn open(
        local_ip: IpAddr,
        client_ip: IpAddr,
        head: &[u8],
        ctx: &Ctx<'_>,
    ) -> io::Result<Association> {
        let mut socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))?;
        let bound = socket.local_addr()?;
        ctx.registry
            .register(&mut socket, ctx.token, Interest::READABLE)?;
        Ok(Association {
            // No cap beyond UDP's own: the client's packets are relayed whole.
            link: DatagramLink::new(MAX_DATAGRAM, head, &[]),
            socket,
            bound,
            client_ip,
            client: None,
            buf: vec![0u8; MAX_DATAGRAM + 3 + 262].into_boxed_slice(),
            up: 0,
            down: 0,
            drops: Drops::default(),
            yielded: false,
        })
    }

    /// Moves datagrams both ways and watches the control connection; `Ok(true)` once the
    /// association is over (the control connection or the relay connection ended).
    fn drive(&mut self, control: &mut TcpStream, relay: &mut TcpStream) -> io::Result<bool> {
        self.yielded = false;
        if control_ended(control, &mut self.yielded)? {
            return Ok(true);
        }
        // Relay -> client: the address is the source.
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                self.yielded = true;
                break;
            }
            budget -= 1;
            let Some((d, used)) = self.link.next(relay)? else {
                if self.link.eof {
                    return Ok(true);
                }
                break;
            };
            let sent = match (self.client, d.encode_packet(&mut self.buf)) {
                (None, _) => {
                    self.drops.no_client += 1;
                    Ok(())
                }
                (Some(_), Err(e)) => {
                    log::debug!(
                        "udp associate {}: datagram from {}: {e}",
                        self.bound,
                        d.addr
                    );
                    self.drops.malformed += 1;
                    Ok(())
                }
                (Some(to), Ok(n)) => match self.socket.send_to(&self.buf[..n], to) {
                    Ok(_) => {
                        self.down += 1;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            self.link.consume(used);
            if let Err(e) = sent {
                self.drops.unsent += 1;
                if e.kind() != io::ErrorKind::WouldBlock {
                    log::debug!("udp associate {}: send: {e}", self.bound);
                    if self.link.relay.send_failed(send_failure(&e)) == SendVerdict::End {
                        return Err(e);
                    }
                }
            }
        }
        // Client -> relay: the address is the destination. Read only while the relay
        // connection takes what was framed before; otherwise a packet is dropped (counted).
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                self.yielded = true;
                break;
            }
            budget -= 1;
            let free = self.link.flush(relay)?;
            let (n, from) = match self.socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here; the socket stays usable.
                Err(e) => {
                    log::debug!("udp associate {}: {e}", self.bound);
                    continue;
                }
            };
            if from.ip() != self.client_ip {
                self.drops.foreign += 1;
                continue;
            }
            self.client = Some(from);
            match Datagram::decode_packet(&self.buf[..n]) {
                Ok(_) if !free => self.drops.busy += 1,
                Ok(d) => {
                    // Empty payloads are dropped (and counted) by the link's policy.
                    self.link.send(d.addr, d.payload);
                    self.up += 1;
                }
                Err(e) => {
                    log::debug!("udp associate {}: packet from {from}: {e}", self.bound);
                    self.drops.malformed += 1;
                }
            }
        }
        self.link.flush(relay)?;
        Ok(false)
    }

    fn log_end(&self, peer: SocketAddr, started: Instant) {
        log::info!(
            "proxy {peer}: UDP ASSOCIATE at {} closed, {} datagrams up, {} down, {:?}",
            self.bound,
            self.up,
            self.down,
            started.elapsed()
        );
        log::debug!(
            "proxy {peer}: UDP ASSOCIATE at {} dropped {:?}, relay {:?}",
            self.bound,
            self.drops,
            self.link.relay.stats()
        );
    }

    fn close(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }
}

/// Reads and discards what the client sends on the control connection; true once it ended.
fn control_ended(control: &mut TcpStream, yielded: &mut bool) -> io::Result<bool> {
    let mut sink = [0u8; 256];
    for _ in 0..READ_BUDGET {
        match control.read(&mut sink) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    *yielded = true;
    Ok(false)
}
