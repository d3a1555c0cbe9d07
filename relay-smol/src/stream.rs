//! [`RelayStream`]: a stream through a relay server, with the handshake folded into the first
//! write and the first read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::{AsyncRead, AsyncWrite};
use relay_core::Decoded;
use relay_core::client::{Client, ClientError, ClientEvent};
use relay_core::target::Target;

/// How much payload the first write carries along with the request.
const FIRST_WRITE_MAX: usize = 16 * 1024;

/// A stream to a target through a relay server.
///
/// The relay request goes out at once (nodelay, see [`crate::connect`]) or in front of the first
/// payload write; the server's response is stripped from the front of the first bytes read,
/// whenever it arrives, so neither direction ever waits for the other. A refusal surfaces as an
/// [`io::Error`] of kind `ConnectionRefused` (or `UnexpectedEof` for a close without response)
/// wrapping the [`ClientError`], on the first read.
#[derive(Debug)]
pub struct RelayStream<S> {
    inner: S,
    client: Client,
    /// Bytes still to write before anything else: the request and the first payload.
    pending: Vec<u8>,
    pending_at: usize,
    /// Downstream bytes read while the response was incomplete.
    head: Vec<u8>,
    /// Payload that followed the response, still to hand to the reader.
    leftover: Vec<u8>,
    leftover_at: usize,
    /// The address in the server's OK response (BIND: where the server listens).
    bound: Option<Target>,
}

impl<S> RelayStream<S> {
    pub(crate) fn new(inner: S, mut client: Client) -> Self {
        let pending = client
            .poll_transmit()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        RelayStream {
            inner,
            client,
            pending,
            pending_at: 0,
            head: Vec::new(),
            leftover: Vec::new(),
            leftover_at: 0,
            bound: None,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// True once the server's OK response has been read.
    pub fn is_established(&self) -> bool {
        self.client.is_established()
    }

    /// True when this layer's request went out at connect time (nodelay), so that its response
    /// can be waited for before any payload is written.
    pub fn is_immediate(&self) -> bool {
        self.client.is_immediate()
    }

    /// The address carried by the server's OK response, once read (for BIND and UDP
    /// association: where the server listens).
    pub fn bound(&self) -> Option<Target> {
        self.bound
    }
}

impl<S: AsyncRead + Unpin> RelayStream<S> {
    /// Waits for the server's response without consuming payload: any bytes after it stay for
    /// the next read. Returns the response's address; a refusal is an error as on a read.
    pub async fn response(&mut self) -> io::Result<Option<Target>> {
        futures_lite::future::poll_fn(|cx| self.poll_response(cx)).await
    }

    fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Target>>> {
        loop {
            if self.client.is_established() {
                return Poll::Ready(Ok(self.bound));
            }
            let mut chunk = [0u8; 512];
            let n = ready!(Pin::new(&mut self.inner).poll_read(cx, &mut chunk))?;
            if n == 0 {
                return Poll::Ready(Err(match self.client.handle_eof() {
                    Some(e) => refusal(e),
                    None => io::ErrorKind::UnexpectedEof.into(),
                }));
            }
            self.head.extend_from_slice(&chunk[..n]);
            match self.client.handle_response(&self.head).map_err(refusal)? {
                Decoded::Partial { .. } => continue,
                Decoded::Complete {
                    value: ClientEvent::Established { bound },
                    consumed,
                } => {
                    self.bound = bound;
                    self.leftover = self.head.split_off(consumed);
                    self.leftover_at = 0;
                    self.head = Vec::new();
                }
            }
        }
    }
}

fn refusal(e: ClientError) -> io::Error {
    let kind = match e {
        ClientError::Rejected(_) => io::ErrorKind::ConnectionRefused,
        ClientError::Malformed(_) => io::ErrorKind::InvalidData,
        ClientError::Closed => io::ErrorKind::UnexpectedEof,
    };
    io::Error::new(kind, e)
}

impl<S: AsyncWrite + Unpin> RelayStream<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_at < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
        }
        if !self.pending.is_empty() {
            self.pending = Vec::new();
            self.pending_at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RelayStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        let request = this.client.take_request();
        if request.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        // GOST's lazy request: the request and the first payload in one write.
        let take = buf.len().min(FIRST_WRITE_MAX);
        let mut first = Vec::with_capacity(request.len() + take);
        first.extend_from_slice(request);
        first.extend_from_slice(&buf[..take]);
        this.pending = first;
        // The payload is accepted now; it is flushed before anything else is written.
        let _ = this.poll_pending(cx)?;
        Poll::Ready(Ok(take))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RelayStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.client.is_established() {
            ready!(this.poll_response(cx))?;
        }
        if this.leftover_at < this.leftover.len() {
            let n = buf.len().min(this.leftover.len() - this.leftover_at);
            buf[..n].copy_from_slice(&this.leftover[this.leftover_at..this.leftover_at + n]);
            this.leftover_at += n;
            if this.leftover_at == this.leftover.len() {
                this.leftover = Vec::new();
                this.leftover_at = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}
