//! Deterministic simulation of a relay connection on a fake clock (feature `sim`).
//!
//! A [`Sim`] wires an application, a relay [`Client`], a relay [`Server`] and a scripted fake
//! target together. Bytes travel in segments with a fixed latency; writes can be split into
//! segments of at most `max_segment` bytes; time only moves when the simulation is stepped, to
//! the next delivery or the next deadline the machines ask for. Nothing touches a socket or a
//! clock, so every run is exactly repeatable: deadlines fire at their fake instants, and every
//! byte on the wire can be asserted.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_core::sim::{Sim, SimConfig, TargetScript};
//! use relay_core::wire::Status;
//!
//! // Default GOST setup: client and server nodelay=false, an echo target.
//! let mut sim = Sim::connect(Instant::now(), SimConfig::default(), ":7").unwrap();
//! sim.app_write(b"hello");
//! sim.run();
//! assert_eq!(sim.target_received(), b"hello");
//! assert_eq!(sim.app_received(), b"hello");
//! // The request went out glued to "hello"; the response came back glued to the echo.
//! assert_eq!(sim.wire_up(), [&[1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 7][..], b"hello"].concat());
//! assert_eq!(sim.wire_down(), [&[1, 0, 0, 0][..], b"hello"].concat());
//!
//! // An unreachable target: status 7 reaches the application as a typed error.
//! let config = SimConfig { target: TargetScript { reachable: false, ..TargetScript::default() }, ..SimConfig::default() };
//! let mut sim = Sim::connect(Instant::now(), config, "10.0.0.1:80").unwrap();
//! sim.app_write(b"GET /");
//! sim.run();
//! assert_eq!(sim.rejected(), Some(Status::NETWORK_UNREACHABLE));
//! ```

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::{AddrParseError, Address};
use crate::client::{Client, ClientError};
use crate::codec::Decoded;
use crate::server::{
    CloseReason, DialError, DialTarget, Established, Server, ServerConfig, ServerOutput, Transport,
};
use crate::target::Target;
use crate::wire::Status;

/// How the fake target behaves.
#[derive(Debug, Clone)]
pub struct TargetScript {
    /// Whether dialling it succeeds.
    pub reachable: bool,
    /// How long the dial takes.
    pub dial_delay: Duration,
    /// Bytes the target sends as soon as it is connected (server-speaks-first protocols).
    pub greeting: Vec<u8>,
    /// Whether it echoes what it receives.
    pub echo: bool,
    /// Whether it closes right after connecting (and sending any greeting).
    pub close_at_once: bool,
    /// Forwarding mode: whether the service has a target to forward to.
    pub forward_available: bool,
    /// BIND: the address the listen succeeds with, or `None` for a failed listen.
    pub listen: Option<SocketAddr>,
}

impl Default for TargetScript {
    fn default() -> Self {
        TargetScript {
            reachable: true,
            dial_delay: Duration::from_millis(1),
            greeting: Vec::new(),
            echo: true,
            close_at_once: false,
            forward_available: true,
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 40000))),
        }
    }
}

/// Everything a simulation is set up with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The relay server's configuration.
    pub server: ServerConfig,
    /// The client's `nodelay`.
    pub client_nodelay: bool,
    /// The client's credentials.
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
    /// One-way latency of every segment.
    pub latency: Duration,
    /// Largest segment: writes are split into pieces of at most this many bytes.
    pub max_segment: usize,
    /// The fake target.
    pub target: TargetScript,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            server: ServerConfig::default(),
            client_nodelay: false,
            credentials: None,
            latency: Duration::from_millis(5),
            max_segment: usize::MAX,
            target: TargetScript::default(),
        }
    }
}

/// Something that happened, with its fake time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// The server asked to dial.
    Dial(Transport, DialTarget),
    /// The server asked to listen.
    Listen(Transport, Target),
    /// The server entered its data phase.
    Established(Established),
    /// The server closed the connection.
    ServerClosed(CloseReason),
    /// The client's handshake failed.
    ClientFailed(ClientError),
    /// The target closed its connection.
    TargetClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Data,
    Eof,
}

