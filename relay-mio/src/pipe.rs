//! Copying bytes between two non-blocking streams through one bounded buffer per direction.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use relay_core::Decoded;
use relay_core::client::{Client, ClientError};

/// Size of each direction's copy buffer (GOST uses 32 KiB too).
pub(crate) const COPY_BUF: usize = 32 * 1024;

/// What a direction's buffer starts with (plus its extra room), before bulk data.
const FIRST_BUF: usize = 2 * 1024;

/// Reads one source may do per readiness turn before others get theirs (fairness: the unit is
/// queued to continue on the loop's next turn).
pub(crate) const READ_BUDGET: usize = 16;

/// Room kept for bytes placed in front of the payload (held responses, hop requests).
pub(crate) const PREFIX_ROOM: usize = 4 * 1024;

/// One direction of a tunnel: bytes read from a source, not yet written to the destination.
///
/// The last `hold` pending bytes are not written until more bytes are read behind them: a held
/// relay response waiting for the target's first bytes, or hop requests waiting for the first
/// payload. They are dropped if the source ends first.
#[derive(Debug)]
pub(crate) struct Half {
    /// Starts small and grows once, to `full`, when a read fills it (bulk data): an idle
    /// tunnel keeps only the small buffer.
    buf: Vec<u8>,
    full: usize,
    start: usize,
    end: usize,
    hold: usize,
    /// Bytes at the tail, inside `hold`, that may still hold hop responses to strip.
    unstripped: usize,
    /// The source ended.
    pub eof: bool,
    /// The destination's write side was shut after `eof`.
    pub shut: bool,
    /// The last pump stopped on its read budget, not on `WouldBlock`: call it again soon.
    pub yielded: bool,
    /// Bytes read from the source.
    pub bytes: u64,
}

/// What stopped a pump.
#[derive(Debug)]
pub(crate) enum PipeError {
    /// A socket failed.
    Io(io::Error),
    /// A hop of the chain refused, or closed before its response (the hop's index).
    Refused(usize, ClientError),
}

impl From<io::Error> for PipeError {
    fn from(e: io::Error) -> Self {
        PipeError::Io(e)
    }
}

impl std::fmt::Display for PipeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipeError::Io(e) => e.fmt(f),
            PipeError::Refused(hop, e) => write!(f, "hop {hop}: {e}"),
        }
    }
}

impl Half {
    /// An empty direction with a copy buffer of up to `COPY_BUF + extra` bytes: `FIRST_BUF +
    /// extra` now, the rest when bulk data needs it (allocated at most twice).
    pub(crate) fn new(extra: usize) -> Half {
        let full = COPY_BUF + extra;
        Half {
            buf: vec![0; (FIRST_BUF + extra).min(full)],
            full,
            start: 0,
            end: 0,
            hold: 0,
            unstripped: 0,
            eof: false,
            shut: false,
            yielded: false,
            bytes: 0,
        }
    }

    /// Appends bytes to write (as many as fit; callers stay within `PREFIX_ROOM`). `held`
    /// bytes wait for more bytes from the source.
    pub(crate) fn push(&mut self, bytes: &[u8], held: bool) {
        if self.buf.len() - (self.end - self.start) < bytes.len() {
            self.grow();
        }
        if self.start > 0 && self.buf.len() - self.end < bytes.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = bytes.len().min(self.buf.len() - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&bytes[..n]);
        self.end += n;
        if held {
            self.hold += n;
        }
    }

    /// Bytes read and not yet written or consumed.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops `n` bytes from the front of [`Half::pending`].
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        self.hold = self.hold.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// A direction whose buffer has room for `extra` bytes beyond the copy buffer.
    pub(crate) fn with_room(extra: usize) -> Half {
        Half::new(extra)
    }

