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
            assert!(
                got[1] != 0,
                "SOCKS5 success reply {got:02x?} for an unreachable target, then closed"
            );
        }
    }
);

both_runtimes!(
    fn auto_entry_handshakes_split_across_writes(rt: Runtime) {
        use std::io::Write;
        use std::time::Duration;
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry(rt, |q| format!("auto://127.0.0.1:{q}"), p);
        let slow = |s: &mut std::net::TcpStream, bytes: &[u8]| {
            for b in bytes {
                s.write_all(std::slice::from_ref(b)).unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
        };
        // SOCKS5, one byte per write.
        let mut s = connect(q);
        s.set_nodelay(true).unwrap();
        slow(&mut s, &[5, 1, 0]);
        assert_eq!(read_n(&mut s, 2), [5, 0]);
        let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
        req.extend_from_slice(&echo.port.to_be_bytes());
        slow(&mut s, &req);
        assert_eq!(&read_n(&mut s, 10)[..2], [5, 0]);
        s.write_all(b"socks").unwrap();
        assert_eq!(read_n(&mut s, 5), b"socks");
        // HTTP CONNECT, one byte per write.
        let mut h = connect(q);
        h.set_nodelay(true).unwrap();
        let head = format!(
            "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
            echo.port
        );
        slow(&mut h, head.as_bytes());
        let (got, _) = {
            let mut buf = Vec::new();
            while !buf.ends_with(b"\r\n\r\n") {
                buf.push(read_n(&mut h, 1)[0]);
            }
            (buf, ())
        };
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        h.write_all(b"http").unwrap();
        assert_eq!(read_n(&mut h, 4), b"http");
    }
);

both_runtimes!(
    fn http_entry_unreachable_target(rt: Runtime) {
        // As socks5_entry_unreachable_target, for HTTP CONNECT: expect a non-2xx answer (GOST
        // answers with an error status when the nodelay=true connector reports the refusal).
        use std::io::Write;
        let (_server, p) = relay_server(rt, "", "");
        let (_entry, q) = entry_via(
            rt,
            |q| format!("http://127.0.0.1:{q}"),
            &format!("relay://127.0.0.1:{p}?nodelay=true"),
        );
        let closed = free_port();
        let mut s = connect(q);
        let head =
            format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\nHost: 127.0.0.1:{closed}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let (got, end) = read_to_end_within(&mut s, IO_TIMEOUT);
        let text = String::from_utf8_lossy(&got);
        assert_ne!(end, End::Timeout, "connection left open: {text:?}");
        assert!(
            !text.starts_with("HTTP/1.1 200"),
            "HTTP 200 for an unreachable target, then closed: {text:?}"
        );
    }
);

both_runtimes!(
    fn socks5_udp_associate_through_relay(rt: Runtime) {
        use std::io::Write;
        let udp_echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "?bind=true");
        let (_entry, q) = entry(rt, |q| format!("socks5://127.0.0.1:{q}"), p);
        let mut control = connect(q);
        control.write_all(&[5, 1, 0]).unwrap();
        assert_eq!(read_n(&mut control, 2), [5, 0]);
        control.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        let reply = read_n(&mut control, 10);
        assert_eq!(
            &reply[..4],
            &[5, 0, 0, 1],
            "UDP ASSOCIATE reply {reply:02x?}"
        );
        let relay_port = u16::from_be_bytes([reply[8], reply[9]]);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        for i in 0..3u8 {
            let payload = format!("datagram {i}");
            let mut packet = vec![0, 0, 0, 1, 127, 0, 0, 1];
            packet.extend_from_slice(&udp_echo.port.to_be_bytes());
            packet.extend_from_slice(payload.as_bytes());
            client.send_to(&packet, local(relay_port)).unwrap();
            let mut buf = [0u8; 1500];
            let n = client
                .recv(&mut buf)
                .expect("a reply through the association");
            // The reply comes with a SOCKS5 UDP header naming its source: the echo.
            assert_eq!(&buf[..4], &[0, 0, 0, 1]);
            assert_eq!(u16::from_be_bytes([buf[8], buf[9]]), udp_echo.port);
            assert_eq!(&buf[10..n], payload.as_bytes());
        }
    }
);
