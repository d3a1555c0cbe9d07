//! The steady-state data path allocates nothing: UDP framing (length frames and SOCKS5-addressed
//! datagrams, encode and decode) and mux session data transfer (version 1 and 2, frames both ways)
//! make exactly zero allocations per iteration once warmed up.
//!
//! A counting global allocator counts, per thread, the allocations (alloc, alloc_zeroed,
//! realloc) made while armed; the thread-locals are const-initialised with no destructor, so the
//! allocator never allocates through them. Only the test's own thread is counted.

use std::hint::black_box;

use relay_benches::MuxPair;
use relay_core::udp::{Datagram, LengthFrame};
use relay_core::{Address, Decoded};

#[path = "../../relay-core/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// Runs `step` `warm` times unobserved, then `n` times, each counted on its own: every count
/// must be zero.
fn assert_steady(what: &str, warm: usize, n: usize, mut step: impl FnMut()) {
    for _ in 0..warm {
        step();
    }
    for i in 0..n {
        let (count, ()) = allocations(&mut step);
        assert_eq!(
            count, 0,
            "{what}: iteration {i} after warm-up allocated {count} times"
        );
    }
}

#[test]
fn counter_sees_allocations() {
    let (n, v) = allocations(|| vec![1u8; 100]);
    assert_eq!((n, v.len()), (1, 100));
}

#[test]
fn udp_length_frame_steady_state() {
    for size in [0usize, 64, 1400, 65535] {
        let payload = vec![0x33u8; size];
        let mut wire = vec![0u8; LengthFrame::encoded_len(size)];
        assert_steady(&format!("LengthFrame {size} B"), 10, 1000, || {
            let n = LengthFrame::encode(black_box(&payload), &mut wire).unwrap();
            let h = LengthFrame::header(black_box(size)).unwrap();
            let Decoded::Complete { value, consumed } = LengthFrame::decode(&wire[..n]).unwrap()
            else {
                panic!("partial")
            };
            assert_eq!((value.len(), consumed, h[1]), (size, n, size as u8));
        });
    }
}

#[test]
fn udp_datagram_steady_state() {
    for addr in ["203.0.113.5:53", "[2001:db8::1]:443", "dns.example.com:53"] {
        for size in [64usize, 1400] {
            let payload = vec![0x44u8; size];
            let d = Datagram {
                addr: Address::parse(addr).unwrap(),
                payload: &payload,
            };
            let mut wire = vec![0u8; d.encoded_len()];
            let mut packet = vec![0u8; d.packet_len()];
            assert_steady(&format!("Datagram {addr} {size} B"), 10, 1000, || {
                let d = black_box(&d);
                let n = d.encode(&mut wire).unwrap();
                let h = d.encode_header(&mut wire).unwrap();
                assert_eq!(h, d.header_len());
                let Decoded::Complete { value, consumed } = Datagram::decode(&wire[..n]).unwrap()
                else {
                    panic!("partial")
                };
                assert_eq!((value.payload.len(), consumed), (size, n));
                let p = d.encode_packet(&mut packet).unwrap();
                let back = Datagram::decode_packet(&packet[..p]).unwrap();
                assert_eq!(back.payload.len(), size);
                let (cut, dropped) = back.truncated(size / 2);
                black_box((cut, dropped));
            });
        }
    }
}

#[test]
fn mux_session_transfer_steady_state() {
    for version in [1u8, 2] {
        let mut pair = MuxPair::new(version);
        // 256 KiB per iteration: many PSH frames, version-2 UPDs back, reads in between.
        assert_steady(&format!("mux v{version} 256 KiB"), 8, 32, || {
            assert_eq!(pair.transfer(256 * 1024), 256 * 1024);
        });
        // Odd sizes: frames cut at other places.
        assert_steady(&format!("mux v{version} 100003 B"), 8, 32, || {
            assert_eq!(pair.transfer(100_003), 100_003);
        });
    }
}
