//! Proxy entries in front of a relay chain: SOCKS5, HTTP CONNECT and auto (`-L :port`).

use relay_tests::*;

fn entry(rt: Runtime, listen: impl Fn(u16) -> String, relay: u16) -> (Relay, u16) {
    entry_via(rt, listen, &format!("relay://127.0.0.1:{relay}"))
}

fn entry_via(rt: Runtime, listen: impl Fn(u16) -> String, node: &str) -> (Relay, u16) {
    let (r, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
        args(&["-L", &listen(p[0]), "-F", node])
    });
    (r, p[0])
}

both_runtimes!(
    fn socks5_entry(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry(rt, |q| format!("socks5://127.0.0.1:{q}"), p);
        let mut s = socks5_connect(q, echo.port);
        echo_check_on(&mut s, 256 * 1024, 21);
    }
);

both_runtimes!(
    fn socks5_entry_server_first_target(rt: Runtime) {
        // The SOCKS5 exchange writes nothing to the target; with node nodelay=true the relay
        // request goes out at once, so the banner arrives before the client writes.
        let target = TcpTarget::banner(b"hello from the target\n");
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry_via(
            rt,
            |q| format!("socks5://127.0.0.1:{q}"),
            &format!("relay://127.0.0.1:{p}?nodelay=true"),
        );
        let mut s = socks5_connect(q, target.port);
        assert_eq!(read_n(&mut s, 22), b"hello from the target\n");
    }
);

both_runtimes!(
    fn http_connect_entry(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry(rt, |q| format!("http://127.0.0.1:{q}"), p);
        let mut s = http_connect(q, echo.port);
        echo_check_on(&mut s, 256 * 1024, 22);
    }
);

both_runtimes!(
    fn auto_entry_socks5_and_http(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        // `-L :Q`: no scheme, so auto, on every interface.
        let (_entry, q) = entry(rt, |q| format!(":{q}"), p);
        let mut s = socks5_connect(q, echo.port);
        echo_check_on(&mut s, 64 * 1024, 23);
        let mut h = http_connect(q, echo.port);
        echo_check_on(&mut h, 64 * 1024, 24);
        assert_eq!(echo.accepted(), 2);
    }
);

both_runtimes!(
    fn socks5_entry_unreachable_target(rt: Runtime) {
        // The relay server cannot dial the target: the SOCKS5 client gets a failure reply or
        // a close, never a tunnel that swallows data.
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry_via(
            rt,
            |q| format!("socks5://127.0.0.1:{q}"),
            &format!("relay://127.0.0.1:{p}?nodelay=true"),
        );
        let closed = free_port();
        let mut s = connect(q);
        use std::io::Write;
        s.write_all(&[5, 1, 0]).unwrap();
        assert_eq!(read_n(&mut s, 2), [5, 0]);
        let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
        req.extend_from_slice(&closed.to_be_bytes());
        s.write_all(&req).unwrap();
        let _ = s.write_all(b"data");
        let (got, end) = read_to_end_within(&mut s, IO_TIMEOUT);
        assert_ne!(end, End::Timeout, "connection left open, got {got:02x?}");
        if got.len() >= 2 {
            assert_eq!(got[0], 5);
            assert_ne!(
                got[1], 0,
                "SOCKS5 success for an unreachable target, then closed"
            );
        }
    }
);
