//! Serving relay: an accept loop and the per-connection driver of [`relay_core::server::Server`].

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, future};
use relay_core::Address;
use relay_core::admission::Limits;
use relay_core::bind::{self, SendFailure, SendVerdict, UdpRelay, UdpRelayStats};
use relay_core::mux::{MuxConfig, Role};
use relay_core::select::NodeSet;
use relay_core::server::{
    CloseReason, DialError, DialRequest, DialTarget, Established, ListenRequest, Server,
    ServerConfig, ServerOutput, Transport,
};
use relay_core::target::Target;
use relay_core::udp::{Datagram, GOST_UDP_BUFFER, MAX_DATAGRAM};
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

use crate::channel::{self, Acceptor};
use crate::dial;
use crate::gate::Gate;
use crate::mux::{Mux, MuxStream};
use crate::pipe::{Transferred, pipe};
use crate::udp::{self, DatagramRecv, DatagramSend, FramedRecv, FramedSend};

/// Everything a relay service needs besides its listener.
#[derive(Debug)]
pub struct ServeConfig {
    /// The protocol decisions.
    pub relay: Arc<ServerConfig>,
    /// Forwarding mode: the targets to forward to (required when `relay.forward` is set).
    pub forward: Option<Mutex<NodeSet<Target>>>,
    /// The mux settings of TCP BIND sessions (GOST's defaults: smux v1, keepalive 10 s / 30 s).
    pub mux: MuxConfig,
    /// UDP BIND: largest datagram relayed each way (`udpBufferSize`, GOST 4096); longer ones
    /// are cut and counted.
    pub udp_buffer_size: usize,
    /// Admission limits of the accept loop ([`serve`], [`serve_channel`]).
    pub limits: Limits,
}

impl ServeConfig {
    /// A plain relay service (no forwarding), GOST's mux and UDP defaults.
    pub fn new(relay: ServerConfig) -> ServeConfig {
        ServeConfig {
            relay: Arc::new(relay),
            forward: None,
            mux: MuxConfig::default(),
            udp_buffer_size: GOST_UDP_BUFFER,
            limits: Limits::default(),
        }
    }
}

/// How a connection ended, for the service's log.
// `Target` holds its domain inline so that a dial never allocates; boxing it here would.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake ended the connection (refused, timed out, malformed...).
    Closed(CloseReason),
    /// A tunnel ran and ended.
    Tunnel {
        /// TCP or UDP.
        network: Transport,
        /// Where it went.
        target: Option<Target>,
        /// Bytes each way.
        transferred: Transferred,
    },
    /// A TCP BIND ran and ended (its session died or the client left).
    TcpBind {
        /// Where the listener was.
        bound: SocketAddr,
        /// Connections accepted on it.
        accepted: u64,
        /// Why the mux session ended.
        reason: relay_core::mux::MuxError,
    },
    /// A UDP BIND / association ran and ended.
    UdpBind {
        /// Where the socket was.
        bound: SocketAddr,
        /// What the relay did.
        stats: UdpRelayStats,
    },
}

/// Accepts connections on `listener` forever, serving each on its own task.
pub async fn serve(listener: TcpListener, config: Arc<ServeConfig>) -> io::Result<()> {
    serve_channel(listener, Arc::new(Acceptor::Tcp), config).await
}

/// Accepts connections on `listener` forever, serving relay on each, on its own task, after
/// `acceptor`'s channel handshake (TLS, WebSocket…). The channel handshake must finish within
/// the relay read timeout.
pub async fn serve_channel(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    config: Arc<ServeConfig>,
) -> io::Result<()> {
    let gate = Gate::new(config.limits);
    loop {
        let (stream, peer, ticket) = gate.accept(&listener).await?;
        let config = config.clone();
        let acceptor = acceptor.clone();
        smol::spawn(async move {
            let started = Instant::now();
            let done = |what: &str| {
                ticket.handshake_done();
                log::info!("relay {peer}: {what} open");
            };
            let result = match &*acceptor {
                Acceptor::Tcp => match stream.set_nodelay(true) {
                    Ok(()) => drive(stream, &config, |s| (s.clone(), s), &done).await,
                    Err(e) => Err(e),
                },
                a => {
                    let deadline = Instant::now() + config.relay.read_timeout;
                    let _ = stream.set_nodelay(true);
                    match channel::before(Some(deadline), a.accept(stream)).await {
                        Ok(s) => drive(s, &config, futures_lite::io::split, &done).await,
                        Err(e) => Err(io::Error::new(e.kind(), format!("channel handshake: {e}"))),
                    }
                }
            };
            log_outcome(peer, started, result);
        })
        .detach();
    }
}

