//! Serving relay: an accept loop and the per-connection driver of [`relay_core::server::Server`].

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use relay_core::select::NodeSet;
use relay_core::server::{
    CloseReason, DialError, DialRequest, DialTarget, Established, Server, ServerConfig,
    ServerOutput, Transport,
};
use relay_core::target::Target;
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

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
    loop {
        let (stream, peer) = listener.accept().await?;
        let config = config.clone();
        smol::spawn(async move {
            let started = Instant::now();
            match handle(stream, &config).await {
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
        })
        .detach();
    }
}

enum Dialed {
    Tcp(TcpStream),
    Udp(smol::net::UdpSocket),
}

/// Runs one relay connection: the handshake, then its data phase, to the end.
pub async fn handle(mut stream: TcpStream, config: &ServeConfig) -> io::Result<Outcome> {
    stream.set_nodelay(true)?;
    let mut server = Server::new(config.relay.clone(), Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut dialed: Option<(Dialed, Option<Target>)> = None;
    loop {
        while let Some(out) = server.poll_output() {
            match out {
                ServerOutput::Transmit(bytes) => stream.write_all(bytes.as_slice()).await?,
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
                    return run_tunnel(stream, &buf, est, conn, target).await;
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

async fn run_tunnel(
    stream: TcpStream,
    head: &[u8],
    est: Established,
    conn: Dialed,
    target: Option<Target>,
) -> io::Result<Outcome> {
    match (est, conn) {
        (Established::Tcp { downstream_prefix }, Dialed::Tcp(t)) => {
            let transferred = pipe(
                (stream.clone(), stream),
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
            let mut recv = FramedRecv::new(stream.clone(), head);
            let mut send = FramedSend::new(stream, downstream_prefix.as_slice());
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
