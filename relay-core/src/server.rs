//! The relay server handshake, as GOST's relay handler performs it.
//!
//! One [`Server`] per accepted connection. It reads the request under one deadline for the whole
//! request, authenticates before it looks at the command, decides what to do, asks the adapter
//! to dial or listen, maps the outcome to a status, and says when the connection enters its data
//! phase and how (see [`Established`]). It never touches a socket or reads a clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_core::server::{DialTarget, Established, Server, ServerConfig, ServerOutput, Transport};
//! use relay_core::target::TargetHost;
//!
//! let now = Instant::now();
//! let mut server = Server::new(ServerConfig::default().into(), now);
//! // A GOST client's CONNECT to ":22", glued to the first payload bytes.
//! let input = [1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 22, b'S', b'S', b'H'];
//! let used = server.handle_input(&input, now);
//! assert_eq!(&input[used..], b"SSH"); // payload for the target, once dialled
//!
//! let Some(ServerOutput::Dial(dial)) = server.poll_output() else { panic!() };
//! assert_eq!(dial.network, Transport::Tcp);
//! let DialTarget::Requested(target) = dial.target else { panic!() };
//! assert_eq!((target.host, target.port), (TargetHost::Local, 22));
//!
//! server.dial_done(Ok(()), now + Duration::from_millis(1));
//! // nodelay=false: the OK response is glued to the first bytes the target sends.
//! let Some(ServerOutput::Established(Established::Tcp { downstream_prefix })) = server.poll_output()
//! else { panic!() };
//! assert_eq!(downstream_prefix.as_slice(), &[1, 0, 0, 0]);
//! assert_eq!(server.poll_output(), None);
//! ```

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::{Address, Host};
use crate::auth::Authenticator;
use crate::codec::Decoded;
use crate::policy::Policy;
use crate::target::Target;
use crate::wire::{Feature, Features, Network, Request, Response, Status, WireError};

/// What a relay service does with requests.
#[derive(Clone)]
pub struct ServerConfig {
    /// Deadline for reading the whole request (GOST `readTimeout`, default 15 s).
    pub read_timeout: Duration,
    /// Deadline for the adapter's dial of the target (GOST `dialTimeout`, default 15 s).
    pub dial_timeout: Duration,
    /// Send the OK response right after the dial (true) or glue it to the first bytes coming
    /// back from the target (false, GOST's default).
    pub nodelay: bool,
    /// Accept BIND (remote forwarding and UDP association); refused with status 3 otherwise.
    pub bind: bool,
    /// The service forwards every request to its own targets (GOST `-L relay://:8420/target`):
    /// the requested address and command are ignored, TCP versus UDP is honoured.
    pub forward: bool,
    /// Credentials check (for example [`crate::auth::Credentials`]); `None` accepts everyone.
    pub auth: Option<Arc<dyn Authenticator + Send + Sync>>,
    /// Which targets may be dialled (bypass, allow list, SSRF guard); `None` allows all.
    pub policy: Option<Arc<Policy>>,
}

impl ServerConfig {
    /// Whether an address the target resolved to may be connected to. Adapters check every
    /// resolved address and report a refusal as [`DialError::Forbidden`].
    pub fn allows_resolved(&self, ip: std::net::IpAddr) -> bool {
        self.policy.as_ref().is_none_or(|p| p.allows_ip(ip))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            read_timeout: Duration::from_secs(15),
            dial_timeout: Duration::from_secs(15),
            nodelay: false,
            bind: false,
            forward: false,
            auth: None,
            policy: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("read_timeout", &self.read_timeout)
            .field("dial_timeout", &self.dial_timeout)
            .field("nodelay", &self.nodelay)
            .field("bind", &self.bind)
            .field("forward", &self.forward)
            .field("auth", &self.auth.is_some())
            .field("policy", &self.policy)
            .finish()
    }
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A stream.
    Tcp,
    /// Datagrams.
    Udp,
}

/// Where the adapter should connect.
// The inline domain is the point: handing a target over never allocates.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialTarget {
    /// The address the client asked for.
    Requested(Target),
    /// The service's own forward target (forwarding mode): the adapter picks one.
    Forward,
}

