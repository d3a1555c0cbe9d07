//! Per-stream state of a [`Session`](super::Session).

use std::collections::VecDeque;

/// Send window a version-2 sender assumes before the peer's first UPD (smux `initialPeerWindow`).
const INITIAL_PEER_WINDOW: u32 = 262_144;

/// One stream. Both buffers start empty (no allocation) and are capped by the session: `send` by
/// `MuxConfig::stream_send_buffer`, `recv` by the session's receive budget.
pub(super) struct Stream {
    /// Received, not yet read.
    pub recv: VecDeque<u8>,
    /// Written, not yet transmitted.
    pub send: VecDeque<u8>,
    /// The peer sent FIN.
    pub fin_received: bool,
    /// Closed locally: flush `send`, then FIN, then forget the stream.
    pub closing: bool,
    /// The id is in the session's data queue.
    pub in_data_queue: bool,
    /// A `StreamReadable` was emitted and `recv` has not been drained since.
    pub readable_signalled: bool,
    /// A write was cut short: emit `StreamWritable` once capacity comes back.
    pub want_writable: bool,
    /// An UPD for this stream is in the control queue; it will carry `announce`.
    pub upd_queued: bool,
    /// CONSUMED value of the next UPD.
    pub announce: u32,
    /// Payload bytes transmitted, modulo 2³² (version 2 accounting).
    pub sent: u32,
    /// Latest CONSUMED from the peer.
    pub peer_consumed: u32,
    /// Latest WINDOW from the peer.
    pub peer_window: u32,
    /// Bytes the application read, modulo 2³².
    pub num_read: u32,
    /// Bytes read since the last UPD.
    pub incr: u32,
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            recv: VecDeque::new(),
            send: VecDeque::new(),
            fin_received: false,
            closing: false,
            in_data_queue: false,
            readable_signalled: false,
            want_writable: false,
            upd_queued: false,
            announce: 0,
            sent: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
            num_read: 0,
            incr: 0,
        }
    }

    /// Bytes a write may queue now: room in the send buffer and, in version 2, what is left of
    /// the peer's window once in-flight and queued bytes are counted.
    pub fn write_capacity(&self, version: u8, send_buffer: usize) -> usize {
        let room = send_buffer.saturating_sub(self.send.len());
        if version == 1 {
            return room;
        }
        let in_flight = i64::from(self.sent.wrapping_sub(self.peer_consumed) as i32);
        let allowance = i64::from(self.peer_window) - in_flight - self.send.len() as i64;
        room.min(usize::try_from(allowance).unwrap_or(0))
    }

    /// Moves up to `out.len()` received bytes into `out`.
    pub fn take_recv(&mut self, out: &mut [u8]) -> usize {
        drain_into(&mut self.recv, out)
    }
}

/// Moves up to `out.len()` bytes from the front of `q` into `out`, returning how many.
pub(super) fn drain_into(q: &mut VecDeque<u8>, out: &mut [u8]) -> usize {
    let n = out.len().min(q.len());
    let (a, b) = q.as_slices();
    let from_a = n.min(a.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    out[from_a..n].copy_from_slice(&b[..n - from_a]);
    q.drain(..n);
    n
}