/// Segments in flight in one direction.
#[derive(Debug, Default)]
struct Pipe {
    queue: VecDeque<(Instant, Seg, Vec<u8>)>,
    log: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerSide {
    Handshake,
    Dialing { done_at: Instant },
    Tunnel,
    Closed,
}

/// A simulated relay connection. See the [module documentation](self).
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    config: SimConfig,
    client: Option<Client>,
    server: Server,
    side: ServerSide,
    up: Pipe,
    down: Pipe,
    server_in: Vec<u8>,
    client_in: Vec<u8>,
    downstream_prefix: Vec<u8>,
    target_connected: bool,
    target_received: Vec<u8>,
    app_received: Vec<u8>,
    app_eof: bool,
    events: Vec<(Instant, SimEvent)>,
}

impl Sim {
    /// A client CONNECT to `target` (GOST address text) through a server, starting at `start`.
    pub fn connect(start: Instant, config: SimConfig, target: &str) -> Result<Sim, AddrParseError> {
        Sim::connect_with(start, config, target, Transport::Tcp)
    }

    /// Like [`Sim::connect`], choosing TCP or UDP.
    pub fn connect_with(
        start: Instant,
        config: SimConfig,
        target: &str,
        transport: Transport,
    ) -> Result<Sim, AddrParseError> {
        let addr = Address::parse(target)?;
        let creds = config.credentials.as_ref().map(|(u, p)| (&u[..], &p[..]));
        let client = Client::connect(transport, &addr, creds, config.client_nodelay)
            .map_err(|_| AddrParseError::DomainTooLong)?;
        let mut sim = Sim::raw(start, config);
        sim.client = Some(client);
        sim.flush_client();
        Ok(sim)
    }

    /// A server with no relay client in front: drive it with [`Sim::send_raw`].
    pub fn raw(start: Instant, config: SimConfig) -> Sim {
        let server = Server::new(Arc::new(config.server.clone()), start);
        Sim {
            now: start,
            config,
            client: None,
            server,
            side: ServerSide::Handshake,
            up: Pipe::default(),
            down: Pipe::default(),
            server_in: Vec::new(),
            client_in: Vec::new(),
            downstream_prefix: Vec::new(),
            target_connected: false,
            target_received: Vec::new(),
            app_received: Vec::new(),
            app_eof: false,
            events: Vec::new(),
        }
    }

    /// The application writes payload; the relay client glues its request in front if it has
    /// not gone out yet.
    pub fn app_write(&mut self, data: &[u8]) {
        let mut bytes = match &mut self.client {
            Some(c) => c.take_request().to_vec(),
            None => Vec::new(),
        };
        bytes.extend_from_slice(data);
        self.send_raw(&bytes);
    }

