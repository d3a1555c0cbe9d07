//! Client-side services: local TCP/UDP port forwarding and proxy entry points (SOCKS5, SOCKS4,
//! HTTP, or GOST's `auto`), each reaching its targets through a relay chain or directly.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use relay_core::admission::Limits;
use relay_core::auth::{Authenticator, Credentials};
use relay_core::buf::RecvBuf;
use relay_core::entry::http::{HttpRequest, HttpStatus, RequestKind};
use relay_core::entry::socks4::{self, Socks4Request};
use relay_core::entry::socks5::{self, Socks5Request, Socks5Server, Step};
use relay_core::entry::{Answer, Protocol, detect};
use relay_core::route::Chain;
use relay_core::select::NodeSet;
use relay_core::server::Transport;
use relay_core::target::Target;
use relay_core::udp::{Datagram, MAX_DATAGRAM};
use relay_core::{Address, Decoded};
use smol::Timer;
use smol::channel::{Receiver, Sender, bounded};
use smol::net::{TcpListener, TcpStream, UdpSocket};

use crate::dial;
use crate::gate::{Gate, Ticket};
use crate::pipe::pipe;
use crate::route::{self, BoxStream};
use crate::udp::{DatagramRecv, DatagramSend, FramedRecv, FramedSend};

/// How outbound connections are made.
#[derive(Debug)]
pub enum Upstream {
    /// Straight to the target.
    Direct,
    /// Through a chain of relay servers, every node over plain TCP.
    Chain(Mutex<Chain>),
    /// Through a chain of relay servers, each node over its own data channel (TLS, WebSocket…).
    Route(route::Route),
}

impl Upstream {
    /// Opens a stream to `target` (TCP) or a tunnel carrying length-framed datagrams (UDP).
    pub async fn connect(
        &self,
        transport: Transport,
        target: &Target,
        timeout: Duration,
    ) -> io::Result<BoxStream> {
        let deadline = Some(Instant::now() + timeout);
        match self {
            Upstream::Chain(chain) => {
                route::connect(chain, transport, &target.as_address(), deadline).await
            }
            Upstream::Route(r) => r.connect(transport, &target.as_address(), deadline).await,
            Upstream::Direct => self.connect_direct(transport, target, deadline).await,
        }
    }

    /// Like [`Upstream::connect`], confirmed as [`route::connect_confirmed`] says: for entry
    /// points, which must answer their client with the outcome.
    pub async fn connect_confirmed(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> io::Result<BoxStream> {
        let deadline = Some(Instant::now() + timeout);
        let to = target.as_address();
        match self {
            Upstream::Chain(chain) => {
                route::connect_confirmed(chain, Transport::Tcp, &to, deadline).await
            }
            Upstream::Route(r) => r.connect_confirmed(Transport::Tcp, &to, deadline).await,
            Upstream::Direct => self.connect_direct(Transport::Tcp, target, deadline).await,
        }
    }

    async fn connect_direct(
        &self,
        transport: Transport,
        target: &Target,
        deadline: Option<Instant>,
    ) -> io::Result<BoxStream> {
        match transport {
            Transport::Tcp => Ok(Box::new(dial::tcp(target, deadline, None).await?)),
            Transport::Udp => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "UDP forwarding needs a relay chain",
            )),
        }
    }
}

/// A port-forwarding service: where it sends what it accepts.
#[derive(Debug)]
pub struct ForwardConfig {
    /// Chain or direct.
    pub upstream: Upstream,
    /// The forward targets; empty means GOST's placeholder `:0` (the relay server is the
    /// forwarder).
    pub targets: Mutex<NodeSet<Target>>,
    /// Per-attempt connect timeout (GOST `dialTimeout`).
    pub dial_timeout: Duration,
    /// Admission limits of the accept loop (TCP forwarding).
    pub limits: Limits,
}

impl ForwardConfig {
    fn pick(&self) -> Target {
        let mut set = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        match set.pick(Instant::now()) {
            Some((_, t)) => *t,
            None => Target {
                host: relay_core::target::TargetHost::Local,
                port: 0,
            },
        }
    }
}

