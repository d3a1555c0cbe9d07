//! A fixed-capacity receive buffer: bytes are read into its free tail and consumed from its
//! head, so framed messages can be decoded in place without any per-message allocation.
//!
//! ```
//! use relay_core::buf::RecvBuf;
//! use relay_core::udp::LengthFrame;
//! use relay_core::Decoded;
//!
//! let mut rb = RecvBuf::with_capacity(16);
//! rb.unfilled()[..5].copy_from_slice(&[0, 2, b'h', b'i', 0]);
//! rb.filled(5);
//! let Decoded::Complete { value, consumed } = LengthFrame::decode(rb.data()).unwrap() else { panic!() };
//! assert_eq!(value, b"hi");
//! rb.consume(consumed);
//! assert_eq!(rb.data(), &[0]);
//! ```

/// A byte buffer of fixed capacity with a readable head and a writable tail.
#[derive(Debug, Clone)]
pub struct RecvBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    /// A buffer holding at most `capacity` bytes (allocated once, here).
    pub fn with_capacity(capacity: usize) -> RecvBuf {
        RecvBuf {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The bytes received and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Space to read into; moves the unconsumed bytes to the front first when that makes room.
    /// Empty when the buffer is full of unconsumed bytes.
    pub fn unfilled(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`RecvBuf::unfilled`] as received.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Drops `n` bytes from the head.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Appends `bytes` (as many as fit), returning how many were taken.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let space = self.unfilled();
        let n = space.len().min(bytes.len());
        space[..n].copy_from_slice(&bytes[..n]);
        self.filled(n);
        n
    }

    /// True when no unconsumed bytes are held.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// True when no more bytes can be read in.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_only_when_needed_and_caps() {
        let mut rb = RecvBuf::with_capacity(4);
        assert_eq!(rb.extend(b"abcdef"), 4);
        assert!(rb.is_full());
        assert!(rb.unfilled().is_empty());
        rb.consume(3);
        assert_eq!(rb.unfilled().len(), 3, "compacted");
        assert_eq!(rb.data(), b"d");
        rb.consume(10);
        assert!(rb.is_empty());
        assert_eq!(rb.unfilled().len(), 4);
    }
}
