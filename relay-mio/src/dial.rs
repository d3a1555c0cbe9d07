//! Performing dials for the event loop: name resolution on helper threads, non-blocking TCP
//! connects tried address by address, connected UDP sockets.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token, Waker};

/// A finished name lookup, for the unit `key` (checked against its `serial`).
#[derive(Debug)]
pub(crate) struct Resolved {
    pub key: usize,
    pub serial: u64,
    pub result: io::Result<Vec<SocketAddr>>,
}

/// Hands lookups to short-lived helper threads; their results come back through a channel and
/// a wake of the loop's [`Waker`], so the loop itself never blocks on the resolver.
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    pub tx: Sender<Resolved>,
    pub waker: Arc<Waker>,
}

impl Resolver {
    /// Resolves `name:port` off the loop; the answer arrives as a [`Resolved`].
    pub(crate) fn resolve(&self, key: usize, serial: u64, name: String, port: u16) {
        let tx = self.tx.clone();
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("relay-mio-resolve".into())
            .spawn(move || {
                let result = (name.as_str(), port).to_socket_addrs().and_then(|a| {
                    let addrs: Vec<SocketAddr> = a.collect();
                    if addrs.is_empty() {
                        Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            "name resolved to no address",
                        ))
                    } else {
                        Ok(addrs)
                    }
                });
                // The loop may be gone: then nobody wants the answer.
                if tx
                    .send(Resolved {
                        key,
                        serial,
                        result,
                    })
                    .is_ok()
                {
                    let _ = waker.wake();
                }
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Resolved {
                key,
                serial,
                result: Err(e),
            });
            let _ = self.waker.wake();
        }
    }
}

/// Starts a non-blocking connect to the first address of `addrs` that accepts one (popping
/// from the back), registered for readiness under `token`.
pub(crate) fn tcp_connect(
    addrs: &mut Vec<SocketAddr>,
    registry: &Registry,
    token: Token,
) -> io::Result<TcpStream> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    while let Some(addr) = addrs.pop() {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                registry.register(&mut s, token, Interest::READABLE | Interest::WRITABLE)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Where a pending connect stands.
pub(crate) enum ConnectState {
    /// Still in progress.
    Pending,
    /// Connected.
    Done,
    /// Failed.
    Failed(io::Error),
}

/// Checks a non-blocking connect after a readiness event (spurious events are harmless).
pub(crate) fn connect_state(s: &TcpStream) -> ConnectState {
    match s.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(e),
        Ok(None) => {}
    }
    match s.peer_addr() {
        Ok(_) => ConnectState::Done,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => ConnectState::Pending,
        Err(e) => ConnectState::Failed(e),
    }
}

/// A UDP socket on an ephemeral port of `addr`'s family, connected to `addr` and registered.
pub(crate) fn udp_connect(
    addr: SocketAddr,
    registry: &Registry,
    token: Token,
) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    registry.register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(socket)
}
