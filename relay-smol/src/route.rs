//! Connecting through a chain of relay servers (see [`relay_core::route`]).

use std::io;
use std::sync::Mutex;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use relay_core::Address;
use relay_core::route::{Chain, RoutePlan};
use relay_core::server::Transport;
use relay_core::target::Target;
use smol::net::TcpStream;

use crate::channel::{self, Dialer};
use crate::stream::RelayStream;

/// Anything that reads and writes bytes.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// A stream of any kind, boxed.
pub type BoxStream = Box<dyn AsyncReadWrite>;

/// The data channel of every node of a chain, indexed like the chain's hops and nodes.
///
/// [`relay_core::route::Chain`] stays transport-agnostic: it picks nodes and builds relay
/// requests. Which channel (TCP, TLS, WebSocket) reaches a node is a transport concern kept
/// here, looked up with the node picks of each [`RoutePlan`]. Missing entries are plain TCP.
#[derive(Debug, Clone, Default)]
pub struct Dialers {
    hops: Vec<Vec<Dialer>>,
}

impl Dialers {
    /// Channels per hop, per node, in the chain's order.
    pub fn new(hops: Vec<Vec<Dialer>>) -> Dialers {
        Dialers { hops }
    }

    /// The channel of node `node` of hop `hop` (TCP when not listed).
    pub fn get(&self, hop: usize, node: usize) -> &Dialer {
        static TCP: Dialer = Dialer::Tcp;
        self.hops.get(hop).and_then(|h| h.get(node)).unwrap_or(&TCP)
    }

    /// True when every node is reached over plain TCP.
    pub fn all_tcp(&self) -> bool {
        self.hops.iter().flatten().all(Dialer::is_tcp)
    }
}

/// A chain together with the data channel of each of its nodes.
#[derive(Debug)]
pub struct Route {
    /// Node selection and relay requests.
    pub chain: Mutex<Chain>,
    /// How each node is reached.
    pub dialers: Dialers,
}

impl Route {
    /// A route over `chain` whose nodes are reached with `dialers`.
    pub fn new(chain: Chain, dialers: Dialers) -> Route {
        Route {
            chain: Mutex::new(chain),
            dialers,
        }
    }

