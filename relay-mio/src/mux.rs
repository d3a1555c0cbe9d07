//! Driving a sans-IO [`relay_core::mux::Session`] over a non-blocking TCP connection
//! ([`MuxLink`]), and piping one mux stream to a local TCP connection ([`StreamPipe`]).
//!
//! Every socket of a session (the relay connection, the streams' local connections, a BIND
//! listener) is registered under the session's one token; any event drives the whole session
//! until nothing moves.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use relay_core::buf::RecvBuf;
use relay_core::mux::{MuxConfig, MuxError, Role, Session, StreamId, frame};

use crate::dial::{ConnectState, connect_state};
use crate::pipe::{Half, PREFIX_ROOM, READ_BUDGET};

/// One smux session over a relay connection.
pub(crate) struct MuxLink {
    /// The session's state machine.
    pub session: Session,
    inbuf: RecvBuf,
    out: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    eof: bool,
}

impl MuxLink {
    /// A session over a relay connection. `head` holds bytes already read from it that belong to the
    /// session; `prefix` bytes still to write to `conn` before any frame.
    pub(crate) fn new(
        role: Role,
        config: MuxConfig,
        now: Instant,
        head: &[u8],
        prefix: &[u8],
    ) -> Result<MuxLink, MuxError> {
        let session = Session::new(role, config, now)?;
        let mut inbuf = RecvBuf::with_capacity(frame::HEADER_LEN + frame::MAX_PAYLOAD + 4096);
        inbuf.extend(head);
        let size = (frame::HEADER_LEN + usize::from(config.max_frame_size)).max(prefix.len());
        let mut out = vec![0u8; size].into_boxed_slice();
        out[..prefix.len()].copy_from_slice(prefix);
        Ok(MuxLink {
            session,
            inbuf,
            out,
            out_start: 0,
            out_end: prefix.len(),
            eof: false,
        })
    }

