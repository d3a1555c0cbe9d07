//! Relay on [smol](https://docs.rs/smol): connect through a relay server, serve one, forward
//! remote ports with BIND ([`remote`], on the [`mux`] driver).
//!
//! A thin adapter over [`relay_core`]: it moves bytes and performs the actions the core asks
//! for (dial, listen, write, close); every protocol decision is the core's.
//!
//! ```
//! use relay_core::server::ServerConfig;
//! use relay_smol::{ClientOptions, ServeConfig};
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use std::sync::Arc;
//!
//! smol::block_on(async {
//!     // An echo target, a relay server, and a client going through it, all on loopback.
//!     let target = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let target_addr = target.local_addr()?;
//!     smol::spawn(async move {
//!         let (s, _) = target.accept().await.unwrap();
//!         futures_lite::io::copy(s.clone(), &mut s.clone()).await.ok();
//!     }).detach();
//!     let relay = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let relay_addr = relay.local_addr()?;
//!     smol::spawn(relay_smol::serve(relay, Arc::new(ServeConfig::new(ServerConfig::default())))).detach();
//!
//!     let tcp = smol::net::TcpStream::connect(relay_addr).await?;
//!     let to = target_addr.to_string();
//!     let mut s = relay_smol::connect(tcp, &relay_core::Address::parse(&to).unwrap(), &ClientOptions::default()).await?;
//!     s.write_all(b"ping").await?;
//!     let mut back = [0u8; 4];
//!     s.read_exact(&mut back).await?;
//!     assert_eq!(&back, b"ping");
//!     std::io::Result::Ok(())
//! }).unwrap();
//! ```
#![warn(missing_docs)]

use std::io;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use relay_core::Address;
use relay_core::client::Client;
use relay_core::server::Transport;

pub mod channel;
pub mod dial;
pub mod gate;
pub mod mux;
pub mod pipe;
pub mod remote;
pub mod route;
mod serve;
pub mod services;
mod stream;
pub mod udp;

pub use serve::{Outcome, ServeConfig, handle, handle_stream, serve, serve_channel, serve_quic};
pub use stream::RelayStream;

/// How a client talks to its relay server.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// User name and password, sent when the user name is not empty.
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
    /// Send the request at once instead of with the first payload.
    pub nodelay: bool,
}

impl ClientOptions {
    fn credentials(&self) -> Option<(&[u8], &[u8])> {
        self.credentials.as_ref().map(|(u, p)| (&u[..], &p[..]))
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Opens a TCP tunnel to `target` through the relay server at the other end of `stream`.
///
/// With `nodelay` the request is written before this returns; otherwise nothing is written
/// until the first payload. Either way it never waits for the server's response: that is
/// checked on the first read of the returned stream.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    target: &Address<'_>,
    options: &ClientOptions,
) -> io::Result<RelayStream<S>> {
    let client = Client::connect(
        Transport::Tcp,
        target,
        options.credentials(),
        options.nodelay,
    )
    .map_err(invalid)?;
    let mut s = RelayStream::new(stream, client);
    s.flush().await?;
    Ok(s)
}

/// The two halves of a UDP tunnel: framed datagrams out, framed datagrams in.
pub type UdpTunnel<S> = (
    udp::FramedSend<futures_lite::io::WriteHalf<RelayStream<S>>>,
    udp::FramedRecv<futures_lite::io::ReadHalf<RelayStream<S>>>,
);

/// Opens a UDP tunnel to `target` (GOST's UDP CONNECT, CMD `0x81`) through the relay server at
/// the other end of `stream`: datagrams are length-framed both ways, and the request goes out
/// with the first datagram unless `nodelay` is set.
pub async fn connect_udp<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    target: &Address<'_>,
    options: &ClientOptions,
) -> io::Result<UdpTunnel<S>> {
    let client = Client::connect(
        Transport::Udp,
        target,
        options.credentials(),
        options.nodelay,
    )
    .map_err(invalid)?;
    let mut s = RelayStream::new(stream, client);
    s.flush().await?;
    let (r, w) = futures_lite::io::split(s);
    Ok((udp::FramedSend::new(w, &[]), udp::FramedRecv::new(r, &[])))
}
