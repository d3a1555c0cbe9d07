//! QUIC for the `quic` channel (quinn on smol): one QUIC connection per relay node, one
//! bidirectional stream per relay connection, as GOST multiplexes its QUIC sessions.
//!
//! GOST offers ALPN `http/3` and `quic/v1` and speaks QUIC v1 and draft-29; quinn's defaults
//! include both versions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::tls::{ClientTls, ServerTls};

/// A QUIC endpoint (quinn's), as [`server_endpoint`] returns it.
pub use quinn::Endpoint;

/// The ALPN protocols GOST's QUIC dialer and listener use.
pub const ALPN: [&[u8]; 2] = [b"http/3", b"quic/v1"];

/// Default keep-alive period of client connections (a QUIC session without keep-alive dies
/// at its idle timeout, go-gost/gost#225).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

fn quic_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("quic: {e}"))
}

/// One QUIC bidirectional stream as a byte stream; closing it finishes the send side.
#[derive(Debug)]
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl QuicStream {
    /// Joins the two halves of a bidirectional stream.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> QuicStream {
        QuicStream { send, recv }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_close(Pin::new(&mut self.send), cx)
    }
}

/// The client side of the QUIC channel to one relay node: a lazily opened, cached connection.
#[derive(Debug)]
pub struct QuicDialer {
    config: quinn::ClientConfig,
    server_name: String,
    state: Mutex<Option<(quinn::Endpoint, quinn::Connection)>>,
}

impl QuicDialer {
    /// A QUIC client presenting `server_name` (GOST: `serverName`, else the node address),
    /// with keep-alive every `keepalive` (None: off).
    pub fn new(
        tls: &ClientTls,
        server_name: &str,
        keepalive: Option<Duration>,
    ) -> io::Result<QuicDialer> {
        let crypto = QuicClientConfig::try_from(tls.config(&ALPN)?).map_err(quic_err)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(keepalive);
        config.transport_config(Arc::new(transport));
        let server_name = server_name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(server_name)
            .to_string();
        Ok(QuicDialer {
            config,
            server_name,
            state: Mutex::new(None),
        })
    }

    fn cached(&self) -> Option<quinn::Connection> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .as_ref()
            .filter(|(_, c)| c.close_reason().is_none())
            .map(|(_, c)| c.clone())
    }

    async fn connection(&self, addr: SocketAddr) -> io::Result<quinn::Connection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let endpoint = quinn::Endpoint::client(local)?;
        let conn = endpoint
            .connect_with(self.config.clone(), addr, &self.server_name)
            .map_err(quic_err)?
            .await
            .map_err(quic_err)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Another task may have connected meanwhile: keep its connection (streams may be open
        // on it) and drop the new, unused one.
        if let Some((_, live)) = state.as_ref().filter(|(_, c)| c.close_reason().is_none()) {
            conn.close(0u32.into(), b"duplicate");
            return Ok(live.clone());
        }
        *state = Some((endpoint, conn.clone()));
        Ok(conn)
    }

    /// Opens a new stream to the node at `addr`, connecting first when there is no live
    /// connection (and once more when the cached one turns out dead).
    pub async fn open(&self, addr: SocketAddr) -> io::Result<QuicStream> {
        let conn = self.connection(addr).await?;
        match conn.open_bi().await {
            Ok((send, recv)) => Ok(QuicStream::new(send, recv)),
            Err(_) => {
                self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
                let conn = self.connection(addr).await?;
                let (send, recv) = conn.open_bi().await.map_err(quic_err)?;
                Ok(QuicStream::new(send, recv))
            }
        }
    }
}

/// A QUIC server endpoint on `addr` serving `tls` with GOST's ALPN.
pub fn server_endpoint(addr: SocketAddr, tls: &ServerTls) -> io::Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(tls.config(&ALPN)?).map_err(quic_err)?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(config, addr)
}