/// Forwards every TCP connection accepted on `listener` to a target of `config`.
pub async fn serve_tcp_forward(
    listener: TcpListener,
    config: Arc<ForwardConfig>,
) -> io::Result<()> {
    let gate = Gate::new(config.limits);
    loop {
        let (local, peer, ticket) = gate.accept(&listener).await?;
        ticket.handshake_done();
        let config = config.clone();
        smol::spawn(async move {
            let _ticket = ticket;
            let target = config.pick();
            let started = Instant::now();
            let result = async {
                local.set_nodelay(true)?;
                let remote = config
                    .upstream
                    .connect(Transport::Tcp, &target, config.dial_timeout)
                    .await?;
                let (rr, rw) = futures_lite::io::split(remote);
                pipe((local.clone(), local), (rr, rw), &[], &[]).await
            }
            .await;
            match result {
                Ok(t) => log::info!(
                    "tcp {peer} -> {target}: up {} B, down {} B, {:?}",
                    t.up,
                    t.down,
                    started.elapsed()
                ),
                Err(e) => log::info!("tcp {peer} -> {target}: {e}"),
            }
        })
        .detach();
    }
}

/// How a UDP forwarding service keeps per-peer sessions (GOST's udp listener options).
#[derive(Debug, Clone, Copy)]
pub struct UdpForwardOptions {
    /// Keep a peer's session after its first reply (GOST default false: one exchange per
    /// relay connection).
    pub keepalive: bool,
    /// Idle time after which a kept session ends.
    pub ttl: Duration,
    /// Largest local datagram read (longer ones are truncated, as GOST does).
    pub read_buffer_size: usize,
    /// Datagrams queued per peer before new ones are dropped.
    pub queue: usize,
}

/// Forwards UDP datagrams received on `socket`, one relay tunnel per peer address.
pub async fn serve_udp_forward(
    socket: UdpSocket,
    config: Arc<ForwardConfig>,
    options: UdpForwardOptions,
) -> io::Result<()> {
    let sessions: Arc<Mutex<HashMap<SocketAddr, Sender<Vec<u8>>>>> = Arc::default();
    let pool = Arc::new(BufPool::default());
    let mut buf = vec![0u8; options.read_buffer_size.max(1)];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let datagram = pool.take(&buf[..n]);
        let existing = sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .cloned();
        if let Some(tx) = existing {
            if tx.try_send(datagram).is_err() {
                log::debug!("udp {peer}: queue full, datagram dropped");
            }
            continue;
        }
        let (tx, rx) = bounded(options.queue.max(1));
        let _ = tx.try_send(datagram);
        sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, tx);
        let (socket, config, sessions) = (socket.clone(), config.clone(), sessions.clone());
        let pool = pool.clone();
        smol::spawn(async move {
            let target = config.pick();
            if let Err(e) = udp_session(&socket, peer, rx, &pool, &config, &target, options).await {
                log::info!("udp {peer} -> {target}: {e}");
            }
            sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&peer);
        })
        .detach();
    }
}

/// Datagram buffers handed from the forwarder's socket to its per-peer sessions and back, so
/// that a steady flow of datagrams allocates nothing. Bounded: at most `MAX` idle buffers.
#[derive(Debug, Default)]
struct BufPool(Mutex<Vec<Vec<u8>>>);

impl BufPool {
    const MAX: usize = 256;

    /// A buffer holding a copy of `bytes` (a recycled one when available).
    fn take(&self, bytes: &[u8]) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        v
    }

    /// Returns a buffer for reuse.
    fn give(&self, v: Vec<u8>) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < Self::MAX {
            idle.push(v);
        }
    }
}

