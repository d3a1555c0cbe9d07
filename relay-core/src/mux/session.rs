//! The session state machine.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{Command, Frame, HEADER_LEN, UPD_LEN, WindowUpdate, encode_header};
use super::stream::{Stream, drain_into};
use super::{MuxConfig, MuxError, MuxEvent, Role, StreamId};
use crate::codec::Decoded;

/// A queued control frame; sent before any data frame.
#[derive(Debug, Clone, Copy)]
enum Control {
    Syn(StreamId),
    Nop,
    Upd(StreamId),
}

/// One end of an smux session, without IO.
///
/// * Bytes from the connection go to [`handle_input`](Self::handle_input), which consumes whole
///   frames only and stops early (backpressure) while the receive budget, the stream cap or the
///   accept backlog is exhausted.
/// * Bytes for the connection come from [`poll_transmit`](Self::poll_transmit): control frames
///   (SYN, NOP, UPD) first, then data (PSH, FIN) round-robin between streams, a stream's FIN
///   always after its data.
/// * What happened comes from [`poll_event`](Self::poll_event).
/// * Keepalive runs on [`poll_timeout`](Self::poll_timeout) / [`handle_timeout`](Self::handle_timeout).
///
/// Memory is bounded: per stream by [`MuxConfig::stream_send_buffer`] and the receive budget,
/// streams by [`MuxConfig::max_streams`], and the event and control queues hold at most a few
/// entries per stream. The data path does not allocate per frame.
pub struct Session {
    config: MuxConfig,
    /// Last id allocated locally (u64 so that running past 2³² is detected, not wrapped).
    last_id: u64,
    streams: HashMap<StreamId, Stream>,
    control: VecDeque<Control>,
    /// Streams with data or a FIN to send, each at most once.
    data: VecDeque<StreamId>,
    events: VecDeque<MuxEvent>,
    nop_queued: bool,
    /// `StreamOpened` events not yet polled.
    pending_accept: usize,
    /// Received bytes not yet read, over all streams.
    buffered: usize,
    closed: bool,
    /// Next NOP; `None` when keepalive is off.
    next_ping: Option<Instant>,
    /// Next dead-peer check; `None` when keepalive is off.
    next_check: Option<Instant>,
    /// A frame arrived since the last check.
    frame_received: bool,
    /// The last `handle_input` stopped early for backpressure.
    input_held: bool,
}

/// The first deadline of a period after `now`, `None` if `Instant` cannot represent it.
fn after(now: Instant, period: Duration) -> Option<Instant> {
    now.checked_add(period)
}

/// The deadline following `deadline` that lies after `now`, skipping missed periods.
fn next_deadline(deadline: Instant, period: Duration, now: Instant) -> Option<Instant> {
    let behind = now.saturating_duration_since(deadline).as_nanos();
    let periods = behind / period.as_nanos() + 1;
    let step = period.checked_mul(u32::try_from(periods).ok()?)?;
    deadline.checked_add(step)
}

impl Session {
    /// A new session; writes nothing until a stream is opened or a keepalive is due. Fails only
    /// when [`MuxConfig::validate`] does.
    pub fn new(role: Role, config: MuxConfig, now: Instant) -> Result<Session, MuxError> {
        config.validate()?;
        let (next_ping, next_check) = if config.keep_alive_disabled {
            (None, None)
        } else {
            (
                after(now, config.keep_alive_interval),
                after(now, config.keep_alive_timeout),
            )
        };
        Ok(Session {
            config,
            last_id: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            streams: HashMap::new(),
            control: VecDeque::new(),
            data: VecDeque::new(),
            events: VecDeque::new(),
            nop_queued: false,
            pending_accept: 0,
            buffered: 0,
            closed: false,
            next_ping,
            next_check,
            frame_received: false,
            input_held: false,
        })
    }

    /// The configuration the session runs with.
    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    /// Whether the session is over ([`MuxEvent::SessionClosed`] was queued).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Streams in the table: open ones plus locally closed ones whose FIN is not yet transmitted.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Received bytes not yet read, over all streams.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Ends the session with `reason` (once) and returns it.
    fn fail(&mut self, reason: MuxError) -> MuxError {
        if !self.closed {
            self.closed = true;
            self.control.clear();
            self.data.clear();
            self.events.push_back(MuxEvent::SessionClosed { reason });
        }
        reason
    }

    /// An open stream: present and not closed locally.
    fn open(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.streams.get_mut(&id).filter(|s| !s.closing)
    }