/// Ask the adapter to connect to a target, then call [`Server::dial_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialRequest {
    /// TCP stream or connected UDP socket.
    pub network: Transport,
    /// Where to.
    pub target: DialTarget,
}

/// Ask the adapter to listen (BIND), then call [`Server::listen_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenRequest {
    /// TCP listener or UDP socket.
    pub network: Transport,
    /// Where to listen; [`crate::target::TargetHost::Local`] means every interface.
    pub addr: Target,
}

/// Why a dial did not produce a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialError {
    /// Forwarding mode: no forward target is available (status 5).
    NoTarget,
    /// Resolution or connection failed (status 7, or 6 in forwarding mode).
    Failed,
    /// The target resolved to an address the policy refuses (status 3).
    Forbidden,
}

/// A relay response small enough to live inline (at most an OK with an IPv6 address).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResponseBytes {
    len: u8,
    bytes: [u8; 32],
}

impl ResponseBytes {
    /// No bytes.
    pub const EMPTY: ResponseBytes = ResponseBytes {
        len: 0,
        bytes: [0; 32],
    };

    pub(crate) fn of(status: Status, addr: Option<Address<'_>>) -> ResponseBytes {
        let feature;
        let features = match addr {
            Some(a) => {
                feature = [Feature::Addr(a)];
                Features::new(&feature)
            }
            None => Features::EMPTY,
        };
        let mut bytes = [0u8; 32];
        // An IP address always fits: 4 + 3 + 19 = 26 bytes.
        let len = Response { status, features }
            .encode(&mut bytes)
            .unwrap_or(0);
        ResponseBytes {
            len: len as u8,
            bytes,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for ResponseBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseBytes({:02x?})", self.as_slice())
    }
}

/// How the connection carries data once the handshake is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Established {
    /// TCP tunnel: copy bytes both ways. `downstream_prefix` (the held OK response when
    /// `nodelay` is off) goes in front of the first bytes written to the client, in the same
    /// write; if the target ends without sending anything, it is dropped, as GOST does.
    Tcp {
        /// Bytes to glue in front of the first target→client write (may be empty).
        downstream_prefix: ResponseBytes,
    },
    /// UDP over the stream with the 2-byte length framing (see [`crate::udp`]), to the dialled
    /// UDP socket. `downstream_prefix` goes in front of the first framed reply.
    Udp {
        /// Bytes to glue in front of the first framed datagram to the client (may be empty).
        downstream_prefix: ResponseBytes,
    },
    /// TCP BIND: the OK response is sent; the connection is now an smux session in which this
    /// server is the smux *client* and opens one stream per accepted connection.
    TcpBind {
        /// Where the listener is.
        bound: SocketAddr,
    },
    /// UDP BIND / association: the OK response is sent; datagrams use the SOCKS5-style framing.
    UdpBind {
        /// Where the UDP socket is.
        bound: SocketAddr,
    },
}

/// Why the server closed the connection. Refusals with a status are sent before the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The request did not arrive whole before `read_timeout` (no response, as GOST).
    HandshakeTimeout,
    /// The client closed before the request was whole (no response).
    PeerClosed,
    /// The request could not be decoded (no response, as GOST).
    Malformed(WireError),
    /// Refused with this status.
    Refused(Status),
    /// UDP BIND: the listen failed (no response, as GOST).
    UdpListenFailed,
}

/// What the server wants done next; drain with [`Server::poll_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOutput {
    /// Write these bytes to the client.
    Transmit(ResponseBytes),
    /// Connect to a target.
    Dial(DialRequest),
    /// Open a listener.
    Listen(ListenRequest),
    /// The handshake is over: enter the data phase.
    Established(Established),
    /// Close the connection (after writing any `Transmit` before it).
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading {
        deadline: Instant,
    },
    Dialing {
        deadline: Instant,
        network: Transport,
        forward: bool,
    },
    Listening {
        network: Transport,
    },
    Done,
}

