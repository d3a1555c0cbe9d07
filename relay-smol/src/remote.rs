//! Remote port forwarding, client side (GOST's `rtcp` / `rudp` services): bind a port on the
//! relay server at the end of a chain and carry what arrives there to a local target.
//!
//! * [`serve_rtcp`]: TCP BIND; the relay connection becomes an smux session in which this client
//!   is the smux *server*. Every stream the server opens is one remote connection: its header
//!   names the remote peer ([`relay_core::bind::decode_preamble`]), then the bytes are piped to a
//!   new connection to the local target. A bad header closes that stream only.
//! * [`serve_rudp`]: UDP BIND; datagrams arrive tagged with the remote peer's address. Each peer
//!   gets its own local UDP socket to the target; replies go back tagged with that peer.
//!
//! Both bind again when the session dies or a bind fails, after the delay of
//! [`relay_core::bind::Rebind`], logging each attempt. They return only on a configuration
//! error.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use relay_core::route::{Chain, Hop, Node};
//! use relay_core::select::Strategy;
//! use relay_core::server::ServerConfig;
//! use relay_smol::ServeConfig;
//! use relay_smol::remote::{RemoteEvent, RemoteOptions, serve_rtcp};
//!
//! smol::block_on(async {
//!     // A relay server that allows BIND (`relay://127.0.0.1:0?bind=true`).
//!     let server = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let relay = server.local_addr()?;
//!     let config = ServeConfig::new(ServerConfig { bind: true, ..ServerConfig::default() });
//!     smol::spawn(relay_smol::serve(server, Arc::new(config))).detach();
//!
//!     // The local service to expose: an echo.
//!     let echo = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let target = echo.local_addr()?.into();
//!     smol::spawn(async move {
//!         let (s, _) = echo.accept().await.unwrap();
//!         futures_lite::io::copy(s.clone(), &mut s.clone()).await.ok();
//!     })
//!     .detach();
//!
//!     // Like `-L rtcp://127.0.0.1:0/<echo> -F relay://<relay>`: any free port on the server.
//!     let hop = Hop::new(vec![Node::new(relay)], Strategy::RoundRobin, 1, Duration::from_secs(10));
//!     let chain = Mutex::new(Chain::new(vec![hop]));
//!     let (tx, events) = smol::channel::unbounded();
//!     let options = RemoteOptions { events: Some(tx), ..RemoteOptions::default() };
//!     smol::spawn(async move {
//!         let listen = relay_core::Address::parse("127.0.0.1:0").unwrap();
//!         serve_rtcp(&chain, &listen, &target, &options).await
//!     })
//!     .detach();
//!
//!     // Connections to the port bound on the relay server reach the echo.
//!     let RemoteEvent::Bound { bound: Some(bound) } = events.recv().await.unwrap() else {
//!         panic!("not bound")
//!     };
//!     let mut s = smol::net::TcpStream::connect(("127.0.0.1", bound.port)).await?;
//!     s.write_all(b"hello").await?;
//!     let mut back = [0u8; 5];
//!     s.read_exact(&mut back).await?;
//!     assert_eq!(&back, b"hello");
//!     std::io::Result::Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, FutureExt};
use relay_core::bind::{
    PreambleError, Rebind, RebindConfig, SendVerdict, UdpRelay, decode_preamble, preamble_eof,
};
use relay_core::mux::{MuxConfig, Role};
use relay_core::route::Chain;
use relay_core::server::Transport;
use relay_core::target::Target;
use relay_core::udp::{Datagram, MAX_DATAGRAM};
use relay_core::{Address, Decoded};
use smol::channel::Sender;
use smol::net::UdpSocket;
use smol::{Task, Timer};

use crate::dial;
use crate::mux::{Mux, MuxStream};
use crate::pipe::pipe;
use crate::route::{self, BoxStream};
use crate::serve::send_failure;
use crate::udp::{DatagramRecv, DatagramSend};

pub use relay_core::bind::RemoteEvent;

