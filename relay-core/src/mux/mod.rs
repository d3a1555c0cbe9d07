//! A sans-IO multiplexer compatible on the wire with xtaci/smux v1.5.31, the version GOST pins for
//! relay TCP BIND.
//!
//! [`frame`] is the frame codec; [`Session`] the state machine that turns bytes from the
//! connection into stream events and stream writes into bytes for the connection. Nothing here
//! touches a socket or a clock: the caller moves bytes with [`Session::handle_input`] and
//! [`Session::poll_transmit`], drives keepalive with [`Session::poll_timeout`] /
//! [`Session::handle_timeout`], and learns what happened from [`Session::poll_event`].
//!
//! ```
//! use std::time::Instant;
//! use relay_core::mux::{MuxConfig, MuxEvent, Role, Session};
//!
//! let now = Instant::now();
//! let mut client = Session::new(Role::Client, MuxConfig::default(), now).unwrap();
//! let mut server = Session::new(Role::Server, MuxConfig::default(), now).unwrap();
//!
//! let id = client.open_stream().unwrap();
//! assert_eq!(id, 3); // smux clients allocate odd ids from 3
//! assert_eq!(client.stream_write(id, b"hello").unwrap(), 5);
//!
//! let mut wire = [0u8; 64];
//! let n = client.poll_transmit(&mut wire);
//! assert_eq!(&wire[..8], &[1, 0, 0, 0, 3, 0, 0, 0]); // SYN 3
//! assert_eq!(server.handle_input(&wire[..n]).unwrap(), n);
//! assert_eq!(server.poll_event(), Some(MuxEvent::StreamOpened { id: 3 }));
//! assert_eq!(server.poll_event(), Some(MuxEvent::StreamReadable { id: 3 }));
//! let mut buf = [0u8; 16];
//! assert_eq!(server.stream_read(3, &mut buf).unwrap(), 5);
//! assert_eq!(&buf[..5], b"hello");
//! ```
//!
//! Deliberate differences from smux v1.5.31 are listed in the repository's `docs/mux.md`.

use core::fmt;
use std::time::Duration;

pub mod frame;
mod session;
mod stream;

pub use frame::{Command, Frame, WindowUpdate};
pub use session::Session;

/// A stream id. Clients allocate odd ids from 3, servers even ids from 2; NOP carries 0.
pub type StreamId = u32;

/// Which end of the session this is; it only decides the parity of locally opened stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// smux client: odd ids 3, 5, 7, … (in relay BIND, the relay **server**).
    Client,
    /// smux server: even ids 2, 4, 6, … (in relay BIND, the relay **client**).
    Server,
}

/// Session settings. [`MuxConfig::default`] is what GOST uses when no `mux.*` metadata is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxConfig {
    /// Protocol version, 1 or 2; both ends must agree (GOST default 1).
    pub version: u8,
    /// When set, no NOP is sent and dead peers are not detected.
    pub keep_alive_disabled: bool,
    /// A NOP is sent this often (10 s).
    pub keep_alive_interval: Duration,
    /// The session closes when no frame arrived during a whole check window this long (30 s).
    pub keep_alive_timeout: Duration,
    /// Largest PSH payload sent, 1…65535 (32768). Any PSH up to 65535 is accepted.
    pub max_frame_size: u16,
    /// Budget of received but unread bytes over all streams (4 MiB); beyond it
    /// [`Session::handle_input`] stops consuming.
    pub max_receive_buffer: usize,
    /// Window announced in version-2 UPD frames (64 KiB); at most `max_receive_buffer` and
    /// 2³¹ − 1.
    pub max_stream_buffer: u32,
    /// Bytes [`Session::stream_write`] queues per stream before it pushes back (64 KiB).
    pub stream_send_buffer: usize,
    /// Streams that may exist at once, opened by either side (1024).
    pub max_streams: usize,
    /// Peer-opened streams whose [`MuxEvent::StreamOpened`] was not yet polled (1024, smux's
    /// accept backlog); at the limit input stops being consumed.
    pub max_pending_accept: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            version: 1,
            keep_alive_disabled: false,
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            max_frame_size: 32768,
            max_receive_buffer: 4 * 1024 * 1024,
            max_stream_buffer: 65536,
            stream_send_buffer: 65536,
            max_streams: 1024,
            max_pending_accept: 1024,
        }
    }
}