async fn udp_session(
    socket: &UdpSocket,
    peer: SocketAddr,
    rx: Receiver<Vec<u8>>,
    pool: &BufPool,
    config: &ForwardConfig,
    target: &Target,
    options: UdpForwardOptions,
) -> io::Result<()> {
    let tunnel = config
        .upstream
        .connect(Transport::Udp, target, config.dial_timeout)
        .await?;
    let (r, w) = futures_lite::io::split(tunnel);
    let mut send = FramedSend::new(w, &[]);
    let mut recv = FramedRecv::new(r, &[]);
    let up = async {
        while let Ok(d) = rx.recv().await {
            send.send(&d).await?;
            pool.give(d);
        }
        io::Result::Ok(())
    };
    let down = async {
        loop {
            let next = recv.recv().or(async {
                Timer::after(options.ttl).await;
                Err(io::ErrorKind::TimedOut.into())
            });
            match next.await {
                Ok(Some(d)) => {
                    socket.send_to(d, peer).await?;
                    if !options.keepalive {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::TimedOut && options.keepalive => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    up.or(down).await
}

/// Which proxy protocols an entry service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// SOCKS5 only.
    Socks5,
    /// HTTP only.
    Http,
    /// SOCKS4/4a, SOCKS5 and HTTP, told apart by the first byte (GOST's `auto`).
    Auto,
}

/// A proxy entry service.
#[derive(Debug)]
pub struct EntryConfig {
    /// Chain or direct.
    pub upstream: Upstream,
    /// Users allowed to use the proxy; empty lets everyone in.
    pub credentials: Credentials,
    /// Protocols spoken.
    pub kind: EntryKind,
    /// Per-attempt connect timeout.
    pub dial_timeout: Duration,
    /// Deadline for a client's handshake.
    pub handshake_timeout: Duration,
    /// Admission limits of the accept loop.
    pub limits: Limits,
}

/// Serves proxy clients on `listener`.
pub async fn serve_entry(listener: TcpListener, config: Arc<EntryConfig>) -> io::Result<()> {
    let gate = Gate::new(config.limits);
    loop {
        let (local, peer, ticket) = gate.accept(&listener).await?;
        let config = config.clone();
        smol::spawn(async move {
            if let Err(e) = entry(local, &config, &ticket).await {
                log::info!("proxy {peer}: {e}");
            }
        })
        .detach();
    }
}

/// What a proxy client asked for.
// `Target` keeps its domain inline so that handing it on never allocates.
#[allow(clippy::large_enum_variant)]
enum Wanted {
    /// A tunnel to this target, answered as `Accepted` says.
    Connect(Target, Accepted),
    /// A SOCKS5 UDP association.
    Associate,
}

/// A SOCKS5 UDP ASSOCIATE served through a relay UDP association (a UDP BIND of `0.0.0.0:0`,
/// which needs `bind=true` on the relay server): datagrams from the client's local UDP socket
/// (SOCKS5 UDP packets, from the control connection's address only) go up with their
/// destination; replies come back tagged with their source. It lasts as long as the control
/// connection.
async fn udp_associate(mut local: TcpStream, config: &EntryConfig) -> io::Result<()> {
    let any = Address::from_socket(SocketAddr::from(([0, 0, 0, 0], 0)));
    let deadline = Some(Instant::now() + config.dial_timeout);
    let tunnel = match &config.upstream {
        Upstream::Chain(chain) => route::bind(chain, Transport::Udp, &any, deadline).await,
        Upstream::Route(r) => r.bind(Transport::Udp, &any, deadline).await,
        Upstream::Direct => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "UDP ASSOCIATE needs a relay chain",
        )),
    };
    let stream = match tunnel {
        Ok((stream, _)) => stream,
        Err(e) => {
            local.write_all(Answer::Socks5.failure()).await?;
            return Err(e);
        }
    };
    let peer = local.peer_addr()?;
    let socket = UdpSocket::bind(SocketAddr::new(local.local_addr()?.ip(), 0)).await?;
    let mut reply = [0u8; 32];
    let n = socks5::encode_reply(
        socks5::ReplyCode::SUCCEEDED,
        &Address::from_socket(socket.local_addr()?),
        &mut reply,
    )
    .map_err(io::Error::other)?;
    local.write_all(&reply[..n]).await?;
    let (r, w) = futures_lite::io::split(stream);
    let mut recv = DatagramRecv::new(r, &[]);
    let mut send = DatagramSend::new(w);
    let client: Mutex<Option<SocketAddr>> = Mutex::new(None);
    let up = async {
        let mut buf = vec![0u8; MAX_DATAGRAM + 262];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await?;
            if from.ip() != peer.ip() {
                continue;
            }
            *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
            match Datagram::decode_packet(&buf[..n]) {
                Ok(d) if !d.payload.is_empty() => send.send(&d).await?,
                Ok(_) => {}
                Err(e) => log::debug!("socks5 udp {from}: packet dropped: {e}"),
            }
        }
    };
    let down = async {
        let mut out = vec![0u8; MAX_DATAGRAM + 262];
        while let Some(d) = recv.recv().await? {
            let to = *client.lock().unwrap_or_else(|p| p.into_inner());
            let (Some(to), Ok(n)) = (to, d.encode_packet(&mut out)) else {
                continue;
            };
            socket.send_to(&out[..n], to).await?;
        }
        io::Result::Ok(())
    };
    let control = async {
        let mut sink = [0u8; 64];
        while local.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    up.or(down).or(control).await
}

/// What an entry handshake produced: how to answer once connected, and the rewritten head of
/// a forwarded HTTP request.
struct Accepted {
    answer: Answer,
    head: Vec<u8>,
}

impl Accepted {
    fn plain(answer: Answer) -> Accepted {
        Accepted {
            answer,
            head: Vec::new(),
        }
    }
}

async fn read_more(local: &mut TcpStream, rb: &mut RecvBuf) -> io::Result<()> {
    let space = rb.unfilled();
    if space.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handshake too large",
        ));
    }
    let n = local.read(space).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    rb.filled(n);
    Ok(())
}

