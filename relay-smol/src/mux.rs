//! Runs a [`relay_core::mux::Session`] over any byte stream on smol.
//!
//! [`Mux::spawn`] starts one task that owns the connection: it reads frames into the session
//! (stopping while the session pushes back), writes what the session has to send, and runs the
//! keepalive timers. Streams are [`MuxStream`]s, which implement `AsyncRead` and `AsyncWrite`
//! (also through `&MuxStream`, so one stream can be read and written at once); a write that
//! does not fit the stream's send buffer waits for room, a read waits for data.
//!
//! ```
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use relay_core::mux::{MuxConfig, Role};
//! use relay_smol::mux::Mux;
//!
//! smol::block_on(async {
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let (a, b) = futures_lite::future::try_zip(
//!         smol::net::TcpStream::connect(addr),
//!         async { Ok(listener.accept().await?.0) },
//!     )
//!     .await?;
//!     let client = Mux::spawn(a, Vec::new(), Role::Client, MuxConfig::default())?;
//!     let server = Mux::spawn(b, Vec::new(), Role::Server, MuxConfig::default())?;
//!
//!     let mut s = client.open()?;
//!     s.write_all(b"hello").await?;
//!     let mut t = server.accept().await?;
//!     let mut got = [0u8; 5];
//!     t.read_exact(&mut got).await?;
//!     assert_eq!(&got, b"hello");
//!     std::io::Result::Ok(())
//! })
//! .unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use relay_core::Decoded;
use relay_core::mux::{Frame, MuxConfig, MuxError, MuxEvent, Role, Session, StreamId};
use smol::channel::{Receiver, Sender, bounded};
use smol::{Task, Timer};

#[derive(Default)]
struct Wakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

struct State {
    session: Session,
    wakers: HashMap<StreamId, Wakers>,
    accepted: VecDeque<StreamId>,
    accept_waker: Option<Waker>,
    closed: Option<MuxError>,
    closed_wakers: Vec<Waker>,
}

struct Shared {
    state: Mutex<State>,
    /// Something may have become sendable.
    transmit: Sender<()>,
    /// The application made room (read, closed a stream, accepted): input may go on.
    room: Sender<()>,
}

fn notify(tx: &Sender<()>) {
    let _ = tx.try_send(());
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kick(&self) {
        notify(&self.transmit);
        notify(&self.room);
    }
}

impl State {
    /// Hands the session's events to whoever waits for them.
    fn dispatch(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                MuxEvent::StreamOpened { id } => {
                    self.accepted.push_back(id);
                    if let Some(w) = self.accept_waker.take() {
                        w.wake();
                    }
                }
                MuxEvent::StreamReadable { id } | MuxEvent::StreamFinished { id } => {
                    if let Some(w) = self.wakers.get_mut(&id).and_then(|w| w.read.take()) {
                        w.wake();
                    }
                    if let MuxEvent::StreamFinished { id } = ev {
                        // Writes now fail: let a waiting writer see it.
                        if let Some(w) = self.wakers.get_mut(&id).and_then(|w| w.write.take()) {
                            w.wake();
                        }
                    }
                }
                MuxEvent::StreamWritable { id } => {
                    if let Some(w) = self.wakers.get_mut(&id).and_then(|w| w.write.take()) {
                        w.wake();
                    }
                }
                MuxEvent::SessionClosed { reason } => {
                    self.closed = Some(reason);
                    for (_, w) in self.wakers.drain() {
                        w.read.into_iter().chain(w.write).for_each(Waker::wake);
                    }
                    if let Some(w) = self.accept_waker.take() {
                        w.wake();
                    }
                    self.closed_wakers.drain(..).for_each(Waker::wake);
                }
            }
        }
    }
}

fn closed_error(reason: Option<MuxError>) -> io::Error {
    let reason = reason.unwrap_or(MuxError::Closed);
    let kind = match reason {
        MuxError::ConnectionClosed => io::ErrorKind::ConnectionAborted,
        MuxError::KeepAliveTimeout => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::ConnectionReset,
    };
    io::Error::new(kind, reason)
}

fn mux_error(e: MuxError) -> io::Error {
    match e {
        MuxError::TooManyStreams | MuxError::StreamIdsExhausted => io::Error::other(e),
        MuxError::StreamFinished { .. } => io::Error::new(io::ErrorKind::BrokenPipe, e),
        e => closed_error(Some(e)),
    }
}