/// Settings of [`serve_rtcp`] and [`serve_rudp`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Mux settings of TCP BIND sessions (GOST's defaults; both ends must agree on the version).
    pub mux: MuxConfig,
    /// When to bind again.
    pub rebind: RebindConfig,
    /// Deadline of one bind attempt: connecting through the chain and the server's response
    /// (15 s; `None`: wait as long as the transport does, as GOST).
    pub bind_timeout: Option<Duration>,
    /// Deadline for connecting to the local target (15 s).
    pub dial_timeout: Duration,
    /// rudp: largest datagram relayed each way (GOST's `readBufferSize`, 8192).
    pub udp_buffer_size: usize,
    /// rudp: a peer's local socket is dropped after this long without traffic (GOST `ttl`, 5 s).
    pub udp_ttl: Duration,
    /// rudp: most remote peers served at once (1024); datagrams from further peers are dropped
    /// until one goes idle.
    pub udp_max_peers: usize,
    /// Where to report [`RemoteEvent`]s (dropped when full or closed).
    pub events: Option<Sender<RemoteEvent>>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            mux: MuxConfig::default(),
            rebind: RebindConfig::default(),
            bind_timeout: Some(Duration::from_secs(15)),
            dial_timeout: Duration::from_secs(15),
            udp_buffer_size: 8192,
            udp_ttl: Duration::from_secs(5),
            udp_max_peers: 1024,
            events: None,
        }
    }
}

impl RemoteOptions {
    fn report(&self, event: RemoteEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }
}

/// Remote TCP forwarding: binds `listen` on the relay server at the end of `chain` and
/// forwards every connection made to it to `target`. Runs until a configuration error.
pub async fn serve_rtcp(
    chain: &Mutex<Chain>,
    listen: &Address<'_>,
    target: &Target,
    options: &RemoteOptions,
) -> io::Result<()> {
    options
        .mux
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    serve_remote(Transport::Tcp, chain, listen, target, options).await
}

/// Remote UDP forwarding: binds `listen` (UDP) on the relay server at the end of `chain` and
/// forwards every remote peer's datagrams to `target`, replies back. Runs until a configuration
/// error.
pub async fn serve_rudp(
    chain: &Mutex<Chain>,
    listen: &Address<'_>,
    target: &Target,
    options: &RemoteOptions,
) -> io::Result<()> {
    serve_remote(Transport::Udp, chain, listen, target, options).await
}

async fn serve_remote(
    transport: Transport,
    chain: &Mutex<Chain>,
    listen: &Address<'_>,
    target: &Target,
    options: &RemoteOptions,
) -> io::Result<()> {
    let kind = match transport {
        Transport::Tcp => "rtcp",
        Transport::Udp => "rudp",
    };
    let mut rebind = Rebind::new(options.rebind);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        log::info!("{kind} {listen} -> {target}: bind attempt {attempt}");
        let deadline = options.bind_timeout.map(|d| Instant::now() + d);
        match route::bind(chain, transport, listen, deadline).await {
            Err(e) => {
                let retry_in = rebind.bind_failed(Instant::now());
                log::warn!("{kind} {listen}: bind failed: {e}; retrying in {retry_in:?}");
                options.report(RemoteEvent::BindFailed {
                    error: e.kind(),
                    retry_in,
                });
                Timer::after(retry_in).await;
            }
            Ok((stream, bound)) => {
                rebind.established(Instant::now());
                let at = bound.map_or("an unknown address".to_string(), |b| b.to_string());
                log::info!("{kind} {listen}: bound on the server at {at}");
                options.report(RemoteEvent::Bound { bound });
                let why = match transport {
                    Transport::Tcp => rtcp_session(stream, target, options).await,
                    Transport::Udp => rudp_session(stream, target, options).await,
                };
                let retry_in = rebind.session_ended(Instant::now());
                log::warn!("{kind} {listen}: session ended ({why}); binding again in {retry_in:?}");
                options.report(RemoteEvent::SessionEnded { retry_in });
                Timer::after(retry_in).await;
            }
        }
    }
}

/// One TCP BIND session: serve every stream until the session ends.
async fn rtcp_session(stream: BoxStream, target: &Target, options: &RemoteOptions) -> String {
    let mux = match Mux::spawn(stream, Vec::new(), Role::Server, options.mux) {
        Ok(m) => m,
        Err(e) => return e.to_string(),
    };
    while let Ok(s) = mux.accept().await {
        smol::spawn(serve_stream(s, *target, options.dial_timeout)).detach();
    }
    mux.closed().await.to_string()
}

/// Reads a stream's header; `Ok` with the header and the payload that followed it.
async fn read_preamble(
    s: &MuxStream,
) -> Result<(relay_core::bind::Preamble, Vec<u8>), PreambleError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Decoded::Complete { value, consumed } = decode_preamble(&buf)? {
            return Ok((value, buf.split_off(consumed)));
        }
        match (&*s).read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Err(preamble_eof(&buf)),
        }
    }
}

