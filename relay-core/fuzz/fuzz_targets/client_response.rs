#![no_main]
//! The client handshake fed arbitrary downstream bytes in arbitrary pieces never panics, never
//! consumes more than it was given, and a refusal stays a refusal.
use libfuzzer_sys::fuzz_target;
use relay_core::client::Client;
use relay_core::server::Transport;
use relay_core::{Address, Decoded};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let target = Address::parse("example.com:443").unwrap();
    let mut client = Client::connect(Transport::Tcp, &target, Some((b"u", b"p")), split & 1 != 0).unwrap();
    let _ = client.poll_transmit();
    let _ = client.take_request();
    let mut buf = Vec::new();
    for piece in rest.chunks(1 + split as usize) {
        buf.extend_from_slice(piece);
        match client.handle_response(&buf) {
            Ok(Decoded::Complete { consumed, .. }) => {
                assert!(consumed <= buf.len());
                break;
            }
            Ok(Decoded::Partial { .. }) => {}
            Err(e) => {
                assert_eq!(client.handle_response(&buf), Err(e));
                break;
            }
        }
    }
    let _ = client.handle_eof();
});
