//! TCP and UDP port forwarding through relay servers: bulk echo, nodelay combinations with
//! client- and server-speaks-first targets, UDP peers, forwarding-mode servers, multi-hop
//! chains, bad input, many concurrent tunnels and half-close.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use relay_tests::*;

fn relay_node(port: u16, query: &str) -> String {
    format!("relay://127.0.0.1:{port}{query}")
}

both_runtimes!(
    fn tcp_forward_echo_1mib(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, q) = tcp_forwarder(rt, echo.port, &[relay_node(p, "")]);
        echo_check(q, 1 << 20, 1);
    }
);

both_runtimes!(
    fn tcp_forward_client_first_nodelay_matrix(rt: Runtime) {
        let echo = TcpTarget::echo();
        for (client_nd, server_nd) in [(false, false), (false, true), (true, false), (true, true)] {
            let (_server, p) = relay_server(rt, "", &format!("?nodelay={server_nd}"));
            let (_client, q) = tcp_forwarder(
                rt,
                echo.port,
                &[relay_node(p, &format!("?nodelay={client_nd}"))],
            );
            let mut s = connect(q);
            s.write_all(b"hello").unwrap();
            assert_eq!(
                read_n(&mut s, 5),
                b"hello",
                "client nodelay={client_nd} server nodelay={server_nd}"
            );
            echo_check_on(&mut s, 64 * 1024, 2);
        }
    }
);

const BANNER: &[u8] = b"220 banner from the target\r\n";

/// Server-speaks-first target. With client `nodelay=false` the relay request only goes out
/// with the client's first bytes, so the banner cannot arrive before the client writes (GOST's
/// documented limitation); with client `nodelay=true` it arrives at once, whatever the
/// server's nodelay. Either way, once the client writes, everything flows.
fn server_first_case(rt: Runtime, client_nd: bool, server_nd: bool) {
    let target = TcpTarget::banner(BANNER);
    let (_server, p) = relay_server(rt, "", &format!("?nodelay={server_nd}"));
    let (_client, q) = tcp_forwarder(
        rt,
        target.port,
        &[relay_node(p, &format!("?nodelay={client_nd}"))],
    );
    let case = format!("client nodelay={client_nd} server nodelay={server_nd}");
    let mut s = connect(q);
    if client_nd {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let got = read_n(&mut s, BANNER.len());
        assert_eq!(got, BANNER, "{case}: banner");
        s.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut s, 4), b"ping", "{case}: echo after banner");
    } else {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!(
                "{case}: expected no banner within 2 s (request not sent before the client \
                 writes), got {other:?} {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"ping").unwrap();
        let mut want = BANNER.to_vec();
        want.extend_from_slice(b"ping");
        assert_eq!(
            read_n(&mut s, want.len()),
            want,
            "{case}: banner and echo after the client wrote"
        );
    }
}

both_runtimes!(
    fn tcp_forward_server_first_nodelay_matrix(rt: Runtime) {
        // The four combinations in parallel: two of them wait 2 s for nothing.
        let cases: Vec<_> = [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .map(|(c, s)| thread::spawn(move || server_first_case(rt, c, s)))
            .collect();
        let mut failed = Vec::new();
        for c in cases {
            if let Err(e) = c.join() {
                failed.push(
                    e.downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "panic".into()),
                );
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }
);

fn udp_forwarder(rt: Runtime, target: u16, chain: &str, query: &str) -> (Relay, u16) {
    let (r, p) = spawn_relay(rt, &[Proto::Udp], |p| {
        args(&[
            "-L",
            &format!("udp://127.0.0.1:{}/127.0.0.1:{target}{query}", p[0]),
            "-F",
            chain,
        ])
    });
    (r, p[0])
}

both_runtimes!(
    fn udp_forward_two_peers(rt: Runtime) {
        let echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, r) = udp_forwarder(rt, echo.port, &relay_node(p, ""), "");
        let a = udp_peer(r);
        let b = udp_peer(r);
        // keepalive=false: each exchange is its own session, so go one round trip at a time.
        for i in 0..4 {
            for (name, peer) in [("a", &a), ("b", &b)] {
                let msg = format!("peer {name} datagram {i}");
                assert_eq!(
                    udp_roundtrip(peer, msg.as_bytes()),
                    msg.as_bytes(),
                    "peer {name} got another reply"
                );
            }
        }
    }
);

both_runtimes!(
    fn udp_forward_keepalive_two_peers(rt: Runtime) {
        let echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, r) = udp_forwarder(rt, echo.port, &relay_node(p, ""), "?keepalive=true");
        let a = udp_peer(r);
        let b = udp_peer(r);
        // First a round trip each (sessions up), then bursts from both before reading.
        for (name, peer) in [("a", &a), ("b", &b)] {
            let msg = format!("hello from {name}");
            assert_eq!(udp_roundtrip(peer, msg.as_bytes()), msg.as_bytes());
        }
        let n = 8;
        for i in 0..n {
            a.send(format!("a{i}").as_bytes()).unwrap();
            b.send(format!("b{i}").as_bytes()).unwrap();
        }
        for (name, peer) in [("a", &a), ("b", &b)] {
            let mut got = Vec::new();
            let mut buf = [0u8; 1500];
            for _ in 0..n {
                let k = peer
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("peer {name} after {got:?}: {e}"));
                got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
            }
            got.sort();
            let mut want: Vec<_> = (0..n).map(|i| format!("{name}{i}")).collect();
            want.sort();
            assert_eq!(got, want, "peer {name}");
        }
    }
);