/// A running mux session: open and accept streams, learn when it ends. Dropping it stops the
/// session's task (every stream then fails).
pub struct Mux {
    shared: Arc<Shared>,
    _task: Task<()>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Mux")
            .field("streams", &st.session.stream_count())
            .field("closed", &st.closed)
            .finish()
    }
}

impl Mux {
    /// Starts a session over `conn` on a new task. `head` holds bytes already read from `conn`
    /// that belong to the session (they are processed first). Fails only on an invalid config.
    pub fn spawn<S>(conn: S, head: Vec<u8>, role: Role, config: MuxConfig) -> io::Result<Mux>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let session = Session::new(role, config, Instant::now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (transmit, transmit_rx) = bounded(1);
        let (room, room_rx) = bounded(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session,
                wakers: HashMap::new(),
                accepted: VecDeque::new(),
                accept_waker: None,
                closed: None,
                closed_wakers: Vec::new(),
            }),
            transmit,
            room,
        });
        let task = smol::spawn(drive(shared.clone(), conn, head, transmit_rx, room_rx));
        Ok(Mux {
            shared,
            _task: task,
        })
    }

    /// Opens a stream (its SYN goes out before its data).
    pub fn open(&self) -> io::Result<MuxStream> {
        let mut st = self.shared.lock();
        if let Some(reason) = st.closed {
            return Err(closed_error(Some(reason)));
        }
        let id = st.session.open_stream().map_err(mux_error)?;
        st.wakers.insert(id, Wakers::default());
        drop(st);
        notify(&self.shared.transmit);
        Ok(MuxStream::new(self.shared.clone(), id))
    }

    /// The next stream the peer opened; fails once the session is over.
    pub async fn accept(&self) -> io::Result<MuxStream> {
        let id = future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some(id) = st.accepted.pop_front() {
                st.wakers.insert(id, Wakers::default());
                return Poll::Ready(Ok(id));
            }
            if let Some(reason) = st.closed {
                return Poll::Ready(Err(closed_error(Some(reason))));
            }
            st.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        notify(&self.shared.room);
        Ok(MuxStream::new(self.shared.clone(), id))
    }

    /// Waits until the session is over and says why.
    pub async fn closed(&self) -> MuxError {
        future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            match st.closed {
                Some(reason) => Poll::Ready(reason),
                None => {
                    st.closed_wakers.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Streams the session still tracks (open ones, and closed ones whose FIN is not sent yet).
    pub fn stream_count(&self) -> usize {
        self.shared.lock().session.stream_count()
    }

    /// Received bytes not yet read, over all streams.
    pub fn buffered(&self) -> usize {
        self.shared.lock().session.buffered()
    }

    /// Peer-opened streams not yet accepted.
    pub fn pending_accept(&self) -> usize {
        self.shared.lock().accepted.len()
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        // The task stops with the handle: end the session so that every stream learns of it.
        let mut st = self.shared.lock();
        st.session.handle_eof();
        st.dispatch();
    }
}

/// The session task: input, output and timers, until the session ends.
async fn drive<S>(
    shared: Arc<Shared>,
    conn: S,
    head: Vec<u8>,
    transmit: Receiver<()>,
    room: Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut r, mut w) = futures_lite::io::split(conn);
    let input = async {
        let mut pending = head;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let (held, closed) = {
                let mut st = shared.lock();
                let used = if pending.is_empty() {
                    Ok(0)
                } else {
                    st.session.handle_input(&pending)
                };
                st.dispatch();
                match used {
                    Ok(used) => {
                        pending.drain(..used);
                        let whole = matches!(Frame::decode(&pending), Ok(Decoded::Complete { .. }));
                        (whole, st.closed.is_some())
                    }
                    Err(_) => (false, true),
                }
            };
            notify(&shared.transmit);
            if closed {
                return;
            }
            if held {
                // Backpressure: a whole frame waits for the application to make room.
                if room.recv().await.is_err() {
                    return;
                }
                continue;
            }
            match r.read(&mut chunk).await {
                Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
                _ => {
                    let mut st = shared.lock();
                    st.session.handle_eof();
                    st.dispatch();
                    return;
                }
            }
        }
    };
    let output = async {
        let mut out = {
            let st = shared.lock();
            vec![0u8; 8 + usize::from(st.session.config().max_frame_size)]
        };
        loop {
            let (n, closed) = {
                let mut st = shared.lock();
                let n = st.session.poll_transmit(&mut out);
                st.dispatch();
                (n, st.closed.is_some())
            };
            if n > 0 {
                let sent = async {
                    w.write_all(&out[..n]).await?;
                    w.flush().await
                };
                if sent.await.is_err() {
                    let mut st = shared.lock();
                    st.session.handle_eof();
                    st.dispatch();
                    return;
                }
                // Room in the send buffers may wake a writer; reads may free input.
                notify(&shared.room);
                continue;
            }
            if closed || transmit.recv().await.is_err() {
                return;
            }
        }
    };
    let timers = async {
        loop {
            let at = {
                let st = shared.lock();
                if st.closed.is_some() {
                    return;
                }
                st.session.poll_timeout()
            };
            match at {
                Some(at) => {
                    Timer::at(at).await;
                }
                None => return future::pending().await,
            }
            let mut st = shared.lock();
            st.session.handle_timeout(Instant::now());
            st.dispatch();
            drop(st);
            notify(&shared.transmit);
        }
    };
    // The session ends when input or the timers end it; output flushes what it can meanwhile.
    let until_closed = future::poll_fn(|cx| {
        let mut st = shared.lock();
        if st.closed.is_some() {
            Poll::Ready(())
        } else {
            st.closed_wakers.push(cx.waker().clone());
            Poll::Pending
        }
    });
    future::or(future::or(input, timers), future::or(output, until_closed)).await;
    let _ = w.close().await;
    // Make sure everything learns of the end, whichever way it came.
    let mut st = shared.lock();
    st.session.handle_eof();
    st.dispatch();
}