/// Serves relay on every stream of every QUIC connection `endpoint` accepts, forever
/// (GOST's `relay+quic` listener: one stream per relay connection).
pub async fn serve_quic(endpoint: quinn::Endpoint, config: Arc<ServeConfig>) -> io::Result<()> {
    while let Some(incoming) = endpoint.accept().await {
        let config = config.clone();
        smol::spawn(async move {
            let peer = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    log::info!("relay {peer}: quic handshake: {e}");
                    return;
                }
            };
            loop {
                let (send, recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(e) => {
                        log::debug!("relay {peer}: quic connection ended: {e}");
                        return;
                    }
                };
                let config = config.clone();
                smol::spawn(async move {
                    let stream = channel::quic::QuicStream::new(send, recv);
                    log_outcome(peer, Instant::now(), handle_stream(stream, &config).await);
                })
                .detach();
            }
        })
        .detach();
    }
    Ok(())
}

fn log_outcome(peer: std::net::SocketAddr, started: Instant, result: io::Result<Outcome>) {
    match result {
        Ok(Outcome::Closed(reason)) => {
            log::info!("relay {peer}: closed during handshake: {reason:?}")
        }
        Ok(Outcome::Tunnel {
            network,
            target,
            transferred,
        }) => log::info!(
            "relay {peer} -> {} ({network:?}): up {} B, down {} B, {:?}",
            target.map_or("forward target".to_string(), |t| t.to_string()),
            transferred.up,
            transferred.down,
            started.elapsed()
        ),
        Ok(Outcome::TcpBind {
            bound,
            accepted,
            reason,
        }) => log::info!(
            "relay {peer}: tcp bind {bound} ended ({reason}), {accepted} connection(s), {:?}",
            started.elapsed()
        ),
        Ok(Outcome::UdpBind { bound, stats }) => log::info!(
            "relay {peer}: udp bind {bound} ended: {stats:?}, {:?}",
            started.elapsed()
        ),
        Err(e) => log::info!("relay {peer}: {e}"),
    }
}

enum Dialed {
    Tcp(TcpStream),
    Udp(smol::net::UdpSocket),
}

enum Listened {
    Tcp(TcpListener),
    Udp(smol::net::UdpSocket),
}

/// Runs one relay connection: the handshake, then its data phase, to the end.
pub async fn handle(stream: TcpStream, config: &ServeConfig) -> io::Result<Outcome> {
    stream.set_nodelay(true)?;
    drive(stream, config, |s| (s.clone(), s), &|_| {}).await
}

/// Like [`handle`], on any byte stream (a TLS or WebSocket channel, say). The data phase reads
/// and writes it from one task through [`futures_lite::io::split`].
pub async fn handle_stream<S>(stream: S, config: &ServeConfig) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    drive(stream, config, futures_lite::io::split, &|_| {}).await
}

/// Runs the handshake and the data phase; `handshake_done` is called, with what the data phase
/// is, when the handshake has ended in one.
async fn drive<S, R, W>(
    mut stream: S,
    config: &ServeConfig,
    split: impl FnOnce(S) -> (R, W),
    handshake_done: &(dyn Fn(&str) + Sync),
) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut server = Server::new(config.relay.clone(), Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut dialed: Option<(Dialed, Option<Target>)> = None;
    let mut listened: Option<Listened> = None;
    loop {
        while let Some(out) = server.poll_output() {
            match out {
                ServerOutput::Transmit(bytes) => {
                    stream.write_all(bytes.as_slice()).await?;
                    stream.flush().await?;
                }
                ServerOutput::Dial(req) => {
                    let deadline = server.poll_timeout();
                    let result = dial_for(req, config, deadline).await;
                    let ok = result.as_ref().map(|_| ()).map_err(|e| *e);
                    dialed = result.ok();
                    server.dial_done(ok, Instant::now());
                }
                ServerOutput::Listen(req) => match listen_for(req).await {
                    Ok((l, bound)) => {
                        listened = Some(l);
                        server.listen_done(Ok(bound));
                    }
                    Err(e) => {
                        log::info!("bind {}: {e}", req.addr);
                        server.listen_done(Err(()));
                    }
                },
                ServerOutput::Established(Established::TcpBind { bound }) => {
                    let Some(Listened::Tcp(l)) = listened.take() else {
                        return Err(io::Error::other("tcp bind without a listener"));
                    };
                    handshake_done(&format!("tcp bind {bound}"));
                    return run_tcp_bind(stream, buf, l, bound, config).await;
                }
                ServerOutput::Established(Established::UdpBind { bound }) => {
                    let Some(Listened::Udp(socket)) = listened.take() else {
                        return Err(io::Error::other("udp bind without a socket"));
                    };
                    handshake_done(&format!("udp bind {bound}"));
                    return run_udp_bind(split(stream), &buf, socket, bound, config).await;
                }
                ServerOutput::Established(est) => {
                    let Some((conn, target)) = dialed.take() else {
                        return Err(io::Error::other("data phase without a dialled target"));
                    };
                    handshake_done(&format!(
                        "tunnel to {}",
                        target.map_or("the forward target".to_string(), |t| t.to_string())
                    ));
                    return run_tunnel(split(stream), &buf, est, conn, target).await;
                }
                ServerOutput::Close(reason) => return Ok(Outcome::Closed(reason)),
            }
        }
        let read = stream.read(&mut chunk);
        let n = match server.poll_timeout() {
            Some(at) => {
                read.or(async {
                    Timer::at(at).await;
                    Err(io::ErrorKind::TimedOut.into())
                })
                .await
            }
            None => read.await,
        };
        match n {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => server.handle_timeout(Instant::now()),
            Ok(0) | Err(_) => server.handle_eof(),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let used = server.handle_input(&buf, Instant::now());
                buf.drain(..used.min(buf.len()));
            }
        }
    }
}

