//! WebSocket for the `ws` and `wss` channels: the client and server handshakes, and
//! [`WsStream`], which carries a byte stream in binary messages as GOST does.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncWrite, Stream};
use futures_util::Sink;

/// GOST's default WebSocket path (`path` metadata).
pub const DEFAULT_PATH: &str = "/ws";

fn ws_err(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        e => io::Error::other(format!("websocket: {e}")),
    }
}

/// A byte stream over a WebSocket: every write is one binary message; reads return the
/// payload of binary (and text) messages in order; control messages are skipped; a close
/// message or the end of the connection is the end of the stream.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    read: Bytes,
    eof: bool,
    /// Bytes of the message queued by the last `poll_write`, not flushed yet.
    queued: Option<usize>,
}

impl<S> WsStream<S> {
    /// Wraps an established WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            read: Bytes::new(),
            eof: false,
            queued: None,
        }
    }
}

impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            if !this.read.is_empty() {
                let n = buf.len().min(this.read.len());
                buf[..n].copy_from_slice(&this.read.split_to(n));
                return Poll::Ready(Ok(n));
            }
            if this.eof || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(ws_err(e))),
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => this.read = m.into_data(),
                Some(Ok(_)) => {}
            }
        }
    }
}

impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // A write returns once its message has been handed to the stream underneath, so
        // callers that never flush cannot leave bytes behind in a buffer.
        if this.queued.is_none() {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(ws_err)?;
            Pin::new(&mut this.ws)
                .start_send(Message::binary(buf.to_vec()))
                .map_err(ws_err)?;
            this.queued = Some(buf.len());
        }
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(ws_err)?;
        Poll::Ready(Ok(this.queued.take().unwrap_or(0)))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(ws_err)?;
        this.queued = None;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_err(e))),
        }
    }
}

/// Client handshake: `GET path` with `Host: host` (GOST: the `host` metadata, else the node
/// address) over `stream`, which is already TLS for `wss`.
pub async fn connect<S>(stream: S, host: &str, path: &str) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let url = format!("ws://{host}{path}");
    let (ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| match e {
            WsError::Http(r) => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("websocket handshake refused: HTTP {}", r.status()),
            ),
            e => ws_err(e),
        })?;
    Ok(WsStream::new(ws))
}

/// Server handshake: accepts an upgrade request for `path` only (anything else gets 404, as
/// GOST's HTTP mux answers). As in Go's `ServeMux`, a path ending in `/` also matches
/// everything below it.
pub async fn accept<S>(stream: S, path: &str) -> io::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let want = path.to_string();
    // The error type is tungstenite's `Callback` contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path();
        if path == want || (want.ends_with('/') && path.starts_with(want.as_str())) {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("404 page not found".to_string()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let ws = async_tungstenite::accept_hdr_async(stream, check)
        .await
        .map_err(ws_err)?;
    Ok(WsStream::new(ws))
}