/// One stream of a [`Mux`]. Reading returns end of stream once the peer closed it; writing
/// after the peer closed it fails (smux v1.5.31 semantics). Closing (or dropping) it sends FIN:
/// a full close, as GOST does.
pub struct MuxStream {
    shared: Arc<Shared>,
    id: StreamId,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id).finish()
    }
}

impl MuxStream {
    fn new(shared: Arc<Shared>, id: StreamId) -> MuxStream {
        MuxStream {
            shared,
            id,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn poll_read_inner(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        match st.session.stream_read(self.id, buf) {
            Ok(n) => {
                drop(st);
                if n > 0 {
                    self.shared.kick();
                }
                Poll::Ready(Ok(n))
            }
            Err(MuxError::WouldBlock) => {
                if let Some(w) = st.wakers.get_mut(&self.id) {
                    w.read = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(Err(closed_error(st.closed)))
                }
            }
            // Closed locally: nothing more to read.
            Err(MuxError::UnknownStream { .. }) => Poll::Ready(Ok(0)),
            Err(MuxError::Closed) => Poll::Ready(Err(closed_error(st.closed))),
            Err(e) => Poll::Ready(Err(mux_error(e))),
        }
    }

    fn poll_write_inner(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.shared.lock();
        match st.session.stream_write(self.id, buf) {
            Ok(0) => match st.wakers.get_mut(&self.id) {
                Some(w) => {
                    w.write = Some(cx.waker().clone());
                    drop(st);
                    notify(&self.shared.transmit);
                    Poll::Pending
                }
                None => Poll::Ready(Err(closed_error(st.closed))),
            },
            Ok(n) => {
                drop(st);
                notify(&self.shared.transmit);
                Poll::Ready(Ok(n))
            }
            Err(MuxError::Closed) => Poll::Ready(Err(closed_error(st.closed))),
            Err(MuxError::UnknownStream { .. }) => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
            Err(e) => Poll::Ready(Err(mux_error(e))),
        }
    }

    fn close_inner(&self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let mut st = self.shared.lock();
        let _ = st.session.stream_close(self.id);
        st.wakers.remove(&self.id);
        drop(st);
        self.shared.kick();
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        self.close_inner();
    }
}

impl AsyncRead for &MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_inner(cx, buf)
    }
}

impl AsyncWrite for &MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_inner(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_inner();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_inner(cx, buf)
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_inner(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_inner();
        Poll::Ready(Ok(()))
    }
}
