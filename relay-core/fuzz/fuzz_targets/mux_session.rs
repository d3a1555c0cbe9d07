#![no_main]
//! Arbitrary bytes never panic an smux session of either version, whatever the application does
//! with the streams they open; a whole valid frame prefix is consumed, and memory stays bounded.
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_core::mux::{MuxConfig, MuxEvent, Role, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let config = MuxConfig {
        version: 1 + (first & 1),
        max_receive_buffer: 1 << 16,
        max_streams: 16,
        max_pending_accept: 4,
        ..MuxConfig::default()
    };
    let role = if first & 2 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let t0 = Instant::now();
    let mut s = Session::new(role, config, t0).expect("valid config");
    let own = s.open_stream().expect("first stream");
    let _ = s.stream_write(own, b"hello");
    let mut out = vec![0u8; 8 + 65535];
    let mut buf = [0u8; 4096];
    let mut rest = input;
    // Feed in chunks whose size depends on the input, acting on every event in between.
    let chunk = 1 + usize::from(first >> 2) * 8;
    let mut pending: Vec<u8> = Vec::new();
    while !rest.is_empty() && !s.is_closed() {
        let take = chunk.min(rest.len());
        pending.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        match s.handle_input(&pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(_) => break,
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                MuxEvent::StreamOpened { id } | MuxEvent::StreamReadable { id } => {
                    while let Ok(n) = s.stream_read(id, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        let _ = s.stream_write(id, &buf[..n]);
                    }
                }
                MuxEvent::StreamFinished { id } => {
                    let _ = s.stream_close(id);
                }
                MuxEvent::StreamWritable { .. } | MuxEvent::SessionClosed { .. } => {}
            }
        }
        while s.poll_transmit(&mut out) > 0 {}
        assert!(s.buffered() <= (1 << 16) + 65535);
        assert!(s.stream_count() <= 16);
    }
    s.handle_timeout(t0 + Duration::from_secs(30));
    let _ = s.poll_transmit(&mut out);
});
