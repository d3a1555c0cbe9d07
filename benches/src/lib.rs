//! Benchmarks and load tools for relay (see `benches/` and `src/bin/`).
//!
//! [`MuxPair`] is shared by the mux criterion bench and the steady-state allocation test: two
//! [`Session`]s wired back to back in memory, moving bytes over one stream.

use std::time::Instant;

use relay_core::mux::{MuxConfig, MuxError, MuxEvent, Role, Session, StreamId};

/// Two mux sessions back to back (client → server over one stream), with every buffer allocated
/// up front.
pub struct MuxPair {
    /// The writing side.
    pub client: Session,
    /// The reading side.
    pub server: Session,
    id: StreamId,
    chunk: Vec<u8>,
    wire: Vec<u8>,
    back: Vec<u8>,
    read: Vec<u8>,
}

impl MuxPair {
    /// A pair speaking smux `version` (1 or 2), keepalive off, with one stream open and accepted.
    pub fn new(version: u8) -> MuxPair {
        let config = MuxConfig {
            version,
            keep_alive_disabled: true,
            ..MuxConfig::default()
        };
        let now = Instant::now();
        let mut p = MuxPair {
            client: Session::new(Role::Client, config, now).expect("valid config"),
            server: Session::new(Role::Server, config, now).expect("valid config"),
            id: 0,
            chunk: vec![0xA5; 16 * 1024],
            wire: vec![0; 2 * (8 + usize::from(config.max_frame_size))],
            back: vec![0; 4096],
            read: vec![0; 32 * 1024],
            // (the stream id is set below)
        };
        p.id = p.client.open_stream().expect("open");
        p.pump_forward();
        assert_eq!(
            p.server.poll_event(),
            Some(MuxEvent::StreamOpened { id: p.id })
        );
        p
    }

    /// Writes `total` bytes on the client side and reads them all on the server side, moving
    /// frames both ways (version-2 window updates go back). Returns the bytes read.
    pub fn transfer(&mut self, total: usize) -> usize {
        let (mut sent, mut got) = (0, 0);
        while got < total {
            if sent < total {
                let n = self.chunk.len().min(total - sent);
                sent += self
                    .client
                    .stream_write(self.id, &self.chunk[..n])
                    .expect("write");
            }
            let moved = self.pump_forward();
            got += self.drain_reads();
            self.pump_back();
            assert!(
                moved > 0 || got >= total || sent < total,
                "mux pair stalled at {got} of {total}"
            );
        }
        got
    }

    /// Client frames into the server; returns wire bytes moved.
    fn pump_forward(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let n = self.client.poll_transmit(&mut self.wire);
            if n == 0 {
                return moved;
            }
            moved += n;
            let mut off = 0;
            while off < n {
                let c = self.server.handle_input(&self.wire[off..n]).expect("input");
                off += c;
                if c == 0 {
                    // Receive budget full: the application reads, then input resumes.
                    assert!(
                        self.drain_reads() > 0,
                        "server input held with nothing to read"
                    );
                }
            }
        }
    }

    fn drain_reads(&mut self) -> usize {
        let mut got = 0;
        loop {
            match self.server.stream_read(self.id, &mut self.read) {
                Ok(0) => panic!("unexpected end of stream"),
                Ok(n) => got += n,
                Err(MuxError::WouldBlock) => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        while self.server.poll_event().is_some() {}
        got
    }

    /// Server frames (window updates) back into the client.
    fn pump_back(&mut self) {
        loop {
            let n = self.server.poll_transmit(&mut self.back);
            if n == 0 {
                break;
            }
            let c = self.client.handle_input(&self.back[..n]).expect("input");
            assert_eq!(c, n);
        }
        while self.client.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::MuxPair;

    #[test]
    fn pair_moves_bytes_in_both_versions() {
        for v in [1, 2] {
            let mut p = MuxPair::new(v);
            for _ in 0..3 {
                assert_eq!(p.transfer(1 << 20), 1 << 20);
            }
        }
    }
}