both_runtimes!(
    fn forwarding_mode_server_tcp_and_udp(rt: Runtime) {
        let (tcp_echo, udp_echo) = UdpEcho::with_tcp_echo();
        let (_server, p) = relay_server(rt, "", &format!("/127.0.0.1:{}", tcp_echo.port));
        let (_client, ports) = spawn_relay(rt, &[Proto::Tcp, Proto::Udp], |q| {
            args(&[
                "-L",
                &format!("tcp://127.0.0.1:{}", q[0]),
                "-L",
                &format!("udp://127.0.0.1:{}", q[1]),
                "-F",
                &relay_node(p, ""),
            ])
        });
        echo_check(ports[0], 256 * 1024, 3);
        let u = udp_peer(ports[1]);
        assert_eq!(
            udp_roundtrip(&u, b"to the server's target"),
            b"to the server's target"
        );
        assert!(udp_echo.received() >= 1);
    }
);

both_runtimes!(
    fn multi_hop_chain(rt: Runtime) {
        let echo = TcpTarget::echo();
        // Hop B only accepts user b: a tunnel that skipped hop A would still work, so make
        // hop A require credentials too and give each hop its own.
        let (server_a, a) = relay_server(rt, "ua:pa@", "");
        let (server_b, b) = relay_server(rt, "ub:pb@", "");
        let chain = [
            format!("relay://ua:pa@127.0.0.1:{a}"),
            format!("relay://ub:pb@127.0.0.1:{b}"),
        ];
        let (_client, q) = tcp_forwarder(rt, echo.port, &chain);
        echo_check(q, 256 * 1024, 4);
        drop((server_a, server_b));
    }
);

both_runtimes!(
    fn multi_hop_chain_wrong_second_hop_credentials(rt: Runtime) {
        // Proves the second hop is really dialed through the first: its refusal closes the
        // local connection.
        let echo = TcpTarget::echo();
        let (_server_a, a) = relay_server(rt, "", "");
        let (_server_b, b) = relay_server(rt, "ub:pb@", "");
        let chain = [
            format!("relay://127.0.0.1:{a}"),
            format!("relay://ub:wrong@127.0.0.1:{b}"),
        ];
        let (_client, q) = tcp_forwarder(rt, echo.port, &chain);
        let mut s = connect(q);
        let _ = s.write_all(b"hello");
        assert_closed_without_data(&mut s, IO_TIMEOUT, "second hop refuses");
        assert_eq!(echo.accepted(), 0, "the target must not be dialed");
    }
);

both_runtimes!(
    fn garbage_does_not_disturb_good_tunnel(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, q) = tcp_forwarder(rt, echo.port, &[relay_node(p, "")]);
        let mut good = connect(q);
        echo_check_on(&mut good, 32 * 1024, 5);
        // Garbage straight at the relay server, and a connection that sends half a request
        // and then garbage.
        let mut junk = connect(p);
        junk.write_all(&pattern(4096, 99)).unwrap();
        let mut half = connect(p);
        half.write_all(&[1, 1, 0, 0x40, 2, 0]).unwrap();
        half.write_all(&[0xff; 300]).unwrap();
        echo_check_on(&mut good, 32 * 1024, 6);
        assert_closed_without_data(&mut junk, IO_TIMEOUT, "garbage connection");
        echo_check_on(&mut good, 32 * 1024, 7);
        // And a fresh tunnel still works.
        echo_check(q, 32 * 1024, 8);
    }
);

