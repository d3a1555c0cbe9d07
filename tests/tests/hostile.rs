//! Hostile input and overload on a relay server: slowloris handshakes, connection caps,
//! per-source rates, and the target policy (bypass, SSRF guard). Existing tunnels must be
//! unaffected; refusals are clean.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use relay_core::Address;
use relay_core::client::Client;
use relay_core::server::Transport;
use relay_tests::*;

fn connect_request(target: u16) -> Vec<u8> {
    let text = format!("127.0.0.1:{target}");
    let addr = Address::parse(&text).unwrap();
    Client::connect(Transport::Tcp, &addr, None, false)
        .unwrap()
        .take_request()
        .to_vec()
}

/// A raw tunnel: the request glued to "ping", the echo must come back after `01 00 00 00`.
fn tunnel_works(port: u16, target: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(local(port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut req = connect_request(target);
    req.extend_from_slice(b"ping");
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut got = [0u8; 8];
    s.read_exact(&mut got).is_ok() && got == *b"\x01\x00\x00\x00ping"
}

both_runtimes!(
    fn half_open_handshakes_do_not_lock_out_a_prompt_client(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "?maxHandshakes=64");
        // 400 slowloris clients: each sends half a request and then nothing.
        let req = connect_request(echo.port);
        let mut idle = Vec::new();
        for _ in 0..400 {
            if let Ok(mut s) = TcpStream::connect(local(p)) {
                let _ = s.write_all(&req[..5]);
                idle.push(s);
            }
        }
        assert!(
            idle.len() >= 300,
            "opened {} half-open connections",
            idle.len()
        );
        let started = Instant::now();
        assert!(tunnel_works(p, echo.port), "a prompt client gets through");
        assert!(started.elapsed() < Duration::from_secs(3));
        // The oldest half-open ones were evicted (closed by the server).
        let mut first = idle.remove(0);
        assert_closed_without_data(&mut first, IO_TIMEOUT, "evicted slowloris handshake");
    }
);

both_runtimes!(
    fn connection_cap_refuses_new_work_and_keeps_tunnels(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "?maxConns=2");
        // The start-up probe's connection holds a slot until the server sees it close.
        std::thread::sleep(Duration::from_millis(500));
        let mut a = TcpStream::connect(local(p)).unwrap();
        let mut b = TcpStream::connect(local(p)).unwrap();
        for s in [&mut a, &mut b] {
            let mut req = connect_request(echo.port);
            req.extend_from_slice(b"ping");
            s.write_all(&req).unwrap();
            assert_eq!(read_n(s, 8), b"\x01\x00\x00\x00ping");
        }
        // Full: a third connection is closed without a response.
        let mut c = TcpStream::connect(local(p)).unwrap();
        let _ = c.write_all(&connect_request(echo.port));
        assert_closed_without_data(&mut c, IO_TIMEOUT, "over the connection cap");
        // Existing tunnels are unaffected.
        a.write_all(b"more").unwrap();
        assert_eq!(read_n(&mut a, 4), b"more");
        drop(b);
        // A slot frees up once a tunnel ends.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !tunnel_works(p, echo.port) {
            assert!(Instant::now() < deadline, "the freed slot is never reused");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
);

both_runtimes!(
    fn per_source_rate_limit(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "?rateLimit=5");
        // The start-up probe counted in the first window: start from a fresh one.
        std::thread::sleep(Duration::from_millis(1100));
        let ok = (0..12).filter(|_| tunnel_works(p, echo.port)).count();
        assert!(
            (5..12).contains(&ok),
            "{ok} of 12 connections in one second got through"
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert!(tunnel_works(p, echo.port), "the next window admits again");
    }
);

both_runtimes!(
    fn bypass_and_ssrf_guard_answer_forbidden(rt: Runtime) {
        let echo = TcpTarget::echo();
        let forbidden = [1u8, 3, 0, 0];
        let (_bypass, p) = relay_server(rt, "", "?bypass=127.0.0.0/8");
        let (got, _) = raw_exchange(p, &connect_request(echo.port), Duration::from_secs(3));
        assert_eq!(got, forbidden, "bypass match");
        let (_guard, q) = relay_server(rt, "", "?blockPrivate=true");
        let (got, _) = raw_exchange(q, &connect_request(echo.port), Duration::from_secs(3));
        assert_eq!(got, forbidden, "SSRF guard on a loopback literal");
        // A name that resolves to loopback is refused after resolution.
        let addr = Address::parse("localhost:1").unwrap();
        let mut c = Client::connect(Transport::Tcp, &addr, None, false).unwrap();
        let (got, _) = raw_exchange(q, c.take_request(), Duration::from_secs(3));
        assert_eq!(got, forbidden, "SSRF guard on a name resolving to loopback");
        assert_eq!(echo.accepted(), 0, "nothing reached the target");
    }
);