/// The server side of one relay connection.
pub struct Server {
    config: Arc<ServerConfig>,
    phase: Phase,
    transmit: Option<ResponseBytes>,
    action: Option<ServerOutput>,
    close: Option<CloseReason>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A connection accepted at `now`; the request must be whole by `now + read_timeout`.
    pub fn new(config: Arc<ServerConfig>, now: Instant) -> Server {
        let deadline = now + config.read_timeout;
        Server {
            config,
            phase: Phase::Reading { deadline },
            transmit: None,
            action: None,
            close: None,
        }
    }

    /// Feeds the bytes received so far (from the start of the connection, not yet consumed).
    /// Returns how many belong to the request: 0 until it is whole; what follows it is payload
    /// for the target and must be kept.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> usize {
        self.handle_timeout(now);
        if !matches!(self.phase, Phase::Reading { .. }) {
            return 0;
        }
        match Request::decode(buf) {
            Ok(Decoded::Partial { .. }) => 0,
            Ok(Decoded::Complete { value, consumed }) => {
                self.handle_request(&value, now);
                consumed
            }
            Err(e) => {
                self.finish(None, CloseReason::Malformed(e.error));
                e.consumed
            }
        }
    }

    /// The client closed its side (or the connection failed) before the request was whole.
    pub fn handle_eof(&mut self) {
        if matches!(self.phase, Phase::Reading { .. }) {
            self.finish(None, CloseReason::PeerClosed);
        }
    }

    fn handle_request(&mut self, req: &Request<'_>, now: Instant) {
        if let Some(auth) = self.config.auth.as_ref().filter(|a| a.required()) {
            let accepted = req
                .features
                .user_auth()
                .is_some_and(|(user, pass)| auth.verify(user, pass));
            if !accepted {
                return self.refuse(Status::UNAUTHORIZED);
            }
        }
        let network = if req.cmd.is_udp() {
            Network::UDP
        } else {
            req.features.network().unwrap_or(Network::TCP)
        };
        if self.config.forward {
            return self.dial(network, None, now);
        }
        match req.cmd.command() {
            0 | 1 => match req.features.addr().map(|a| Target::from_address(&a)) {
                Some(t)
                    if self
                        .config
                        .policy
                        .as_ref()
                        .is_some_and(|p| !p.allows_target(&t)) =>
                {
                    self.refuse(Status::FORBIDDEN)
                }
                Some(target) => self.dial(network, Some(target), now),
                None => self.refuse(Status::BAD_REQUEST),
            },
            2 => self.bind(network, req.features.addr()),
            _ => self.refuse(Status::BAD_REQUEST),
        }
    }

    fn dial(&mut self, network: Network, target: Option<Target>, now: Instant) {
        let transport = match network.name() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            // unix, serial and ip targets are not served: GOST answers a failed dial.
            _ => return self.refuse(Status::NETWORK_UNREACHABLE),
        };
        let forward = target.is_none();
        self.phase = Phase::Dialing {
            deadline: now + self.config.dial_timeout,
            network: transport,
            forward,
        };
        let target = target.map_or(DialTarget::Forward, DialTarget::Requested);
        self.action = Some(ServerOutput::Dial(DialRequest {
            network: transport,
            target,
        }));
    }

    fn bind(&mut self, network: Network, addr: Option<Address<'_>>) {
        if !self.config.bind {
            return self.refuse(Status::FORBIDDEN);
        }
        let transport = match network.name() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return self.refuse(Status::BAD_REQUEST),
        };
        let addr = addr.map_or(
            Target {
                host: crate::target::TargetHost::Local,
                port: 0,
            },
            |a| Target::from_address(&repair_listen_address(a)),
        );
        self.phase = Phase::Listening { network: transport };
        self.action = Some(ServerOutput::Listen(ListenRequest {
            network: transport,
            addr,
        }));
    }

    /// The outcome of the [`DialRequest`]. Late or unexpected calls are ignored.
    pub fn dial_done(&mut self, result: Result<(), DialError>, now: Instant) {
        self.handle_timeout(now);
        self.complete_dial(result);
    }

    fn complete_dial(&mut self, result: Result<(), DialError>) {
        let Phase::Dialing {
            network, forward, ..
        } = self.phase
        else {
            return;
        };
        match result {
            Ok(()) => {
                let ok = ResponseBytes::of(Status::OK, None);
                let downstream_prefix = if self.config.nodelay {
                    self.transmit = Some(ok);
                    ResponseBytes::EMPTY
                } else {
                    ok
                };
                self.phase = Phase::Done;
                self.action = Some(ServerOutput::Established(match network {
                    Transport::Tcp => Established::Tcp { downstream_prefix },
                    Transport::Udp => Established::Udp { downstream_prefix },
                }));
            }
            Err(DialError::NoTarget) => self.refuse(Status::SERVICE_UNAVAILABLE),
            Err(DialError::Forbidden) => self.refuse(Status::FORBIDDEN),
            Err(DialError::Failed) if forward => self.refuse(Status::HOST_UNREACHABLE),
            Err(DialError::Failed) => self.refuse(Status::NETWORK_UNREACHABLE),
        }
    }

    /// The outcome of the [`ListenRequest`]: the bound address, or failure. Unexpected calls are
    /// ignored.
    pub fn listen_done(&mut self, result: Result<SocketAddr, ()>) {
        let Phase::Listening { network } = self.phase else {
            return;
        };
        match (result, network) {
            (Ok(bound), _) => {
                self.phase = Phase::Done;
                self.transmit = Some(ResponseBytes::of(
                    Status::OK,
                    Some(Address::from_socket(bound)),
                ));
                self.action = Some(ServerOutput::Established(match network {
                    Transport::Tcp => Established::TcpBind { bound },
                    Transport::Udp => Established::UdpBind { bound },
                }));
            }
            (Err(()), Transport::Tcp) => self.refuse(Status::SERVICE_UNAVAILABLE),
            (Err(()), Transport::Udp) => self.finish(None, CloseReason::UdpListenFailed),
        }
    }

    /// When [`Server::handle_timeout`] wants to be called: the request or dial deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Reading { deadline } | Phase::Dialing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Applies deadlines that have passed by `now`; harmless at any other time.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Reading { deadline } if now >= deadline => {
                self.finish(None, CloseReason::HandshakeTimeout);
            }
            Phase::Dialing { deadline, .. } if now >= deadline => {
                self.complete_dial(Err(DialError::Failed));
            }
            _ => {}
        }
    }

    /// The next thing to do, in order: bytes to write, then an action or the data phase, then
    /// a close.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        if let Some(t) = self.transmit.take() {
            return Some(ServerOutput::Transmit(t));
        }
        if let Some(a) = self.action.take() {
            return Some(a);
        }
        self.close.take().map(ServerOutput::Close)
    }

    /// The configuration this connection runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// True once the handshake has ended, in the data phase or refused.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn refuse(&mut self, status: Status) {
        self.finish(
            Some(ResponseBytes::of(status, None)),
            CloseReason::Refused(status),
        );
    }

    fn finish(&mut self, response: Option<ResponseBytes>, reason: CloseReason) {
        self.phase = Phase::Done;
        self.transmit = response;
        self.action = None;
        self.close = Some(reason);
    }
}

/// GOST nightlies (go-gost/x ≥ v0.10.4) send a port-only BIND as the domain `0.0.0.0::<port>`
/// with port 0, which GOST's own servers cannot listen on. We repair it to `0.0.0.0:<port>`.
fn repair_listen_address(addr: Address<'_>) -> Address<'_> {
    let Host::Domain(name) = addr.host else {
        return addr;
    };
    let Some(text) = core::str::from_utf8(name).ok().filter(|_| addr.port == 0) else {
        return addr;
    };
    let Some((host, port)) = text.rsplit_once("::") else {
        return addr;
    };
    match (host.parse::<std::net::IpAddr>(), port.parse::<u16>()) {
        (Ok(ip), Ok(port)) => Address::from_socket(SocketAddr::new(ip, port)),
        _ => addr,
    }
}
