//! Connecting to targets: name resolution, TCP connect with a deadline, connected UDP sockets.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::FutureExt;
use relay_core::policy::Policy;
use relay_core::target::{Target, TargetHost};
use smol::Timer;
use smol::net::{TcpStream, UdpSocket};

/// The socket addresses of a target: IPs as they are, names through the system resolver.
pub async fn resolve(target: &Target) -> io::Result<Vec<SocketAddr>> {
    if let Some(addr) = target.dial_addr() {
        return Ok(vec![addr]);
    }
    let TargetHost::Domain(name) = &target.host else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let name = name
        .as_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "domain is not UTF-8"))?;
    let addrs = smol::net::resolve((name, target.port)).await?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "name resolved to no address",
        ));
    }
    Ok(addrs)
}

async fn before<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
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

/// The addresses of `target` that `policy` allows (all without one); `PermissionDenied` when
/// it allows none.
async fn resolve_allowed(target: &Target, policy: Option<&Policy>) -> io::Result<Vec<SocketAddr>> {
    let mut addrs = resolve(target).await?;
    addrs.retain(|a| policy.is_none_or(|p| p.allows_ip(a.ip())));
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "target refused by policy",
        ));
    }
    Ok(addrs)
}

/// Connects to `target` (each resolved address in turn, skipping those `policy` refuses)
/// before `deadline`, with TCP_NODELAY.
pub async fn tcp(
    target: &Target,
    deadline: Option<Instant>,
    policy: Option<&Policy>,
) -> io::Result<TcpStream> {
    before(deadline, async {
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for addr in resolve_allowed(target, policy).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
}

/// A UDP socket connected to `target` (its first address `policy` allows), on an ephemeral
/// port of the matching family.
pub async fn udp(
    target: &Target,
    deadline: Option<Instant>,
    policy: Option<&Policy>,
) -> io::Result<UdpSocket> {
    before(deadline, async {
        let addr = resolve_allowed(target, policy).await?[0];
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(socket)
    })
    .await
}
