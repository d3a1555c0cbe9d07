//! The result and error shapes shared by every codec in this crate.
//!
//! Decoders borrow from their input and never read past the message they decode: what follows it
//! (payload, the next message) is left for the caller, who learns how much was used from
//! `consumed`.

/// Outcome of decoding from a buffer that may hold only part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// The buffer holds only a prefix of a valid message. Nothing was consumed; call again once
    /// the buffer holds at least `needed` bytes in total (a lower bound: more may be asked later).
    Partial {
        /// Minimum total buffer length before decoding can make progress.
        needed: usize,
    },
    /// A whole message was decoded from the first `consumed` bytes of the buffer.
    Complete {
        /// The decoded message, borrowing from the buffer.
        value: T,
        /// How many bytes of the buffer the message occupied.
        consumed: usize,
    },
}

impl<T> Decoded<T> {
    /// The decoded value, or `None` when the input was only a prefix.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Decoded::Complete { value, consumed } => Some((value, consumed)),
            Decoded::Partial { .. } => None,
        }
    }

    /// Applies `f` to a complete value, keeping `Partial` as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decoded<U> {
        match self {
            Decoded::Partial { needed } => Decoded::Partial { needed },
            Decoded::Complete { value, consumed } => Decoded::Complete {
                value: f(value),
                consumed,
            },
        }
    }
}

/// The caller's output buffer is too small; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// The buffer length the encoding needs.
    pub needed: usize,
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "output buffer too small: {} bytes needed", self.needed)
    }
}

impl std::error::Error for BufferTooSmall {}

/// Checks that `out` can take `needed` bytes.
pub(crate) fn ensure_room(out: &[u8], needed: usize) -> Result<(), BufferTooSmall> {
    if out.len() < needed {
        Err(BufferTooSmall { needed })
    } else {
        Ok(())
    }
}

/// Why a message could not be encoded. Nothing is written when encoding fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// The buffer length the encoding needs.
        needed: usize,
    },
    /// A user name over 255 bytes (Go: `username maximum length exceeded`).
    UsernameTooLong,
    /// A password over 255 bytes (Go: `password maximum length exceeded`).
    PasswordTooLong,
    /// A domain over 255 bytes (Go: `addr maximum length exceeded`).
    DomainTooLong,
    /// A features area, or one feature body, over 65535 bytes (Go: `features maximum length
    /// exceeded`).
    FeaturesTooLong,
}

impl From<BufferTooSmall> for EncodeError {
    fn from(e: BufferTooSmall) -> Self {
        EncodeError::BufferTooSmall { needed: e.needed }
    }
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            EncodeError::UsernameTooLong => f.write_str("user name longer than 255 bytes"),
            EncodeError::PasswordTooLong => f.write_str("password longer than 255 bytes"),
            EncodeError::DomainTooLong => f.write_str("domain longer than 255 bytes"),
            EncodeError::FeaturesTooLong => f.write_str("features longer than 65535 bytes"),
        }
    }
}

impl std::error::Error for EncodeError {}