/// One remote connection: header, then a pipe to the local target.
async fn serve_stream(s: MuxStream, target: Target, dial_timeout: Duration) {
    let (pre, rest) = match read_preamble(&s).await {
        Ok(p) => p,
        Err(e) => {
            // This stream only; the session goes on.
            log::info!("rtcp stream {}: {e}; stream closed", s.id());
            return;
        }
    };
    let peer = pre
        .peer
        .map_or("an unknown peer".to_string(), |p| p.to_string());
    let conn = match dial::tcp(&target, Some(Instant::now() + dial_timeout), None).await {
        Ok(c) => c,
        Err(e) => {
            log::info!("rtcp stream {} from {peer}: connect {target}: {e}", s.id());
            return;
        }
    };
    match pipe((&s, &s), (conn.clone(), conn), &rest, &[]).await {
        Ok(t) => log::debug!("rtcp {peer} -> {target}: up {} B, down {} B", t.up, t.down),
        Err(e) => log::debug!("rtcp {peer} -> {target}: {e}"),
    }
}

type SharedSend = Arc<smol::lock::Mutex<DatagramSend<futures_lite::io::WriteHalf<BoxStream>>>>;

struct Peer {
    socket: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
    task: Task<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One UDP BIND session: datagrams until the stream ends or the association fails.
async fn rudp_session(stream: BoxStream, target: &Target, options: &RemoteOptions) -> String {
    let (r, w) = futures_lite::io::split(stream);
    let mut recv = DatagramRecv::new(r, &[]);
    let send: SharedSend = Arc::new(smol::lock::Mutex::new(DatagramSend::new(w)));
    let relay = Arc::new(Mutex::new(UdpRelay::new(options.udp_buffer_size)));
    let mut peers: HashMap<Target, Peer> = HashMap::new();
    let why = loop {
        let d = match recv.recv().await {
            Ok(Some(d)) => d,
            Ok(None) => break "the server closed the connection".to_string(),
            Err(e) => break e.to_string(),
        };
        let d = lock(&relay).from_stream(d);
        let key = Target::from_address(&d.addr);
        if peers.get(&key).is_none_or(|p| p.task.is_finished()) {
            peers.retain(|_, p| !p.task.is_finished());
            if peers.len() >= options.udp_max_peers.max(1) {
                log::debug!("rudp peer {key}: too many peers; datagram dropped");
                continue;
            }
            let deadline = Some(Instant::now() + options.dial_timeout);
            let socket = match dial::udp(target, deadline, None).await {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    log::info!("rudp peer {key}: socket to {target}: {e}; datagram dropped");
                    continue;
                }
            };
            let last = Arc::new(Mutex::new(Instant::now()));
            let task = smol::spawn(peer_replies(
                socket.clone(),
                key,
                last.clone(),
                send.clone(),
                relay.clone(),
                options.udp_ttl,
            ));
            peers.insert(key, Peer { socket, last, task });
        }
        let Some(peer) = peers.get(&key) else {
            continue;
        };
        *lock(&peer.last) = Instant::now();
        if let Err(e) = peer.socket.send(d.payload).await {
            log::debug!("rudp peer {key}: send to {target}: {e}");
            if lock(&relay).send_failed(send_failure(&e)) == SendVerdict::End {
                break e.to_string();
            }
        }
    };
    let stats = lock(&relay).stats();
    if stats.truncated > 0 || stats.dropped_empty > 0 {
        log::info!("rudp: {stats:?}");
    }
    why
}

/// The target's replies to one remote peer, framed back to the server with the peer's address;
/// ends after `ttl` without traffic either way.
async fn peer_replies(
    socket: Arc<UdpSocket>,
    peer: Target,
    last: Arc<Mutex<Instant>>,
    send: SharedSend,
    relay: Arc<Mutex<UdpRelay>>,
    ttl: Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let got = async { socket.recv(&mut buf).await.map(Some) }
            .or(async {
                Timer::after(ttl).await;
                Ok(None)
            })
            .await;
        match got {
            Ok(Some(n)) => {
                *lock(&last) = Instant::now();
                let d = Datagram {
                    addr: peer.as_address(),
                    payload: &buf[..n],
                };
                let framed = lock(&relay).to_stream(d);
                if let Some(d) = framed {
                    if let Err(e) = send.lock().await.send(&d).await {
                        log::debug!("rudp peer {peer}: {e}");
                        return;
                    }
                }
            }
            Ok(None) => {
                if lock(&last).elapsed() >= ttl {
                    log::debug!("rudp peer {peer}: idle, socket closed");
                    return;
                }
            }
            Err(e) => {
                // ICMP errors from the target: keep the peer until it goes idle.
                log::debug!("rudp peer {peer}: receive from the target: {e}");
                Timer::after(Duration::from_millis(10)).await;
            }
        }
    }
}