    /// Feeds pending input to the session and reads the connection. `Ok(true)` when
    /// something moved; `yielded` is set when it stopped on its read budget.
    pub(crate) fn pump_in(&mut self, conn: &mut TcpStream, yielded: &mut bool) -> bool {
        let mut progress = false;
        for _ in 0..READ_BUDGET {
            if !self.inbuf.is_empty() {
                match self.session.handle_input(self.inbuf.data()) {
                    Ok(used) => {
                        if used > 0 {
                            progress = true;
                            self.inbuf.consume(used);
                        }
                    }
                    // The session is over; its SessionClosed event says why.
                    Err(_) => return progress,
                }
            }
            if self.eof || self.session.is_closed() {
                return progress;
            }
            let space = self.inbuf.unfilled();
            if space.is_empty() {
                // A whole frame waits for the application (backpressure).
                return progress;
            }
            match conn.read(space) {
                Ok(0) => {
                    self.eof = true;
                    self.session.handle_eof();
                    return true;
                }
                Ok(n) => {
                    self.inbuf.filled(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                Err(e) => {
                    log::debug!("mux connection: {e}");
                    self.eof = true;
                    self.session.handle_eof();
                    return true;
                }
            }
        }
        *yielded = true;
        progress
    }

    /// Writes what the session has to send until the connection would block. `true` when
    /// something moved.
    pub(crate) fn pump_out(&mut self, conn: &mut TcpStream) -> bool {
        let mut progress = false;
        loop {
            while self.out_start < self.out_end {
                match conn.write(&self.out[self.out_start..self.out_end]) {
                    Ok(0) => {
                        self.fail();
                        return true;
                    }
                    Ok(n) => {
                        self.out_start += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                    Err(e) => {
                        log::debug!("mux connection: {e}");
                        self.fail();
                        return true;
                    }
                }
            }
            let n = self.session.poll_transmit(&mut self.out);
            if n == 0 {
                return progress;
            }
            self.out_start = 0;
            self.out_end = n;
        }
    }

    fn fail(&mut self) {
        self.eof = true;
        self.out_start = 0;
        self.out_end = 0;
        self.session.handle_eof();
    }
}

/// One mux stream piped to a local TCP connection (a full close either way, as GOST).
pub(crate) struct StreamPipe {
    /// The stream.
    pub id: StreamId,
    /// The local connection (may still be connecting).
    pub local: TcpStream,
    connected: bool,
    /// Connect deadline while connecting.
    pub deadline: Option<Instant>,
    /// Local → stream (starts with the BIND preamble on a server).
    up: Half,
    /// Stream → local.
    down: Half,
    stream_closed: bool,
    /// The last drive stopped on a budget.
    pub yielded: bool,
}

/// What a [`StreamPipe::drive`] did.
pub(crate) struct Driven {
    /// Something moved.
    pub progress: bool,
    /// The pipe is over: remove it.
    pub done: bool,
}

impl StreamPipe {
    /// A pipe for stream `id` and `local`; `prefix` goes to the stream first.
    pub(crate) fn new(
        id: StreamId,
        local: TcpStream,
        connected: bool,
        deadline: Option<Instant>,
        prefix: &[u8],
    ) -> StreamPipe {
        let mut up = Half::new(PREFIX_ROOM);
        up.push(prefix, false);
        up.bytes = 0;
        StreamPipe {
            id,
            local,
            connected,
            deadline,
            up,
            down: Half::new(PREFIX_ROOM),
            stream_closed: false,
            yielded: false,
        }
    }

    /// Queues bytes already read from the stream, for the local connection.
    pub(crate) fn push_down(&mut self, bytes: &[u8]) {
        self.down.push(bytes, false);
    }

    /// Bytes each way (local → stream, stream → local).
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }

    /// Moves bytes both ways until each side would block.
    pub(crate) fn drive(&mut self, session: &mut Session, now: Instant) -> Driven {
        self.yielded = false;
        let mut progress = false;
        if !self.connected {
            match connect_state(&self.local) {
                ConnectState::Pending => {
                    if self.deadline.is_some_and(|d| now >= d) {
                        log::info!("mux stream {}: local connect timed out", self.id);
                        return self.end(session);
                    }
                    return Driven {
                        progress: false,
                        done: false,
                    };
                }
                ConnectState::Failed(e) => {
                    log::info!("mux stream {}: local connect: {e}", self.id);
                    return self.end(session);
                }
                ConnectState::Done => {
                    let _ = self.local.set_nodelay(true);
                    self.connected = true;
                    self.deadline = None;
                    progress = true;
                }
            }
        }
        // Local → stream.
        let mut reads = 0;
        loop {
            let pending = self.up.pending();
            if !pending.is_empty() {
                match session.stream_write(self.id, pending) {
                    Ok(n) => {
                        if n > 0 {
                            progress = true;
                        }
                        let all = n == pending.len();
                        self.up.consume(n);
                        if !all {
                            break;
                        }
                    }
                    Err(_) => return self.end(session),
                }
            }
            if self.up.eof {
                // GOST closes the whole stream on the local end of stream.
                if !self.stream_closed {
                    let _ = session.stream_close(self.id);
                    self.stream_closed = true;
                    progress = true;
                }
                break;
            }
            if reads == READ_BUDGET {
                self.yielded = true;
                break;
            }
            reads += 1;
            match self.up.read_from(&mut self.local) {
                Ok(None) => break,
                Ok(Some(0)) => {
                    self.up.eof = true;
                    progress = true;
                }
                Ok(Some(_)) => progress = true,
                Err(e) => {
                    log::debug!("mux stream {}: {e}", self.id);
                    return self.end(session);
                }
            }
        }
        // Stream → local.
        let mut reads = 0;
        loop {
            match self.down.flush(&mut self.local) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    log::debug!("mux stream {}: {e}", self.id);
                    return self.end(session);
                }
            }
            if self.down.eof {
                if !self.down.shut {
                    let _ = self.local.shutdown(Shutdown::Write);
                    self.down.shut = true;
                    progress = true;
                }
                break;
            }
            if self.stream_closed {
                // Nothing more can be read from a closed stream.
                return self.end(session);
            }
            if reads == READ_BUDGET {
                self.yielded = true;
                break;
            }
            reads += 1;
            let space = self.down.unfilled();
            match session.stream_read(self.id, space) {
                Ok(0) => {
                    self.down.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.down.filled(n);
                    progress = true;
                }
                Err(MuxError::WouldBlock) => break,
                Err(_) => return self.end(session),
            }
        }
        let done = self.stream_closed && self.down.pending().is_empty();
        Driven { progress, done }
    }

    fn end(&mut self, session: &mut Session) -> Driven {
        if !self.stream_closed {
            let _ = session.stream_close(self.id);
            self.stream_closed = true;
        }
        Driven {
            progress: true,
            done: true,
        }
    }

    /// Deregisters the local connection (dropping the pipe closes it).
    pub(crate) fn close(&mut self, registry: &mio::Registry) {
        let _ = registry.deregister(&mut self.local);
    }
}
