//! The smux frame: an 8-byte little-endian header and up to 65535 bytes of payload.
//!
//! ```text
//! VER(1) | CMD(1) | LENGTH(2, little-endian) | SID(4, little-endian) | LENGTH bytes of payload
//! ```
//!
//! The decoder is stricter than xtaci/smux v1.5.31 and matches smux master: LENGTH must be 0 for
//! SYN, FIN and NOP and 8 for UPD, and an unknown CMD is refused. VER is not checked here: only a
//! [`Session`](super::Session) knows which version it speaks.
//!
//! ```
//! use relay_core::Decoded;
//! use relay_core::mux::{Command, Frame};
//!
//! let bytes = [0x01, 0x02, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o'];
//! let Decoded::Complete { value, consumed } = Frame::decode(&bytes).unwrap() else { panic!() };
//! assert_eq!(consumed, 13);
//! assert_eq!((value.version(), value.command(), value.stream_id()), (1, Command::Psh, 3));
//! assert_eq!(value.payload(), b"hello");
//! assert_eq!(Frame::decode(&bytes[..10]).unwrap(), Decoded::Partial { needed: 13 });
//!
//! let mut out = [0u8; 16];
//! assert_eq!(value.encode(&mut out).unwrap(), 13);
//! assert_eq!(&out[..13], &bytes);
//! ```

use super::MuxError;
use crate::codec::{BufferTooSmall, Decoded, ensure_room};

/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload a frame can carry (LENGTH is a u16).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Length of an UPD body: CONSUMED and WINDOW, two little-endian u32.
pub const UPD_LEN: usize = 8;

/// A frame command (the CMD byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `0x00`: open a stream.
    Syn,
    /// `0x01`: the sender closed the stream.
    Fin,
    /// `0x02`: stream data.
    Psh,
    /// `0x03`: keepalive, stream id 0.
    Nop,
    /// `0x04`: window update (version 2), body [`WindowUpdate`].
    Upd,
}

impl Command {
    /// The command for a CMD byte, `None` for an undefined one.
    pub fn from_byte(b: u8) -> Option<Command> {
        Some(match b {
            0 => Command::Syn,
            1 => Command::Fin,
            2 => Command::Psh,
            3 => Command::Nop,
            4 => Command::Upd,
            _ => return None,
        })
    }

    /// The CMD byte of this command.
    pub fn to_byte(self) -> u8 {
        match self {
            Command::Syn => 0,
            Command::Fin => 1,
            Command::Psh => 2,
            Command::Nop => 3,
            Command::Upd => 4,
        }
    }

    /// Checks LENGTH against the command: 0 for SYN/FIN/NOP, 8 for UPD, anything for PSH.
    fn check_length(self, length: usize) -> Result<(), MuxError> {
        let ok = match self {
            Command::Syn | Command::Fin | Command::Nop => length == 0,
            Command::Upd => length == UPD_LEN,
            Command::Psh => length <= MAX_PAYLOAD,
        };
        if ok {
            Ok(())
        } else {
            Err(MuxError::BadLength {
                command: self,
                length: length.min(u32::MAX as usize) as u32,
            })
        }
    }
}

/// The body of an UPD frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowUpdate {
    /// Total bytes the receiver's application has read from the stream, modulo 2³².
    pub consumed: u32,
    /// The receiver's stream buffer size (smux: `MaxStreamBuffer`).
    pub window: u32,
}

impl WindowUpdate {
    /// The 8-byte UPD body.
    pub fn to_bytes(self) -> [u8; UPD_LEN] {
        let mut b = [0u8; UPD_LEN];
        b[..4].copy_from_slice(&self.consumed.to_le_bytes());
        b[4..].copy_from_slice(&self.window.to_le_bytes());
        b
    }

    /// Reads an UPD body: `None` unless `body` is exactly 8 bytes.
    pub fn from_bytes(body: &[u8]) -> Option<WindowUpdate> {
        let b: &[u8; UPD_LEN] = body.try_into().ok()?;
        Some(WindowUpdate {
            consumed: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            window: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// One frame, borrowing its payload. Construction checks the payload length against the command,
/// so every `Frame` can be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame<'a> {
    version: u8,
    command: Command,
    stream_id: u32,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A frame, or [`MuxError::BadLength`] when the payload does not suit the command (non-empty
    /// for SYN/FIN/NOP, not 8 bytes for UPD, over 65535 bytes for PSH).
    pub fn new(
        version: u8,
        command: Command,
        stream_id: u32,
        payload: &'a [u8],
    ) -> Result<Frame<'a>, MuxError> {
        command.check_length(payload.len())?;
        Ok(Frame {
            version,
            command,
            stream_id,
            payload,
        })
    }

    /// Decodes one frame at the front of `buf`: `Partial` until the header and the whole payload
    /// are there; an error for an unknown CMD or a LENGTH that does not suit the command, as soon
    /// as the header is complete.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Frame<'a>>, MuxError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Ok(Decoded::Partial { needed: HEADER_LEN });
        };
        let command = Command::from_byte(h[1]).ok_or(MuxError::UnknownCommand { command: h[1] })?;
        let length = u16::from_le_bytes([h[2], h[3]]) as usize;
        command.check_length(length)?;
        let end = HEADER_LEN + length;
        let Some(payload) = buf.get(HEADER_LEN..end) else {
            return Ok(Decoded::Partial { needed: end });
        };
        Ok(Decoded::Complete {
            value: Frame {
                version: h[0],
                command,
                stream_id: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
                payload,
            },
            consumed: end,
        })
    }

    /// The VER byte.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The command.
    pub fn command(&self) -> Command {
        self.command
    }

    /// The stream id (0 in a NOP).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The payload: data for PSH, the 8-byte body for UPD, empty otherwise.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The body of an UPD frame, `None` for the other commands.
    pub fn window_update(&self) -> Option<WindowUpdate> {
        match self.command {
            Command::Upd => WindowUpdate::from_bytes(self.payload),
            _ => None,
        }
    }

    /// Bytes [`encode`](Self::encode) writes: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the frame at the front of `out` and returns its length; nothing is written when
    /// `out` is too small.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let n = self.encoded_len();
        ensure_room(out, n)?;
        // The constructor bounded the payload to 65535 bytes.
        let length = self.payload.len() as u16;
        encode_header(self.version, self.command, length, self.stream_id, out)?;
        out[HEADER_LEN..n].copy_from_slice(self.payload);
        Ok(n)
    }
}

/// Writes only a frame header at the front of `out` (returns 8), so that the caller can put the
/// payload right after it without an intermediate copy. Nothing is written when `out` is shorter
/// than 8 bytes.
pub fn encode_header(
    version: u8,
    command: Command,
    length: u16,
    stream_id: u32,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    ensure_room(out, HEADER_LEN)?;
    out[0] = version;
    out[1] = command.to_byte();
    out[2..4].copy_from_slice(&length.to_le_bytes());
    out[4..8].copy_from_slice(&stream_id.to_le_bytes());
    Ok(HEADER_LEN)
}
