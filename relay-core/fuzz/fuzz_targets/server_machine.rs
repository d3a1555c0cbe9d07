#![no_main]
//! The server handshake machine fed arbitrary bytes in arbitrary pieces, with arbitrary dial and
//! listen outcomes and clock jumps, never panics and always ends in one of its documented ways.
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_core::server::{DialError, Server, ServerConfig, ServerOutput};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let config = ServerConfig {
        nodelay: ctl & 1 != 0,
        bind: ctl & 2 != 0,
        forward: ctl & 4 != 0,
        ..ServerConfig::default()
    };
    let t0 = Instant::now();
    let mut server = Server::new(Arc::new(config), t0);
    let mut buf = Vec::new();
    let mut now = t0;
    for (i, piece) in rest.chunks(1 + (ctl as usize >> 4)).enumerate() {
        buf.extend_from_slice(piece);
        let used = server.handle_input(&buf, now);
        buf.drain(..used.min(buf.len()));
        while let Some(out) = server.poll_output() {
            match out {
                ServerOutput::Dial(_) => {
                    let r = match i % 4 {
                        0 => Ok(()),
                        1 => Err(DialError::Failed),
                        2 => Err(DialError::NoTarget),
                        _ => Err(DialError::Forbidden),
                    };
                    server.dial_done(r, now);
                }
                ServerOutput::Listen(_) => {
                    server.listen_done(if i % 2 == 0 { Ok("127.0.0.1:1".parse().unwrap()) } else { Err(()) })
                }
                ServerOutput::Transmit(b) => assert!(b.as_slice().len() <= 26),
                ServerOutput::Established(_) | ServerOutput::Close(_) => {}
            }
        }
        now += Duration::from_millis(u64::from(piece[0]) * 100);
        server.handle_timeout(now);
    }
    server.handle_eof();
    while server.poll_output().is_some() {}
});
