//! Data channels: what carries the relay protocol between a client and a relay server.
//!
//! GOST calls these dialers (client side) and listeners (server side): plain TCP, TLS, and
//! WebSocket with or without TLS. They are transport concerns only: a [`Dialer`] turns a
//! connected byte stream into the channel's byte stream, an [`Acceptor`] does the same for an
//! accepted one; the relay protocol then runs unchanged on top.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use rustls::pki_types::ServerName;
use smol::Timer;

use crate::route::BoxStream;

pub mod quic;
pub mod tls;
pub mod ws;

pub use tls::{ClientTls, Identity, ServerTls};

/// The client side of a TLS connection: configuration and the name presented (SNI).
#[derive(Clone)]
pub struct TlsDialer {
    connector: futures_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsDialer")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsDialer {
    /// A TLS client for `server_name` (GOST: `serverName`, else the node's host).
    pub fn new(tls: &ClientTls, server_name: &str) -> io::Result<TlsDialer> {
        Ok(TlsDialer {
            connector: futures_rustls::TlsConnector::from(tls.config(&[])?),
            server_name: tls::server_name(server_name)?,
        })
    }

    /// Runs the TLS client handshake over `stream`.
    pub async fn handshake<S>(&self, stream: S) -> io::Result<futures_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// The client side of a WebSocket channel (`ws`, or `wss` with TLS).
#[derive(Debug, Clone)]
pub struct WsDialer {
    tls: Option<TlsDialer>,
    host: String,
    path: String,
}

impl WsDialer {
    /// A WebSocket client sending `Host: host` (GOST: `host` metadata, else the node address)
    /// and requesting `path` (default [`ws::DEFAULT_PATH`]); with `tls` for `wss`.
    pub fn new(host: &str, path: Option<&str>, tls: Option<TlsDialer>) -> WsDialer {
        WsDialer {
            tls,
            host: host.to_string(),
            path: path
                .filter(|p| !p.is_empty())
                .unwrap_or(ws::DEFAULT_PATH)
                .to_string(),
        }
    }
}

/// How a relay node is reached once a byte stream to its address is open.
#[derive(Debug, Clone, Default)]
pub enum Dialer {
    /// The stream as it is (GOST's `tcp` dialer).
    #[default]
    Tcp,
    /// TLS on top (`relay+tls`).
    Tls(TlsDialer),
    /// WebSocket on top, over TLS for `wss` (`relay+ws`, `relay+wss`).
    Ws(WsDialer),
    /// A stream of a QUIC connection instead of TCP (`relay+quic`); first hop only, as in
    /// GOST.
    Quic(Arc<quic::QuicDialer>),
}

impl Dialer {
    /// Runs this channel's client handshake over `stream`.
    pub async fn handshake(&self, stream: BoxStream) -> io::Result<BoxStream> {
        Ok(match self {
            Dialer::Tcp => stream,
            Dialer::Quic(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a quic node can only be the first hop of a chain",
                ));
            }
            Dialer::Tls(t) => Box::new(t.handshake(stream).await?),
            Dialer::Ws(w) => match &w.tls {
                Some(t) => {
                    let s = t.handshake(stream).await?;
                    Box::new(ws::connect(s, &w.host, &w.path).await?)
                }
                None => Box::new(ws::connect(stream, &w.host, &w.path).await?),
            },
        })
    }

    /// True for the plain TCP dialer.
    pub fn is_tcp(&self) -> bool {
        matches!(self, Dialer::Tcp)
    }
}

/// The server side of a data channel: what runs on each accepted connection before relay.
#[derive(Clone, Default)]
pub enum Acceptor {
    /// Relay straight on the connection (GOST's `tcp` listener).
    #[default]
    Tcp,
    /// TLS first (`relay+tls`).
    Tls(futures_rustls::TlsAcceptor),
    /// WebSocket upgrade on `path` first, over TLS for `wss` (`relay+ws`, `relay+wss`).
    Ws {
        /// TLS under the WebSocket (`wss`).
        tls: Option<futures_rustls::TlsAcceptor>,
        /// The only path upgraded (GOST default `/ws`).
        path: String,
    },
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Acceptor::Tcp => f.write_str("Tcp"),
            Acceptor::Tls(_) => f.write_str("Tls"),
            Acceptor::Ws { tls, path } => f
                .debug_struct("Ws")
                .field("tls", &tls.is_some())
                .field("path", path)
                .finish(),
        }
    }
}

impl Acceptor {
    /// A TLS acceptor serving `tls`.
    pub fn tls(tls: &ServerTls) -> io::Result<Acceptor> {
        Ok(Acceptor::Tls(futures_rustls::TlsAcceptor::from(
            tls.config(&[])?,
        )))
    }

    /// A WebSocket acceptor for `path` (default [`ws::DEFAULT_PATH`]), over `tls` for `wss`.
    pub fn ws(path: Option<&str>, tls: Option<&ServerTls>) -> io::Result<Acceptor> {
        Ok(Acceptor::Ws {
            tls: tls
                .map(|t| t.config(&[]).map(futures_rustls::TlsAcceptor::from))
                .transpose()?,
            path: path
                .filter(|p| !p.is_empty())
                .unwrap_or(ws::DEFAULT_PATH)
                .to_string(),
        })
    }

    /// Runs this channel's server handshake over an accepted `stream`.
    pub async fn accept<S>(&self, stream: S) -> io::Result<BoxStream>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Ok(match self {
            Acceptor::Tcp => Box::new(stream),
            Acceptor::Tls(a) => Box::new(a.accept(stream).await?),
            Acceptor::Ws { tls: Some(a), path } => {
                let s = a.accept(stream).await?;
                Box::new(ws::accept(s, path).await?)
            }
            Acceptor::Ws { tls: None, path } => Box::new(ws::accept(stream, path).await?),
        })
    }
}

/// Runs `work` unless `deadline` passes first (then `TimedOut`).
pub(crate) async fn before<T>(
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