both_runtimes!(
    fn concurrent_tunnels_200(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, q) = tcp_forwarder(rt, echo.port, &[relay_node(p, "")]);
        let start = Instant::now();
        let threads: Vec<_> = (0..200u64)
            .map(|i| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || echo_check(q, 32 * 1024, 1000 + i))
                    .unwrap()
            })
            .collect();
        let failed = threads
            .into_iter()
            .map(|t| t.join())
            .filter(Result::is_err)
            .count();
        assert_eq!(failed, 0, "{failed} of 200 tunnels failed");
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(echo.accepted(), 200);
    }
);

both_runtimes!(
    fn half_close_client_shuts_write_first(rt: Runtime) {
        let target = TcpTarget::reply_after_eof();
        for (client_nd, server_nd) in [(false, false), (true, true)] {
            let case = format!("client nodelay={client_nd} server nodelay={server_nd}");
            let (_server, p) = relay_server(rt, "", &format!("?nodelay={server_nd}"));
            let (_client, q) = tcp_forwarder(
                rt,
                target.port,
                &[relay_node(p, &format!("?nodelay={client_nd}"))],
            );
            let data = pattern(100_000, 9);
            let mut s = connect(q);
            s.write_all(&data).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let (got, end) = read_to_end_within(&mut s, IO_TIMEOUT);
            assert_eq!(
                String::from_utf8_lossy(&got),
                eof_reply(&data),
                "{case}: reply after the client's half-close (ended {end:?})"
            );
            assert_eq!(end, End::Eof, "{case}");
        }
    }
);

both_runtimes!(
    fn udp_forward_large_datagram(rt: Runtime) {
        // Up to the default 4096-byte read buffer a datagram passes whole.
        let echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, r) = udp_forwarder(rt, echo.port, &relay_node(p, ""), "");
        let a = udp_peer(r);
        for len in [1usize, 1400, 4000, 4096] {
            let msg = pattern(len, len as u64);
            assert_eq!(
                udp_roundtrip(&a, &msg).len(),
                len,
                "datagram of {len} bytes"
            );
        }
    }
);

both_runtimes!(
    fn half_close_target_closes_first(rt: Runtime) {
        let target = TcpTarget::say_and_close(b"bye");
        let (_server, p) = relay_server(rt, "", "");
        let (_client, q) = tcp_forwarder(rt, target.port, &[relay_node(p, "")]);
        let mut s = connect(q);
        // nodelay=false: the request leaves with the first bytes.
        s.write_all(b"hi").unwrap();
        let (got, end) = read_to_end_within(&mut s, IO_TIMEOUT);
        assert_eq!(got, b"bye");
        assert_eq!(
            end,
            End::Eof,
            "the client must see EOF after the target closed"
        );
    }
);

both_runtimes!(
    fn udp_forward_many_concurrent_peers(rt: Runtime) {
        let echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "");
        let (_client, r) = udp_forwarder(rt, echo.port, &relay_node(p, ""), "");
        let threads: Vec<_> = (0..20)
            .map(|i| {
                thread::spawn(move || {
                    let peer = udp_peer(r);
                    for j in 0..3 {
                        let msg = format!("peer {i} message {j}");
                        assert_eq!(udp_roundtrip(&peer, msg.as_bytes()), msg.as_bytes());
                    }
                })
            })
            .collect();
        let failed = threads
            .into_iter()
            .map(|t| t.join())
            .filter(Result::is_err)
            .count();
        assert_eq!(failed, 0, "{failed} of 20 UDP peers failed");
    }
);

both_runtimes!(
    fn server_killed_mid_tunnel_ends_local_connection(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (server, p) = relay_server(rt, "", "");
        let (_client, q) = tcp_forwarder(rt, echo.port, &[relay_node(p, "")]);
        let mut s = connect(q);
        echo_check_on(&mut s, 4096, 60);
        drop(server);
        let (_, end) = read_to_end_within(&mut s, IO_TIMEOUT);
        assert_ne!(
            end,
            End::Timeout,
            "local connection still open after the server died"
        );
        // New connections fail cleanly too.
        let mut s = connect(q);
        let _ = s.write_all(b"hello");
        assert_closed_without_data(&mut s, IO_TIMEOUT, "server gone");
    }
);