async fn entry(mut local: TcpStream, config: &EntryConfig, ticket: &Ticket) -> io::Result<()> {
    local.set_nodelay(true)?;
    let mut rb = RecvBuf::with_capacity(relay_core::entry::http::MAX_HEAD + 1024);
    let handshake = async {
        read_more(&mut local, &mut rb).await?;
        let protocol = match (config.kind, detect(rb.data())) {
            (EntryKind::Socks5, _) => Protocol::Socks5,
            (EntryKind::Http, _) => Protocol::Http,
            (EntryKind::Auto, Some(p)) => p,
            (EntryKind::Auto, None) => Protocol::Http,
        };
        match protocol {
            Protocol::Socks5 => socks5_handshake(&mut local, &mut rb, config).await,
            Protocol::Socks4 => socks4_handshake(&mut local, &mut rb).await,
            Protocol::Http | Protocol::Unknown => http_handshake(&mut local, &mut rb, config).await,
        }
    };
    let wanted = handshake
        .or(async {
            Timer::after(config.handshake_timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await?;
    ticket.handshake_done();
    let (target, accepted) = match wanted {
        Wanted::Connect(target, accepted) => (target, accepted),
        Wanted::Associate => return udp_associate(local, config).await,
    };
    let remote = match config
        .upstream
        .connect_confirmed(&target, config.dial_timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            local.write_all(accepted.answer.failure()).await?;
            return Err(e);
        }
    };
    local.write_all(accepted.answer.success()).await?;
    let mut head = accepted.head;
    head.extend_from_slice(rb.data());
    let (rr, rw) = futures_lite::io::split(remote);
    let t = pipe((local.clone(), local), (rr, rw), &head, &[]).await?;
    log::info!("proxy -> {target}: up {} B, down {} B", t.up, t.down);
    Ok(())
}

async fn socks5_handshake(
    local: &mut TcpStream,
    rb: &mut RecvBuf,
    config: &EntryConfig,
) -> io::Result<Wanted> {
    let mut machine = Socks5Server::new(&config.credentials);
    loop {
        match machine.handle_input(rb.data()) {
            Ok(Step::NeedMore { .. }) => read_more(local, rb).await?,
            Ok(Step::Reply { consumed, reply }) => {
                local.write_all(reply).await?;
                rb.consume(consumed);
            }
            Ok(Step::Request { consumed, request }) => {
                let wanted = match request {
                    Socks5Request::Connect { target } => Wanted::Connect(
                        Target::from_address(&target),
                        Accepted::plain(Answer::Socks5),
                    ),
                    Socks5Request::UdpAssociate { .. } => Wanted::Associate,
                };
                rb.consume(consumed);
                return Ok(wanted);
            }
            Ok(Step::Refused { reply, error, .. }) => {
                local.write_all(reply).await?;
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, error));
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

async fn socks4_handshake(local: &mut TcpStream, rb: &mut RecvBuf) -> io::Result<Wanted> {
    loop {
        match Socks4Request::decode(rb.data()) {
            Ok(Decoded::Partial { .. }) => read_more(local, rb).await?,
            Ok(Decoded::Complete { value, consumed }) => {
                let target = Target::from_address(&value.target);
                rb.consume(consumed);
                return Ok(Wanted::Connect(target, Accepted::plain(Answer::Socks4)));
            }
            Err(e) => {
                local.write_all(&socks4::encode_reply(false)).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

async fn http_handshake(
    local: &mut TcpStream,
    rb: &mut RecvBuf,
    config: &EntryConfig,
) -> io::Result<Wanted> {
    loop {
        match HttpRequest::decode(rb.data()) {
            Ok(Decoded::Partial { .. }) => read_more(local, rb).await?,
            Ok(Decoded::Complete { value, consumed }) => {
                if config.credentials.required() {
                    let mut scratch = [0u8; 512];
                    let ok = matches!(
                        value.proxy_credentials(&mut scratch),
                        Ok(Some(up)) if config.credentials.verify(up.user, up.pass)
                    );
                    if !ok {
                        local
                            .write_all(HttpStatus::ProxyAuthRequired.response())
                            .await?;
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            "proxy authentication",
                        ));
                    }
                }
                let target = Target::from_address(&value.target);
                let accepted = match value.kind {
                    RequestKind::Connect => Accepted::plain(Answer::HttpConnect),
                    RequestKind::Forward { .. } => {
                        let mut head = vec![0u8; value.forward_head_len()];
                        let n = value
                            .write_forward_head(&mut head)
                            .map_err(io::Error::other)?;
                        head.truncate(n);
                        Accepted {
                            answer: Answer::HttpForward,
                            head,
                        }
                    }
                };
                rb.consume(consumed);
                return Ok(Wanted::Connect(target, accepted));
            }
            Err(e) => {
                local.write_all(e.status().response()).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}