async fn dial_for(
    req: DialRequest,
    config: &ServeConfig,
    deadline: Option<Instant>,
) -> Result<(Dialed, Option<Target>), DialError> {
    let (target, node) = match req.target {
        DialTarget::Requested(t) => (t, None),
        DialTarget::Forward => {
            let set = config.forward.as_ref().ok_or(DialError::NoTarget)?;
            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
            let (i, t) = set.pick(Instant::now()).ok_or(DialError::NoTarget)?;
            (*t, Some(i))
        }
    };
    let policy = config.relay.policy.as_deref();
    let result = match req.network {
        Transport::Tcp => dial::tcp(&target, deadline, policy).await.map(Dialed::Tcp),
        Transport::Udp => dial::udp(&target, deadline, policy).await.map(Dialed::Udp),
    };
    if let (Some(i), Some(set)) = (node, &config.forward) {
        let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
        set.report(i, result.is_ok(), Instant::now());
    }
    match result {
        Ok(conn) => Ok((conn, Some(target))),
        Err(e) => {
            log::debug!("dial {target}: {e}");
            Err(match e.kind() {
                io::ErrorKind::PermissionDenied => DialError::Forbidden,
                _ => DialError::Failed,
            })
        }
    }
}

async fn run_tunnel<R, W>(
    (read, write): (R, W),
    head: &[u8],
    est: Established,
    conn: Dialed,
    target: Option<Target>,
) -> io::Result<Outcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match (est, conn) {
        (Established::Tcp { downstream_prefix }, Dialed::Tcp(t)) => {
            let transferred = pipe(
                (read, write),
                (t.clone(), t),
                head,
                downstream_prefix.as_slice(),
            )
            .await?;
            Ok(Outcome::Tunnel {
                network: Transport::Tcp,
                target,
                transferred,
            })
        }
        (Established::Udp { downstream_prefix }, Dialed::Udp(socket)) => {
            let mut recv = FramedRecv::new(read, head);
            let mut send = FramedSend::new(write, downstream_prefix.as_slice());
            let transferred = udp::stream_to_socket(&mut recv, &mut send, &socket).await?;
            Ok(Outcome::Tunnel {
                network: Transport::Udp,
                target,
                transferred,
            })
        }
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this data phase is not served yet",
        )),
    }
}

