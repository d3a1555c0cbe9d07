//! Connecting through a chain of relay servers (see [`relay_core::route`]).

use std::io;
use std::sync::Mutex;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};
use relay_core::Address;
use relay_core::route::{Chain, RoutePlan};
use relay_core::server::Transport;
use relay_core::target::Target;
use smol::Timer;
use smol::net::TcpStream;

use crate::stream::RelayStream;

/// Anything that reads and writes bytes.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// A stream of any kind, boxed.
pub type BoxStream = Box<dyn AsyncReadWrite>;

/// Opens a tunnel to `target` over `transport` through every hop of `chain`: connects to the
/// first hop's node before `deadline`, then stacks one relay layer per hop. Immediate requests
/// (nodelay) are written before this returns; lazy ones go with the first payload.
pub async fn connect(
    chain: &Mutex<Chain>,
    transport: Transport,
    target: &Address<'_>,
    deadline: Option<Instant>,
) -> io::Result<BoxStream> {
    let plan = lock(chain)
        .plan(Instant::now(), transport, target)
        .map_err(io::Error::other)?;
    open(chain, plan, deadline).await
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
    let plan = lock(chain)
        .plan_bind(Instant::now(), transport, listen)
        .map_err(io::Error::other)?;
    let work = async {
        let mut layer = open_layers(chain, plan, deadline).await?;
        let bound = layer.response().await?;
        Ok::<_, io::Error>((Box::new(layer) as BoxStream, bound))
    };
    match deadline {
        Some(at) => {
            work.or(async {
                Timer::at(at).await;
                Err(io::ErrorKind::TimedOut.into())
            })
            .await
        }
        None => work.await,
    }
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(|p| p.into_inner())
}

async fn open(
    chain: &Mutex<Chain>,
    plan: RoutePlan,
    deadline: Option<Instant>,
) -> io::Result<BoxStream> {
    Ok(Box::new(open_layers(chain, plan, deadline).await?))
}

/// Connects and stacks the relay layers; returns the last one (unboxed, to read its response).
async fn open_layers(
    chain: &Mutex<Chain>,
    mut plan: RoutePlan,
    deadline: Option<Instant>,
) -> io::Result<RelayStream<BoxStream>> {
    let first = plan.first_hop;
    let tcp = async { TcpStream::connect(first).await };
    let tcp = match deadline {
        Some(at) => {
            tcp.or(async {
                Timer::at(at).await;
                Err(io::ErrorKind::TimedOut.into())
            })
            .await
        }
        None => tcp.await,
    };
    let tcp = match tcp {
        Ok(t) => t,
        Err(e) => {
            lock(chain).report(&plan, 0, false, Instant::now());
            return Err(io::Error::new(e.kind(), format!("relay node {first}: {e}")));
        }
    };
    tcp.set_nodelay(true)?;
    lock(chain).report(&plan, 0, true, Instant::now());
    let mut stream: BoxStream = Box::new(tcp);
    let mut clients = plan.clients.drain(..).peekable();
    while let Some(client) = clients.next() {
        let mut layer = RelayStream::new(stream, client);
        layer.flush().await?;
        if clients.peek().is_none() {
            return Ok(layer);
        }
        stream = Box::new(layer);
    }
    Err(io::Error::other("the route has no relay hop"))
}