    /// Sends raw bytes to the server, split into segments.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let at = self.now + self.config.latency;
        for chunk in bytes.chunks(self.config.max_segment.max(1)) {
            self.up.queue.push_back((at, Seg::Data, chunk.to_vec()));
        }
    }

    /// The client side closes its connection (a reset or a normal close).
    pub fn client_close(&mut self) {
        let at = self.now + self.config.latency;
        self.up.queue.push_back((at, Seg::Eof, Vec::new()));
    }

    /// Moves the clock forward by `d`, processing everything due by then.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.next_time().filter(|&t| t <= until) {
            self.now = self.now.max(t);
            self.process();
        }
        self.now = until;
        self.process();
    }

    /// Runs until nothing is left to happen (at most 10 000 steps).
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            let Some(t) = self.next_time() else { return };
            self.now = self.now.max(t);
            self.process();
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let dial = match self.side {
            ServerSide::Dialing { done_at } => Some(done_at),
            _ => None,
        };
        let server = match self.side {
            ServerSide::Handshake | ServerSide::Dialing { .. } => self.server.poll_timeout(),
            _ => None,
        };
        [
            self.up.queue.front().map(|s| s.0),
            self.down.queue.front().map(|s| s.0),
            dial,
            server,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn process(&mut self) {
        let now = self.now;
        self.server.handle_timeout(now);
        if let ServerSide::Dialing { done_at } = self.side {
            if done_at <= now {
                let t = &self.config.target;
                let result = if !t.reachable {
                    Err(DialError::Failed)
                } else if self.config.server.forward && !t.forward_available {
                    Err(DialError::NoTarget)
                } else {
                    Ok(())
                };
                self.server.dial_done(result, done_at);
            }
        }
        while let Some((_, seg, bytes)) = self.up.queue.front().filter(|s| s.0 <= now).cloned() {
            self.up.queue.pop_front();
            self.up.log.extend_from_slice(&bytes);
            self.server_receive(seg, &bytes);
        }
        self.drain_server();
        while let Some((_, seg, bytes)) = self.down.queue.front().filter(|s| s.0 <= now).cloned() {
            self.down.queue.pop_front();
            self.down.log.extend_from_slice(&bytes);
            self.client_receive(seg, &bytes);
        }
    }

    fn server_receive(&mut self, seg: Seg, bytes: &[u8]) {
        match (self.side, seg) {
            (ServerSide::Closed, _) => {}
            (ServerSide::Handshake, Seg::Data) => {
                self.server_in.extend_from_slice(bytes);
                let used = self.server.handle_input(&self.server_in, self.now);
                self.server_in.drain(..used.min(self.server_in.len()));
            }
            (ServerSide::Handshake, Seg::Eof) => self.server.handle_eof(),
            (ServerSide::Dialing { .. }, Seg::Data) => self.server_in.extend_from_slice(bytes),
            (ServerSide::Dialing { .. }, Seg::Eof) => self.side = ServerSide::Closed,
            (ServerSide::Tunnel, Seg::Data) => self.target_receive(bytes),
            (ServerSide::Tunnel, Seg::Eof) => self.side = ServerSide::Closed,
        }
    }

    fn drain_server(&mut self) {
        while let Some(out) = self.server.poll_output() {
            match out {
                ServerOutput::Transmit(bytes) => self.send_down(Seg::Data, bytes.as_slice()),
                ServerOutput::Dial(req) => {
                    self.log(SimEvent::Dial(req.network, req.target));
                    self.side = ServerSide::Dialing {
                        done_at: self.now + self.config.target.dial_delay,
                    };
                }
                ServerOutput::Listen(req) => {
                    self.log(SimEvent::Listen(req.network, req.addr));
                    self.server.listen_done(self.config.target.listen.ok_or(()));
                }
                ServerOutput::Established(est) => {
                    self.log(SimEvent::Established(est));
                    if let Established::Tcp { downstream_prefix }
                    | Established::Udp { downstream_prefix } = est
                    {
                        self.downstream_prefix = downstream_prefix.as_slice().to_vec();
                        self.side = ServerSide::Tunnel;
                        self.target_connect();
                    }
                }
                ServerOutput::Close(reason) => {
                    self.log(SimEvent::ServerClosed(reason));
                    self.side = ServerSide::Closed;
                    self.send_down(Seg::Eof, &[]);
                }
            }
        }
    }

    fn target_connect(&mut self) {
        self.target_connected = true;
        let greeting = self.config.target.greeting.clone();
        if !greeting.is_empty() {
            self.target_send(&greeting);
        }
        if self.config.target.close_at_once {
            self.target_connected = false;
            self.log(SimEvent::TargetClosed);
            self.side = ServerSide::Closed;
            self.send_down(Seg::Eof, &[]);
            return;
        }
        // Payload that arrived glued to the request, or during the dial.
        let pending = std::mem::take(&mut self.server_in);
        if !pending.is_empty() {
            self.target_receive(&pending);
        }
    }

    fn target_receive(&mut self, bytes: &[u8]) {
        if !self.target_connected {
            return;
        }
        self.target_received.extend_from_slice(bytes);
        if self.config.target.echo {
            self.target_send(bytes);
        }
    }

    /// The target writes to the server, which forwards to the client with any held prefix.
    fn target_send(&mut self, bytes: &[u8]) {
        let mut out = std::mem::take(&mut self.downstream_prefix);
        out.extend_from_slice(bytes);
        self.send_down(Seg::Data, &out);
    }

    fn send_down(&mut self, seg: Seg, bytes: &[u8]) {
        let at = self.now + self.config.latency;
        if seg == Seg::Eof {
            self.down.queue.push_back((at, seg, Vec::new()));
            return;
        }
        for chunk in bytes.chunks(self.config.max_segment.max(1)) {
            self.down.queue.push_back((at, seg, chunk.to_vec()));
        }
    }

    fn client_receive(&mut self, seg: Seg, bytes: &[u8]) {
        let Some(client) = &mut self.client else {
            self.app_received.extend_from_slice(bytes);
            self.app_eof |= seg == Seg::Eof;
            return;
        };
        if seg == Seg::Eof {
            self.app_eof = true;
            if let Some(e) = client.handle_eof() {
                self.log(SimEvent::ClientFailed(e));
            }
            return;
        }
        if client.is_established() {
            self.app_received.extend_from_slice(bytes);
            return;
        }
        self.client_in.extend_from_slice(bytes);
        match client.handle_response(&self.client_in) {
            Ok(Decoded::Partial { .. }) => {}
            Ok(Decoded::Complete { consumed, .. }) => {
                let rest = self.client_in.split_off(consumed);
                self.app_received.extend_from_slice(&rest);
                self.client_in.clear();
            }
            Err(e) => self.log(SimEvent::ClientFailed(e)),
        }
    }

    fn flush_client(&mut self) {
        if let Some(req) = self
            .client
            .as_mut()
            .and_then(|c| c.poll_transmit())
            .map(<[u8]>::to_vec)
        {
            self.send_raw(&req);
        }
    }

    fn log(&mut self, e: SimEvent) {
        self.events.push((self.now, e));
    }

    /// The fake clock.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Payload the application has received (after the client stripped the response).
    pub fn app_received(&self) -> &[u8] {
        &self.app_received
    }
    /// True once the application saw the end of the downstream.
    pub fn app_eof(&self) -> bool {
        self.app_eof
    }
    /// Bytes the target has received.
    pub fn target_received(&self) -> &[u8] {
        &self.target_received
    }
    /// Every byte delivered client → server so far.
    pub fn wire_up(&self) -> &[u8] {
        &self.up.log
    }
    /// Every byte delivered server → client so far.
    pub fn wire_down(&self) -> &[u8] {
        &self.down.log
    }
    /// Everything that happened, with fake times.
    pub fn events(&self) -> &[(Instant, SimEvent)] {
        &self.events
    }
    /// Why and when the server closed, if it did.
    pub fn server_closed(&self) -> Option<(Instant, CloseReason)> {
        self.events.iter().find_map(|(t, e)| match e {
            SimEvent::ServerClosed(r) => Some((*t, *r)),
            _ => None,
        })
    }
    /// The status the client was refused with, if any.
    pub fn rejected(&self) -> Option<Status> {
        self.events.iter().find_map(|(_, e)| match e {
            SimEvent::ClientFailed(ClientError::Rejected(s)) => Some(*s),
            _ => None,
        })
    }
    /// The client's handshake error, if any.
    pub fn client_error(&self) -> Option<ClientError> {
        self.events.iter().find_map(|(_, e)| match e {
            SimEvent::ClientFailed(err) => Some(*err),
            _ => None,
        })
    }
}
