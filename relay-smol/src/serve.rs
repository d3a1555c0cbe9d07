//! Serving relay: an accept loop and the per-connection driver of [`relay_core::server::Server`].

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use relay_core::select::NodeSet;
use relay_core::server::{
    CloseReason, DialError, DialRequest, DialTarget, Established, Server, ServerConfig,
    ServerOutput, Transport,
};
use relay_core::target::Target;
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

use crate::channel::{self, Acceptor};
use crate::dial;
use crate::pipe::{Transferred, pipe};
use crate::udp::{self, FramedRecv, FramedSend};

/// Everything a relay service needs besides its listener.
#[derive(Debug)]
pub struct ServeConfig {
    /// The protocol decisions.
    pub relay: Arc<ServerConfig>,
    /// Forwarding mode: the targets to forward to (required when `relay.forward` is set).
    pub forward: Option<Mutex<NodeSet<Target>>>,
}

impl ServeConfig {
    /// A plain relay service (no forwarding).
    pub fn new(relay: ServerConfig) -> ServeConfig {
        ServeConfig {
            relay: Arc::new(relay),
            forward: None,
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
    loop {
        let (stream, peer) = listener.accept().await?;
        let config = config.clone();
        let acceptor = acceptor.clone();
        smol::spawn(async move {
            let started = Instant::now();
            let result = match &*acceptor {
                Acceptor::Tcp => handle(stream, &config).await,
                a => {
                    let deadline = Instant::now() + config.relay.read_timeout;
                    let _ = stream.set_nodelay(true);
                    match channel::before(Some(deadline), a.accept(stream)).await {
                        Ok(s) => handle_stream(s, &config).await,
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
        Err(e) => log::info!("relay {peer}: {e}"),
    }
}

enum Dialed {
    Tcp(TcpStream),
    Udp(smol::net::UdpSocket),
}

/// Runs one relay connection: the handshake, then its data phase, to the end.
pub async fn handle(stream: TcpStream, config: &ServeConfig) -> io::Result<Outcome> {
    stream.set_nodelay(true)?;
    drive(stream, config, |s| (s.clone(), s)).await
}

/// Like [`handle`], on any byte stream (a TLS or WebSocket channel, say). The data phase reads
/// and writes it from one task through [`futures_lite::io::split`].
pub async fn handle_stream<S>(stream: S, config: &ServeConfig) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive(stream, config, futures_lite::io::split).await
}

async fn drive<S, R, W>(
    mut stream: S,
    config: &ServeConfig,
    split: impl FnOnce(S) -> (R, W),
) -> io::Result<Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut server = Server::new(config.relay.clone(), Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut dialed: Option<(Dialed, Option<Target>)> = None;
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
                ServerOutput::Listen(_) => server.listen_done(Err(())),
                ServerOutput::Established(est) => {
                    let Some((conn, target)) = dialed.take() else {
                        return Err(io::Error::other("data phase without a dialled target"));
                    };
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
    let result = match req.network {
        Transport::Tcp => dial::tcp(&target, deadline).await.map(Dialed::Tcp),
        Transport::Udp => dial::udp(&target, deadline).await.map(Dialed::Udp),
    };
    if let (Some(i), Some(set)) = (node, &config.forward) {
        let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
        set.report(i, result.is_ok(), Instant::now());
    }
    match result {
        Ok(conn) => Ok((conn, Some(target))),
        Err(e) => {
            log::debug!("dial {target}: {e}");
            Err(DialError::Failed)
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