    /// Like [`connect`], each node reached over its own channel.
    pub async fn connect(
        &self,
        transport: Transport,
        target: &Address<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<BoxStream> {
        connect_with(
            &self.chain,
            &self.dialers,
            transport,
            target,
            deadline,
            false,
        )
        .await
    }

    /// Like [`connect_confirmed`], each node reached over its own channel.
    pub async fn connect_confirmed(
        &self,
        transport: Transport,
        target: &Address<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<BoxStream> {
        connect_with(
            &self.chain,
            &self.dialers,
            transport,
            target,
            deadline,
            true,
        )
        .await
    }

    /// Like [`bind`], each node reached over its own channel.
    pub async fn bind(
        &self,
        transport: Transport,
        listen: &Address<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<(BoxStream, Option<Target>)> {
        bind_with(&self.chain, &self.dialers, transport, listen, deadline).await
    }
}

/// Opens a tunnel to `target` over `transport` through every hop of `chain`: connects to the
/// first hop's node before `deadline`, then stacks one relay layer per hop. Immediate requests
/// (nodelay) are written before this returns; lazy ones go with the first payload.
/// Every node is reached over plain TCP; see [`Route`] for other channels.
pub async fn connect(
    chain: &Mutex<Chain>,
    transport: Transport,
    target: &Address<'_>,
    deadline: Option<Instant>,
) -> io::Result<BoxStream> {
    connect_with(
        chain,
        &Dialers::default(),
        transport,
        target,
        deadline,
        false,
    )
    .await
}

/// Like [`connect`], but when the last hop's request goes out at once (its node has
/// `nodelay`), waits until `deadline` for that hop's response, so that a refusal is known before
/// the caller answers its own client (a SOCKS5 or HTTP entry), as GOST's synchronous nodelay
/// connect does. Past the deadline the tunnel is returned anyway and its response is stripped
/// whenever it arrives: against a server that holds its response until the target speaks, a
/// client-speaks-first protocol then still works instead of hanging.
pub async fn connect_confirmed(
    chain: &Mutex<Chain>,
    transport: Transport,
    target: &Address<'_>,
    deadline: Option<Instant>,
) -> io::Result<BoxStream> {
    connect_with(
        chain,
        &Dialers::default(),
        transport,
        target,
        deadline,
        true,
    )
    .await
}

/// Like [`connect`], with a BIND (remote forwarding) for the last hop, and it waits for the
/// last hop's response: returns the stream (positioned right after the response; TCP BIND: the
/// mux session, UDP BIND: the datagrams) and the address the server listens on. A refusal is
/// an error of kind `ConnectionRefused`. `deadline` bounds the connect and the response.
pub async fn bind(
    chain: &Mutex<Chain>,
    transport: Transport,
    listen: &Address<'_>,
    deadline: Option<Instant>,
) -> io::Result<(BoxStream, Option<Target>)> {
    bind_with(chain, &Dialers::default(), transport, listen, deadline).await
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(|p| p.into_inner())
}

/// Plans a route to `target` now and opens it; `confirm` waits for the last hop's response when
/// its request goes out at once (see [`connect_confirmed`]).
async fn connect_with(
    chain: &Mutex<Chain>,
    dialers: &Dialers,
    transport: Transport,
    target: &Address<'_>,
    deadline: Option<Instant>,
    confirm: bool,
) -> io::Result<BoxStream> {
    let plan = lock(chain)
        .plan(Instant::now(), transport, target)
        .map_err(io::Error::other)?;
    let mut layer = open_layers(chain, dialers, plan, deadline).await?;
    if confirm && layer.is_immediate() {
        match channel::before(deadline, layer.response()).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                log::debug!("no relay response before the deadline: going on without it");
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Ok(Box::new(layer))
}

/// Plans a BIND route now, opens it and waits for the last hop's response.
async fn bind_with(
    chain: &Mutex<Chain>,
    dialers: &Dialers,
    transport: Transport,
    listen: &Address<'_>,
    deadline: Option<Instant>,
) -> io::Result<(BoxStream, Option<Target>)> {
    let plan = lock(chain)
        .plan_bind(Instant::now(), transport, listen)
        .map_err(io::Error::other)?;
    let work = async {
        let mut layer = open_layers(chain, dialers, plan, deadline).await?;
        let bound = layer.response().await?;
        Ok((Box::new(layer) as BoxStream, bound))
    };
    channel::before(deadline, work).await
}

/// Reaches the first node (with its channel handshake) and stacks the relay layers; returns the
/// last one unboxed, so that its response can be awaited.
async fn open_layers(
    chain: &Mutex<Chain>,
    dialers: &Dialers,
    mut plan: RoutePlan,
    deadline: Option<Instant>,
) -> io::Result<RelayStream<BoxStream>> {
    let first = plan.first_hop;
    let first_dialer = dialers.get(0, plan.picks[0]);
    // Reaching the first node includes its channel handshake (as in GOST, a failed TLS or
    // WebSocket handshake marks the node failed).
    let reach = async {
        match first_dialer {
            Dialer::Quic(q) => Ok(Box::new(q.open(first).await?) as BoxStream),
            d => {
                let tcp = TcpStream::connect(first).await?;
                tcp.set_nodelay(true)?;
                d.handshake(Box::new(tcp)).await
            }
        }
    };
    let mut stream = match channel::before(deadline, reach).await {
        Ok(s) => s,
        Err(e) => {
            lock(chain).report(&plan, 0, false, Instant::now());
            return Err(io::Error::new(e.kind(), format!("relay node {first}: {e}")));
        }
    };
    lock(chain).report(&plan, 0, true, Instant::now());
    let picks = plan.picks.clone();
    let hops = plan.clients.len();
    for (hop, client) in plan.clients.drain(..).enumerate() {
        let mut layer = RelayStream::new(stream, client);
        layer.flush().await?;
        if hop + 1 == hops {
            return Ok(layer);
        }
        stream = Box::new(layer);
        // The next node's channel runs inside the tunnel to it (GOST's per-node handshake).
        let next = dialers.get(hop + 1, picks[hop + 1]);
        if !next.is_tcp() {
            stream = channel::before(deadline, next.handshake(stream)).await?;
        }
    }
    Err(io::Error::other("the route has no relay hop"))
}