/// Opens what a BIND asks for; returns it and its address.
async fn listen_for(req: ListenRequest) -> io::Result<(Listened, SocketAddr)> {
    let addrs = match req.addr.listen_addr() {
        Some(a) => vec![a],
        None => dial::resolve(&req.addr).await?,
    };
    let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
    for addr in addrs {
        let opened = match req.network {
            Transport::Tcp => TcpListener::bind(addr).await.map(Listened::Tcp),
            Transport::Udp => smol::net::UdpSocket::bind(addr).await.map(Listened::Udp),
        };
        match opened {
            Ok(l) => {
                let bound = match &l {
                    Listened::Tcp(l) => l.local_addr()?,
                    Listened::Udp(s) => s.local_addr()?,
                };
                return Ok((l, bound));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// TCP BIND: the connection is an smux session in which this server is the smux client. Every
/// connection accepted on `listener` becomes a stream that starts with the peer's address; the
/// listener closes when the session dies.
async fn run_tcp_bind<S>(
    stream: S,
    head: Vec<u8>,
    listener: TcpListener,
    bound: SocketAddr,
    config: &ServeConfig,
) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    log::debug!("tcp bind: listening on {bound}");
    let mux = Mux::spawn(stream, head, Role::Client, config.mux)?;
    let mut accepted = 0u64;
    // The per-connection tasks die with the session: dropping a task cancels it.
    let mut tasks: Vec<smol::Task<()>> = Vec::new();
    let inbound = async {
        loop {
            let (conn, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("tcp bind {bound}: accept: {e}");
                    Timer::after(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            accepted += 1;
            tasks.retain(|t| !t.is_finished());
            match mux.open() {
                Ok(s) => tasks.push(smol::spawn(forward_inbound(s, conn, peer))),
                Err(e) => {
                    log::info!("tcp bind {bound}: no stream for {peer}: {e}");
                    if mux.is_closed() {
                        return;
                    }
                }
            }
        }
    };
    let refuse = async {
        // Streams the client opens are not served: closed at once, as GOST does.
        while let Ok(s) = mux.accept().await {
            if !bind::SERVER_ACCEPTS_CLIENT_STREAMS {
                drop(s);
            }
        }
    };
    let reason = inbound.or(refuse).or(async {
        mux.closed().await;
    });
    reason.await;
    let reason = mux
        .closed()
        .or(async { relay_core::mux::MuxError::Closed })
        .await;
    drop(listener);
    Ok(Outcome::TcpBind {
        bound,
        accepted,
        reason,
    })
}

/// One accepted connection of a TCP BIND: the header, then both directions.
async fn forward_inbound(s: MuxStream, conn: TcpStream, peer: SocketAddr) {
    let _ = conn.set_nodelay(true);
    let header = bind::preamble(peer);
    let result = async {
        (&s).write_all(header.as_slice()).await?;
        pipe((&s, &s), (conn.clone(), conn), &[], &[]).await
    }
    .await;
    match result {
        Ok(t) => log::debug!(
            "tcp bind stream {} from {peer}: up {} B, down {} B",
            s.id(),
            t.up,
            t.down
        ),
        Err(e) => log::debug!("tcp bind stream {} from {peer}: {e}", s.id()),
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

/// UDP BIND / association: datagrams between the stream (SOCKS5-style framing) and the socket.
async fn run_udp_bind<R, W>(
    (read, write): (R, W),
    head: &[u8],
    socket: smol::net::UdpSocket,
    bound: SocketAddr,
    config: &ServeConfig,
) -> io::Result<Outcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    log::debug!("udp bind: socket on {bound}");
    let relay = Mutex::new(UdpRelay::new(config.udp_buffer_size));
    let policy = || relay.lock().unwrap_or_else(|p| p.into_inner());
    let mut recv = DatagramRecv::new(read, head);
    let mut send = DatagramSend::new(write);
    // Client -> server: the address is the destination.
    let up = async {
        while let Some(d) = recv.recv().await? {
            let d = policy().from_stream(d);
            let to = match d.addr.socket_addr() {
                Some(a) => Ok(a),
                // The bound socket's family first (IPv4 for GOST's usual 0.0.0.0).
                None => dial::resolve(&Target::from_address(&d.addr))
                    .await
                    .map(|a| {
                        let first = a[0];
                        a.into_iter()
                            .find(|x| x.is_ipv4() == bound.is_ipv4())
                            .unwrap_or(first)
                    }),
            };
            let sent = match to {
                Ok(to) => socket
                    .send_to(d.payload, to)
                    .await
                    .map_err(|e| (send_failure(&e), e)),
                Err(e) => Err((SendFailure::Unresolvable, e)),
            };
            if let Err((failure, e)) = sent {
                log::debug!("udp bind {bound}: send to {}: {e}", d.addr);
                if policy().send_failed(failure) == SendVerdict::End {
                    return Err(e);
                }
            }
        }
        io::Result::Ok(())
    };
    // Server -> client: the address is the peer.
    let down = async {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await?;
            let d = Datagram {
                addr: Address::from_socket(peer),
                payload: &buf[..n],
            };
            let framed = policy().to_stream(d);
            if let Some(d) = framed {
                send.send(&d).await?;
            }
        }
    };
    let result: io::Result<()> = future::or(up, down).await;
    let stats = policy().stats();
    if let Err(e) = result {
        log::debug!("udp bind {bound}: {e}");
    }
    if stats.truncated > 0 {
        log::info!(
            "udp bind {bound}: {} datagram(s) truncated to {} bytes",
            stats.truncated,
            config.udp_buffer_size
        );
    }
    Ok(Outcome::UdpBind { bound, stats })
}