    /// Free tail to fill from another source (then [`Half::filled`]); empty when full.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        self.compact();
        if self.end == self.buf.len() {
            self.grow();
        }
        &mut self.buf[self.end..]
    }

    /// Grows the buffer to its full size (once; later calls do nothing).
    fn grow(&mut self) {
        if self.buf.len() < self.full {
            self.buf.resize(self.full, 0);
        }
    }

    /// Marks `n` bytes of [`Half::unfilled`] as read from the source.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
        self.bytes += n as u64;
    }

    /// Room left for [`Half::push`] (counting the growth still possible).
    pub(crate) fn space(&self) -> usize {
        self.full - (self.end - self.start)
    }

    /// True when nothing is left to write and the destination is shut.
    pub(crate) fn is_done(&self) -> bool {
        self.eof && self.shut
    }

    fn compact(&mut self) {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Reads once from `src` into the free tail. `Ok(None)`: would block (or the buffer is
    /// full); `Ok(Some(0))`: end of stream (a reset counts as one, as in relay-smol).
    pub(crate) fn read_from(&mut self, src: &mut TcpStream) -> io::Result<Option<usize>> {
        self.compact();
        if self.end == self.buf.len() {
            self.grow();
        }
        if self.end == self.buf.len() {
            return Ok(None);
        }
        loop {
            return match src.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    self.bytes += n as u64;
                    if self.end == self.buf.len() {
                        // The read filled the buffer: bulk data, read bigger from now on.
                        self.grow();
                    }
                    Ok(Some(n))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Some(0)),
                Err(e) => Err(e),
            };
        }
    }

    /// Writes what may be written to `dst`. `Ok(true)` when nothing writable is left.
    pub(crate) fn flush(&mut self, dst: &mut TcpStream) -> io::Result<bool> {
        let writable = self.end - self.hold;
        while self.start < writable {
            match dst.write(&self.buf[self.start..writable]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(true)
    }

    /// Moves bytes from `src` to `dst` until one of them would block, or until `src` has ended
    /// and `dst`'s write side is shut. Reading stops while `dst` does not take what is pending
    /// (backpressure: memory stays at one buffer). With `strip`, the hop responses at the front
    /// of the stream are removed before anything is written.
    pub(crate) fn pump(
        &mut self,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        mut strip: Option<&mut Strip>,
    ) -> Result<(), PipeError> {
        self.yielded = false;
        let mut reads = 0;
        loop {
            if !self.flush(dst)? {
                return Ok(());
            }
            if reads == READ_BUDGET {
                self.yielded = true;
                return Ok(());
            }
            reads += 1;
            if self.eof {
                if !self.shut {
                    // The peer may be gone already; the half-close is best effort.
                    let _ = dst.shutdown(Shutdown::Write);
                    self.shut = true;
                }
                return Ok(());
            }
            let prior_hold = self.hold;
            match self.read_from(src)? {
                None => return Ok(()),
                Some(0) => {
                    self.eof = true;
                    self.end -= self.hold;
                    self.hold = 0;
                    self.unstripped = 0;
                    if let Some(s) = strip.as_deref_mut() {
                        s.eof()?;
                    }
                }
                Some(n) => match strip.as_deref_mut() {
                    Some(s) if !s.is_done() => s.feed_half(self, n, prior_hold)?,
                    _ => self.hold = 0,
                },
            }
        }
    }
}

/// Hop responses to strip from the front of a chain's downstream, in hop order.
#[derive(Debug)]
pub(crate) struct Strip {
    clients: Vec<Client>,
    next: usize,
}

impl Strip {
    /// Responses of `clients`, in order.
    pub(crate) fn new(clients: Vec<Client>) -> Strip {
        Strip { clients, next: 0 }
    }

    /// True once every hop's response has been stripped.
    pub(crate) fn is_done(&self) -> bool {
        self.next >= self.clients.len()
    }

    /// Strips whole responses from the front of `data`; returns how many bytes they took.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<usize, PipeError> {
        let mut used = 0;
        while let Some(client) = self.clients.get_mut(self.next) {
            match client.handle_response(&data[used..]) {
                Ok(Decoded::Partial { .. }) => break,
                Ok(Decoded::Complete { consumed, .. }) => {
                    used += consumed;
                    self.next += 1;
                }
                Err(e) => return Err(PipeError::Refused(self.next, e)),
            }
        }
        Ok(used)
    }

    /// `n` bytes were just read into `h`, whose last `prior_hold` bytes were held before (a
    /// held prefix, then bytes not yet stripped). Removes the responses found at the start of
    /// the unstripped bytes, keeps the prefix held until payload follows.
    fn feed_half(&mut self, h: &mut Half, n: usize, prior_hold: usize) -> Result<(), PipeError> {
        let prefix = prior_hold - h.unstripped;
        h.unstripped += n;
        let at = h.end - h.unstripped;
        let used = self.feed(&h.buf[at..h.end])?;
        if used > 0 {
            h.buf.copy_within(at + used..h.end, at);
            h.end -= used;
            h.unstripped -= used;
        }
        if self.is_done() {
            let payload = std::mem::take(&mut h.unstripped);
            h.hold = if payload > 0 { 0 } else { prefix };
        } else {
            h.hold = prefix + h.unstripped;
        }
        Ok(())
    }

    /// The downstream ended: an error unless every response was seen.
    pub(crate) fn eof(&mut self) -> Result<(), PipeError> {
        match self.clients.get_mut(self.next) {
            Some(client) => match client.handle_eof() {
                Some(e) => Err(PipeError::Refused(self.next, e)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

/// Both directions of a TCP tunnel: `up` from the first stream to the second, `down` back.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// First stream → second stream.
    pub up: Half,
    /// Second stream → first stream.
    pub down: Half,
}

impl Pipe {
    /// Two empty directions with room for prefixes.
    pub(crate) fn new() -> Pipe {
        Pipe {
            up: Half::new(PREFIX_ROOM),
            down: Half::new(PREFIX_ROOM),
        }
    }

    /// Runs both directions as far as they go. `Ok(true)` when both have ended.
    pub(crate) fn drive(
        &mut self,
        a: &mut TcpStream,
        b: &mut TcpStream,
        strip: Option<&mut Strip>,
    ) -> Result<bool, PipeError> {
        self.up.pump(a, b, None)?;
        self.down.pump(b, a, strip)?;
        Ok(self.up.is_done() && self.down.is_done())
    }

    /// True when a direction stopped on its read budget.
    pub(crate) fn yielded(&self) -> bool {
        self.up.yielded || self.down.yielded
    }
}