impl MuxConfig {
    /// Checks the limits smux checks, plus non-zero counts: [`MuxError::InvalidConfig`] otherwise.
    pub fn validate(&self) -> Result<(), MuxError> {
        let keepalive_ok = self.keep_alive_disabled
            || (!self.keep_alive_interval.is_zero()
                && self.keep_alive_timeout >= self.keep_alive_interval);
        let ok = matches!(self.version, 1 | 2)
            && keepalive_ok
            && self.max_frame_size > 0
            && self.max_receive_buffer > 0
            && self.max_stream_buffer > 0
            && self.max_stream_buffer as usize <= self.max_receive_buffer
            && self.max_stream_buffer <= i32::MAX as u32
            && self.stream_send_buffer > 0
            && self.max_streams > 0
            && self.max_pending_accept > 0;
        if ok {
            Ok(())
        } else {
            Err(MuxError::InvalidConfig)
        }
    }
}

/// Something the application should look at, from [`Session::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxEvent {
    /// The peer opened a stream (smux `AcceptStream`).
    StreamOpened {
        /// The new stream.
        id: StreamId,
    },
    /// Data arrived on a stream whose buffer was empty; read until
    /// [`MuxError::WouldBlock`] to be told again.
    StreamReadable {
        /// The stream.
        id: StreamId,
    },
    /// The peer sent FIN: reads drain the buffer then return end of stream, writes fail.
    StreamFinished {
        /// The stream.
        id: StreamId,
    },
    /// A stream whose last write was cut short can take more bytes.
    StreamWritable {
        /// The stream.
        id: StreamId,
    },
    /// The session is over; every later operation fails with [`MuxError::Closed`]. The caller
    /// should close the connection.
    SessionClosed {
        /// Why: a protocol error, [`MuxError::KeepAliveTimeout`] or
        /// [`MuxError::ConnectionClosed`].
        reason: MuxError,
    },
}

/// Errors of the frame codec and the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxError {
    /// A frame's VER differs from the session's (protocol error).
    VersionMismatch {
        /// The session's version.
        expected: u8,
        /// The frame's VER.
        got: u8,
    },
    /// An undefined CMD (protocol error).
    UnknownCommand {
        /// The CMD byte.
        command: u8,
    },
    /// LENGTH does not suit the command: not 0 for SYN/FIN/NOP, not 8 for UPD, or a PSH payload
    /// over 65535 bytes given to [`Frame::new`] (protocol error; smux v1.5.31 desyncs instead).
    BadLength {
        /// The command.
        command: Command,
        /// The length found.
        length: u32,
    },
    /// An UPD frame in a version-1 session (protocol error, as in smux master).
    UpdInVersion1,
    /// An UPD claims the peer read more than was sent on the stream (protocol error).
    ConsumedMoreThanSent {
        /// The stream.
        id: StreamId,
    },
    /// No frame arrived during a whole keepalive check window.
    KeepAliveTimeout,
    /// The application reported the connection's end with [`Session::handle_eof`].
    ConnectionClosed,
    /// The session is closed; the reason was given in [`MuxEvent::SessionClosed`].
    Closed,
    /// No open stream has this id (never opened, or already closed locally).
    UnknownStream {
        /// The id.
        id: StreamId,
    },
    /// Write on a stream the peer finished (smux v1.5.31: `EOF`).
    StreamFinished {
        /// The stream.
        id: StreamId,
    },
    /// Nothing to read yet; wait for [`MuxEvent::StreamReadable`] or [`MuxEvent::StreamFinished`].
    WouldBlock,
    /// [`MuxConfig::max_streams`] streams exist already.
    TooManyStreams,
    /// The id space is used up (smux: "go away"); a new session is needed.
    StreamIdsExhausted,
    /// [`MuxConfig::validate`] failed.
    InvalidConfig,
}

impl fmt::Display for MuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuxError::VersionMismatch { expected, got } => {
                write!(f, "frame version {got} in a version {expected} session")
            }
            MuxError::UnknownCommand { command } => write!(f, "unknown command {command}"),
            MuxError::BadLength { command, length } => {
                write!(f, "length {length} not allowed for {command:?}")
            }
            MuxError::UpdInVersion1 => f.write_str("window update in a version 1 session"),
            MuxError::ConsumedMoreThanSent { id } => {
                write!(f, "peer consumed more than sent on stream {id}")
            }
            MuxError::KeepAliveTimeout => f.write_str("keepalive timeout"),
            MuxError::ConnectionClosed => f.write_str("connection closed"),
            MuxError::Closed => f.write_str("session closed"),
            MuxError::UnknownStream { id } => write!(f, "no open stream {id}"),
            MuxError::StreamFinished { id } => write!(f, "stream {id} finished by the peer"),
            MuxError::WouldBlock => f.write_str("no data yet"),
            MuxError::TooManyStreams => f.write_str("too many streams"),
            MuxError::StreamIdsExhausted => f.write_str("stream ids exhausted"),
            MuxError::InvalidConfig => f.write_str("invalid mux configuration"),
        }
    }
}

impl std::error::Error for MuxError {}