    /// Consumes whole frames from `bytes` and returns how many bytes they took; a trailing
    /// partial frame is left for the next call, with more bytes appended.
    ///
    /// Returns fewer bytes than whole frames available when the next frame must wait: a PSH that
    /// would push unread data past [`MuxConfig::max_receive_buffer`] (unless nothing is buffered),
    /// or a SYN while [`MuxConfig::max_streams`] streams exist or
    /// [`MuxConfig::max_pending_accept`] `StreamOpened` events are unpolled. Call again after
    /// reading, closing streams or polling events.
    ///
    /// A protocol error ends the session: the error is returned and
    /// [`MuxEvent::SessionClosed`] queued. After that every call returns [`MuxError::Closed`].
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<usize, MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        let mut pos = 0;
        let mut held = false;
        while let Some(rest) = bytes.get(pos..) {
            let (frame, n) = match Frame::decode(rest) {
                Err(e) => return Err(self.fail(e)),
                Ok(Decoded::Partial { .. }) => break,
                Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            };
            if frame.version() != self.config.version {
                let e = MuxError::VersionMismatch {
                    expected: self.config.version,
                    got: frame.version(),
                };
                return Err(self.fail(e));
            }
            if self.must_wait(&frame) {
                held = true;
                break;
            }
            self.frame_received = true;
            if let Err(e) = self.apply(&frame) {
                return Err(self.fail(e));
            }
            pos += n;
        }
        self.input_held = held;
        Ok(pos)
    }

    /// Whether `frame` cannot be applied before the application makes room.
    fn must_wait(&self, frame: &Frame<'_>) -> bool {
        let id = frame.stream_id();
        match frame.command() {
            Command::Syn => {
                !self.streams.contains_key(&id)
                    && (self.streams.len() >= self.config.max_streams
                        || self.pending_accept >= self.config.max_pending_accept)
            }
            Command::Psh => {
                let len = frame.payload().len();
                self.streams.get(&id).is_some_and(|s| !s.closing)
                    && self.buffered > 0
                    && self.buffered + len > self.config.max_receive_buffer
            }
            Command::Fin | Command::Nop | Command::Upd => false,
        }
    }

    fn apply(&mut self, frame: &Frame<'_>) -> Result<(), MuxError> {
        let id = frame.stream_id();
        match frame.command() {
            Command::Syn => {
                if let Entry::Vacant(slot) = self.streams.entry(id) {
                    slot.insert(Stream::new());
                    self.pending_accept += 1;
                    self.events.push_back(MuxEvent::StreamOpened { id });
                }
            }
            Command::Fin => {
                if let Some(s) = self.open(id).filter(|s| !s.fin_received) {
                    s.fin_received = true;
                    s.want_writable = false;
                    self.events.push_back(MuxEvent::StreamFinished { id });
                }
            }
            Command::Psh => {
                let payload = frame.payload();
                if payload.is_empty() {
                    return Ok(());
                }
                if let Some(s) = self.streams.get_mut(&id).filter(|s| !s.closing) {
                    s.recv.extend(payload);
                    self.buffered += payload.len();
                    if !s.readable_signalled {
                        s.readable_signalled = true;
                        self.events.push_back(MuxEvent::StreamReadable { id });
                    }
                }
            }
            Command::Nop => {}
            Command::Upd => {
                if self.config.version == 1 {
                    return Err(MuxError::UpdInVersion1);
                }
                let (version, send_buffer) = (self.config.version, self.config.stream_send_buffer);
                let Some(upd) = frame.window_update() else {
                    return Err(MuxError::BadLength {
                        command: Command::Upd,
                        length: frame.payload().len() as u32,
                    });
                };
                if let Some(s) = self.streams.get_mut(&id).filter(|s| !s.closing) {
                    if (s.sent.wrapping_sub(upd.consumed) as i32) < 0 {
                        return Err(MuxError::ConsumedMoreThanSent { id });
                    }
                    s.peer_consumed = upd.consumed;
                    s.peer_window = upd.window;
                    if s.want_writable
                        && !s.fin_received
                        && s.write_capacity(version, send_buffer) > 0
                    {
                        s.want_writable = false;
                        self.events.push_back(MuxEvent::StreamWritable { id });
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes queued frames into `out` and returns how many bytes it wrote (0: nothing to send or
    /// the session is closed). Only whole frames are written, except that when not even one full
    /// PSH fits, a shorter PSH is cut to fill `out`: with `out` of at least
    /// 8 + [`MuxConfig::max_frame_size`] bytes, frames are exactly smux's.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> usize {
        if self.closed {
            return 0;
        }
        let mut pos = 0;
        while let Some(&c) = self.control.front() {
            let Some(n) = self.encode_control(c, &mut out[pos..]) else {
                return pos;
            };
            self.control.pop_front();
            pos += n;
        }
        while let Some(&id) = self.data.front() {
            let room = out.len() - pos;
            let Some(s) = self.streams.get_mut(&id) else {
                self.data.pop_front();
                continue;
            };
            if !s.send.is_empty() {
                let full = s.send.len().min(usize::from(self.config.max_frame_size));
                let len = if room >= HEADER_LEN + full {
                    full
                } else if pos == 0 && room > HEADER_LEN {
                    room - HEADER_LEN
                } else {
                    break;
                };
                let frame = &mut out[pos..pos + HEADER_LEN + len];
                // `len` is at most max_frame_size, a u16.
                let header =
                    encode_header(self.config.version, Command::Psh, len as u16, id, frame);
                debug_assert_eq!(header, Ok(HEADER_LEN));
                drain_into(&mut s.send, &mut frame[HEADER_LEN..]);
                s.sent = s.sent.wrapping_add(len as u32);
                pos += HEADER_LEN + len;
                if s.want_writable
                    && !s.fin_received
                    && s.write_capacity(self.config.version, self.config.stream_send_buffer) > 0
                {
                    s.want_writable = false;
                    self.events.push_back(MuxEvent::StreamWritable { id });
                }
            } else if s.closing {
                if room < HEADER_LEN {
                    break;
                }
                let header =
                    encode_header(self.config.version, Command::Fin, 0, id, &mut out[pos..]);
                debug_assert_eq!(header, Ok(HEADER_LEN));
                pos += HEADER_LEN;
                self.streams.remove(&id);
                self.data.pop_front();
                continue;
            }
            self.data.pop_front();
            if !s.send.is_empty() || s.closing {
                self.data.push_back(id);
            } else {
                s.in_data_queue = false;
            }
        }
        pos
    }

    /// Encodes one control frame, `None` when `out` is too small.
    fn encode_control(&mut self, c: Control, out: &mut [u8]) -> Option<usize> {
        let version = self.config.version;
        match c {
            Control::Syn(id) => encode_header(version, Command::Syn, 0, id, out).ok(),
            Control::Nop => {
                let n = encode_header(version, Command::Nop, 0, 0, out).ok()?;
                self.nop_queued = false;
                Some(n)
            }
            Control::Upd(id) => {
                let window = self.config.max_stream_buffer;
                let Some(s) = self.streams.get_mut(&id) else {
                    return Some(0);
                };
                let body = WindowUpdate {
                    consumed: s.announce,
                    window,
                }
                .to_bytes();
                let frame = Frame::new(version, Command::Upd, id, &body).ok()?;
                let n = frame.encode(out).ok()?;
                debug_assert_eq!(n, HEADER_LEN + UPD_LEN);
                s.upd_queued = false;
                Some(n)
            }
        }
    }

    /// The next event, if any. Events about streams closed locally in the meantime are skipped.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        while let Some(ev) = self.events.pop_front() {
            let id = match ev {
                MuxEvent::SessionClosed { .. } => return Some(ev),
                MuxEvent::StreamOpened { id } => {
                    self.pending_accept -= 1;
                    id
                }
                MuxEvent::StreamReadable { id }
                | MuxEvent::StreamFinished { id }
                | MuxEvent::StreamWritable { id } => id,
            };
            if self.streams.get(&id).is_some_and(|s| !s.closing) {
                return Some(ev);
            }
        }
        None
    }

    /// Opens a stream: queues its SYN and returns its id. Ids are never reused; an id the peer
    /// already opened (wrong parity, which GOST never sends) is skipped.
    pub fn open_stream(&mut self) -> Result<StreamId, MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(MuxError::TooManyStreams);
        }
        let id = loop {
            let next = self.last_id + 2;
            let id = StreamId::try_from(next).map_err(|_| MuxError::StreamIdsExhausted)?;
            self.last_id = next;
            if !self.streams.contains_key(&id) {
                break id;
            }
        };
        self.streams.insert(id, Stream::new());
        self.control.push_back(Control::Syn(id));
        Ok(id)
    }

    /// Queues as much of `data` as fits and returns how much: the room left in the stream's send
    /// buffer and, in version 2, in the peer's window. `Ok(0)` for a non-empty `data` is
    /// backpressure: [`MuxEvent::StreamWritable`] follows when room comes back.
    pub fn stream_write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        let (version, send_buffer) = (self.config.version, self.config.stream_send_buffer);
        let s = self.open(id).ok_or(MuxError::UnknownStream { id })?;
        if s.fin_received {
            return Err(MuxError::StreamFinished { id });
        }
        let n = data.len().min(s.write_capacity(version, send_buffer));
        s.send.extend(&data[..n]);
        s.want_writable = n < data.len();
        if n > 0 && !s.in_data_queue {
            s.in_data_queue = true;
            self.data.push_back(id);
        }
        Ok(n)
    }

    /// Reads received bytes into `buf`. `Ok(0)` with a non-empty `buf` is end of stream (the
    /// peer's FIN, once the buffer is drained); [`MuxError::WouldBlock`] means nothing yet.
    ///
    /// In version 2 a read that returns data queues an UPD when it is the stream's first, or when
    /// `max_stream_buffer / 2` bytes were read since the last UPD (smux's rule).
    pub fn stream_read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, MuxError> {
        let (version, half) = (self.config.version, self.config.max_stream_buffer / 2);
        let keep = self.config.max_stream_buffer as usize;
        let closed = self.closed;
        let s = self.streams.get_mut(&id).filter(|s| !s.closing);
        let s = s.ok_or(MuxError::UnknownStream { id })?;
        if buf.is_empty() {
            return Ok(0);
        }
        if s.recv.is_empty() {
            s.readable_signalled = false;
            return match (s.fin_received, closed) {
                (true, _) => Ok(0),
                (false, true) => Err(MuxError::Closed),
                (false, false) => Err(MuxError::WouldBlock),
            };
        }
        let n = s.take_recv(buf);
        if s.recv.is_empty() {
            s.readable_signalled = false;
            // Give back what a burst grew beyond one stream window (v1 has no per-stream cap).
            s.recv.shrink_to(keep);
        }
        self.buffered -= n;
        if version == 2 && !closed {
            let n32 = n as u32;
            s.num_read = s.num_read.wrapping_add(n32);
            s.incr = s.incr.wrapping_add(n32);
            if (s.incr >= half || s.num_read == n32) && s.num_read != 0 {
                s.incr = 0;
                s.announce = s.num_read;
                if !s.upd_queued {
                    s.upd_queued = true;
                    self.control.push_back(Control::Upd(id));
                }
            }
        }
        Ok(n)
    }

    /// Closes a stream: unread data is dropped, queued data is still sent, then FIN, and the id is
    /// forgotten (frames that still arrive for it are ignored). The peer's FIN is not awaited.
    pub fn stream_close(&mut self, id: StreamId) -> Result<(), MuxError> {
        let closed = self.closed;
        let s = self.open(id).ok_or(MuxError::UnknownStream { id })?;
        let unread = s.recv.len();
        if closed {
            self.streams.remove(&id);
        } else {
            s.closing = true;
            s.want_writable = false;
            s.recv = Default::default();
            if !s.in_data_queue {
                s.in_data_queue = true;
                self.data.push_back(id);
            }
        }
        self.buffered -= unread;
        Ok(())
    }

    /// The connection reached end of file (or failed): ends the session with
    /// [`MuxError::ConnectionClosed`] unless it already ended.
    pub fn handle_eof(&mut self) {
        self.fail(MuxError::ConnectionClosed);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; `None` when keepalive
    /// is off or the session is closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        match (self.next_ping, self.next_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the keepalive timers: queues a NOP every interval (skipped while one is still
    /// queued), and at every check ends the session with [`MuxError::KeepAliveTimeout`] if no
    /// frame arrived since the previous check and input is not held back by backpressure. Calls
    /// before a deadline do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(ping) = self.next_ping.filter(|&t| now >= t) {
            if !self.nop_queued {
                self.nop_queued = true;
                self.control.push_back(Control::Nop);
            }
            self.next_ping = next_deadline(ping, self.config.keep_alive_interval, now);
        }
        if let Some(check) = self.next_check.filter(|&t| now >= t) {
            if !self.frame_received && !self.input_held {
                self.fail(MuxError::KeepAliveTimeout);
                return;
            }
            self.frame_received = false;
            self.next_check = next_deadline(check, self.config.keep_alive_timeout, now);
        }
    }
}
