//! Soak: mixed TCP forwarding, UDP forwarding and remote (BIND) forwarding traffic through a
//! client/server pair, every byte hash-checked, resident memory checked for growth.
//!
//! Length: `RELAY_SOAK_SECS` (default 12 s per runtime, what CI runs). The documented long run:
//! `RELAY_SOAK_SECS=1800 cargo test --release -p relay-tests --test soak -- --nocapture`.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use relay_tests::*;

#[derive(Default)]
struct Tally {
    tcp: AtomicU64,
    udp: AtomicU64,
    rtcp: AtomicU64,
    bytes: AtomicU64,
}

fn soak_secs() -> u64 {
    std::env::var("RELAY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

both_runtimes!(
    fn mixed_traffic_hash_checked_memory_flat(rt: Runtime) {
        let (echo, udp_echo) = UdpEcho::with_tcp_echo();
        let (server, p) = relay_server(rt, "", "?bind=true");
        let (client, ports) = spawn_relay(rt, &[Proto::Tcp, Proto::Udp, Proto::Tcp], |s| {
            args(&[
                "-L",
                &format!("tcp://127.0.0.1:{}/127.0.0.1:{}", s[0], echo.port),
                "-L",
                &format!(
                    "udp://127.0.0.1:{}/127.0.0.1:{}?keepalive=true",
                    s[1], udp_echo.port
                ),
                "-L",
                &format!("rtcp://127.0.0.1:{}/127.0.0.1:{}", s[2], echo.port),
                "-F",
                &format!("relay://127.0.0.1:{p}"),
            ])
        });
        let (tcp_port, udp_port, rtcp_port) = (ports[0], ports[1], ports[2]);
        let secs = soak_secs();
        let end = Instant::now() + Duration::from_secs(secs);
        let tally = Arc::new(Tally::default());
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let tally = tally.clone();
            workers.push(thread::spawn(move || {
                let mut seed = w * 1_000_003;
                while Instant::now() < end {
                    seed += 1;
                    let len = 1 + (seed * 7919 % 96_000) as usize;
                    let (port, counter) = if w % 2 == 0 {
                        (tcp_port, &tally.tcp)
                    } else {
                        (rtcp_port, &tally.rtcp)
                    };
                    let mut s = connect(port);
                    echo_check_on(&mut s, len, seed);
                    drop(s);
                    counter.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(2 * len as u64, Ordering::Relaxed);
                }
            }));
        }
        {
            let tally = tally.clone();
            workers.push(thread::spawn(move || {
                let peer = udp_peer(udp_port);
                let mut i = 0u64;
                while Instant::now() < end {
                    i += 1;
                    let msg = pattern(1 + (i * 131 % 1400) as usize, i);
                    assert_eq!(fnv(&udp_roundtrip(&peer, &msg)), fnv(&msg), "datagram {i}");
                    tally.udp.fetch_add(1, Ordering::Relaxed);
                    tally
                        .bytes
                        .fetch_add(2 * msg.len() as u64, Ordering::Relaxed);
                }
            }));
        }
        // Memory after warm-up, then at the end.
        thread::sleep(Duration::from_secs(secs / 4 + 1));
        let warm = (server.rss_kib(), client.rss_kib());
        for w in workers {
            w.join().expect("a worker saw a mismatch or a failure");
        }
        let last = (server.rss_kib(), client.rss_kib());
        println!(
            "soak {} s on {}: {} tcp tunnels, {} rtcp streams, {} udp datagrams, {:.1} MiB checked, 0 mismatches; rss server {} -> {} KiB, client {} -> {} KiB",
            secs,
            rt.name(),
            tally.tcp.load(Ordering::Relaxed),
            tally.rtcp.load(Ordering::Relaxed),
            tally.udp.load(Ordering::Relaxed),
            tally.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            warm.0,
            last.0,
            warm.1,
            last.1
        );
        assert!(tally.tcp.load(Ordering::Relaxed) > 0 && tally.rtcp.load(Ordering::Relaxed) > 0);
        assert!(tally.udp.load(Ordering::Relaxed) > 0);
        // Flat: allow allocator noise, not growth with traffic.
        for (name, before, after) in [("server", warm.0, last.0), ("client", warm.1, last.1)] {
            assert!(
                after <= before + before / 2 + 4096,
                "{name} resident memory grew from {before} KiB to {after} KiB"
            );
        }
        // Still serving afterwards.
        let mut s = TcpStream::connect(local(tcp_port)).unwrap();
        echo_check_on(&mut s, 1000, 7);
    }
);
