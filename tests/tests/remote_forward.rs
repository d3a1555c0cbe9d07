//! config.md §4.2: remote forwarding (rtcp/rudp) through a relay server with `bind=true`, from
//! the seed configurations (ports rewritten) and from the command line; plus raw BIND answers.

use std::time::Duration;

use relay_core::Address;
use relay_core::client::{Client, ClientEvent};
use relay_core::server::Transport;
use relay_core::{Decoded, target::Target};
use relay_tests::*;

both_runtimes!(
    fn seed_remote_forward_rtcp_and_rudp(rt: Runtime) {
        let echo = TcpTarget::echo();
        let udp_echo = UdpEcho::start();
        let (_server, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
            let yaml = rewrite_addrs(
                &example("remote-forward-server.yaml"),
                &[(":8420", format!(":{}", p[0]))],
            );
            let path = temp_file("remote-forward-server.yaml", &yaml);
            args(&["-C", path.to_str().unwrap()])
        });
        let p = p[0];
        // The client's listeners open on the server (ports S1/tcp and S2/udp).
        let (_client, ports) = spawn_relay(rt, &[Proto::Tcp, Proto::Udp], |s| {
            let yaml = rewrite_addrs(
                &example("remote-forward-client.yaml"),
                &[
                    (":2222", format!(":{}", s[0])),
                    (":22", format!(":{}", echo.port)),
                    (":10053", format!(":{}", s[1])),
                    (":53", format!(":{}", udp_echo.port)),
                    (":8420", format!(":{p}")),
                ],
            );
            let path = temp_file("remote-forward-client.yaml", &yaml);
            args(&["-C", path.to_str().unwrap()])
        });
        echo_check(ports[0], 256 * 1024, 41);
        echo_check(ports[0], 1000, 42);
        let a = udp_peer(ports[1]);
        let b = udp_peer(ports[1]);
        for i in 0..3 {
            let qa = format!("query a {i}");
            let qb = format!("query b {i}");
            assert_eq!(udp_roundtrip(&a, qa.as_bytes()), qa.as_bytes());
            assert_eq!(udp_roundtrip(&b, qb.as_bytes()), qb.as_bytes());
        }
    }
);

both_runtimes!(
    fn cli_remote_forward_rtcp(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "?bind=true");
        let (_client, s) = spawn_relay(rt, &[Proto::Tcp], |s| {
            args(&[
                "-L",
                &format!("rtcp://127.0.0.1:{}/127.0.0.1:{}", s[0], echo.port),
                "-F",
                &format!("relay://127.0.0.1:{p}"),
            ])
        });
        // Several concurrent connections share the one mux session.
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let port = s[0];
                std::thread::spawn(move || echo_check(port, 64 * 1024, 50 + i))
            })
            .collect();
        for t in threads {
            t.join().expect("tunnel over rtcp");
        }
    }
);

both_runtimes!(
    fn raw_bind_is_answered_with_bound_address(rt: Runtime) {
        use std::io::{Read, Write};
        let (_server, p) = relay_server(rt, "", "?bind=true");
        for transport in [Transport::Tcp, Transport::Udp] {
            let port = free_port();
            let text = format!(":{port}");
            let addr = Address::parse(&text).unwrap();
            let mut c = Client::bind(transport, &addr, None).unwrap();
            let mut s = connect(p);
            s.write_all(c.poll_transmit().unwrap()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            let event = loop {
                let n = s.read(&mut chunk).expect("BIND response");
                assert!(n > 0, "{transport:?} BIND: closed after {buf:02x?}");
                buf.extend_from_slice(&chunk[..n]);
                match c.handle_response(&buf) {
                    Ok(Decoded::Complete { value, .. }) => break value,
                    Ok(Decoded::Partial { .. }) => continue,
                    Err(e) => panic!("{transport:?} BIND: {e} ({buf:02x?})"),
                }
            };
            let ClientEvent::Established { bound } = event;
            let bound: Option<Target> = bound;
            let bound = bound.expect("BIND response carries the bound address");
            assert_eq!(
                bound.port, port,
                "{transport:?} BIND bound {bound:?}, asked for {port}"
            );
        }
    }
);
