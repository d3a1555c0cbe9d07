//! Raw relay requests against a relay server (relay_core's sans-IO client over a std
//! TcpStream): authentication and the status codes of server.md §6.

use std::io::Write;
use std::time::Duration;

use relay_core::Address;
use relay_core::client::Client;
use relay_core::server::Transport;
use relay_core::wire::{Command, Feature, Features, Request};
use relay_tests::*;

const OK: [u8; 4] = [1, 0, 0, 0];
const BAD_REQUEST: [u8; 4] = [1, 1, 0, 0];
const UNAUTHORIZED: [u8; 4] = [1, 2, 0, 0];
const FORBIDDEN: [u8; 4] = [1, 3, 0, 0];
const NETWORK_UNREACHABLE: [u8; 4] = [1, 7, 0, 0];

fn connect_request(target: u16, creds: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let text = format!("127.0.0.1:{target}");
    let addr = Address::parse(&text).unwrap();
    let mut c = Client::connect(Transport::Tcp, &addr, creds, false).unwrap();
    c.take_request().to_vec()
}

/// The response and how the server ended the connection.
fn exchange(port: u16, request: &[u8]) -> (Vec<u8>, End) {
    raw_exchange(port, request, Duration::from_secs(3))
}

fn assert_status_then_close(port: u16, request: &[u8], want: [u8; 4], what: &str) {
    let (got, end) = exchange(port, request);
    assert_eq!(
        got, want,
        "{what}: request {request:02x?} → expected exactly {want:02x?} (ended {end:?})"
    );
    assert_ne!(end, End::Timeout, "{what}: server kept the connection open");
}

both_runtimes!(
    fn auth_forwarder_right_and_wrong_credentials(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "user:pass@", "");
        let (_good, q) =
            tcp_forwarder(rt, echo.port, &[format!("relay://user:pass@127.0.0.1:{p}")]);
        echo_check(q, 64 * 1024, 11);
        let (_bad, q_bad) = tcp_forwarder(
            rt,
            echo.port,
            &[format!("relay://user:wrong@127.0.0.1:{p}")],
        );
        let mut s = connect(q_bad);
        let _ = s.write_all(b"hello");
        assert_closed_without_data(&mut s, IO_TIMEOUT, "wrong credentials");
        let (_none, q_none) = tcp_forwarder(rt, echo.port, &[format!("relay://127.0.0.1:{p}")]);
        let mut s = connect(q_none);
        let _ = s.write_all(b"hello");
        assert_closed_without_data(&mut s, IO_TIMEOUT, "no credentials");
        assert_eq!(
            echo.accepted(),
            1,
            "only the authenticated tunnel reaches the target"
        );
    }
);

both_runtimes!(
    fn auth_raw_status(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "user:pass@", "");
        let without = connect_request(echo.port, None);
        assert_status_then_close(p, &without, UNAUTHORIZED, "no credentials");
        let wrong = connect_request(echo.port, Some((b"user", b"nope")));
        assert_status_then_close(p, &wrong, UNAUTHORIZED, "wrong password");
        let unknown = connect_request(echo.port, Some((b"who", b"pass")));
        assert_status_then_close(p, &unknown, UNAUTHORIZED, "unknown user");
        // Right credentials: OK glued to the target's first bytes (server nodelay=false).
        let mut req = connect_request(echo.port, Some((b"user", b"pass")));
        req.extend_from_slice(b"ping");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        let got = read_n(&mut s, 8);
        assert_eq!(&got[..4], OK);
        assert_eq!(&got[4..], b"ping");
        assert_eq!(echo.accepted(), 1);
    }
);

both_runtimes!(
    fn dial_failure_is_network_unreachable(rt: Runtime) {
        let (_server, p) = relay_server(rt, "", "");
        let closed = free_port(); // nothing listens there
        let req = connect_request(closed, None);
        assert_status_then_close(p, &req, NETWORK_UNREACHABLE, "CONNECT to a closed port");
        let mut with_payload = req.clone();
        with_payload.extend_from_slice(b"payload");
        assert_status_then_close(
            p,
            &with_payload,
            NETWORK_UNREACHABLE,
            "CONNECT with payload to a closed port",
        );
    }
);

both_runtimes!(
    fn unknown_command_is_bad_request(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let text = format!("127.0.0.1:{}", echo.port);
        let list = [Feature::Addr(Address::parse(&text).unwrap())];
        for cmd in [0x03u8, 0x0f] {
            let mut buf = [0u8; 64];
            let n = Request {
                cmd: Command(cmd),
                features: Features::new(&list),
            }
            .encode(&mut buf)
            .unwrap();
            assert_status_then_close(p, &buf[..n], BAD_REQUEST, &format!("CMD {cmd:#04x}"));
        }
        // CONNECT without an address (and no forwarder) is a bad request too.
        assert_status_then_close(p, &[1, 1, 0, 0], BAD_REQUEST, "CONNECT without Addr");
        assert_eq!(echo.accepted(), 0);
    }
);

both_runtimes!(
    fn bind_without_bind_option_is_forbidden(rt: Runtime) {
        let (_server, p) = relay_server(rt, "", "");
        let port = free_port();
        let text = format!(":{port}");
        let addr = Address::parse(&text).unwrap();
        for (transport, what) in [(Transport::Tcp, "TCP BIND"), (Transport::Udp, "UDP BIND")] {
            let mut c = Client::bind(transport, &addr, None).unwrap();
            let req = c.poll_transmit().unwrap().to_vec();
            assert_status_then_close(p, &req, FORBIDDEN, what);
        }
        let mut assoc = Client::associate(None).unwrap();
        let req = assoc.poll_transmit().unwrap().to_vec();
        assert_status_then_close(p, &req, FORBIDDEN, "UDP association");
    }
);

both_runtimes!(
    fn bad_version_closes_without_response(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let mut req = connect_request(echo.port, None);
        for version in [0u8, 2, 5, 0xff] {
            req[0] = version;
            let (got, end) = exchange(p, &req);
            assert!(
                got.is_empty() && end != End::Timeout,
                "version {version}: expected a close without bytes, got {got:02x?} ({end:?})"
            );
        }
        assert_eq!(echo.accepted(), 0);
    }
);

both_runtimes!(
    fn udp_connect_raw(rt: Runtime) {
        // CMD 0x81: datagrams framed with a 2-byte length; the server relays to the target.
        let echo = UdpEcho::start();
        let (_server, p) = relay_server(rt, "", "?nodelay=true");
        let text = format!("127.0.0.1:{}", echo.port);
        let addr = Address::parse(&text).unwrap();
        let mut c = Client::connect(Transport::Udp, &addr, None, false).unwrap();
        let mut req = c.take_request().to_vec();
        req.extend_from_slice(&[0, 5]);
        req.extend_from_slice(b"hello");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        let got = read_n(&mut s, 4 + 2 + 5);
        assert_eq!(&got[..4], OK);
        assert_eq!(&got[4..], b"\x00\x05hello");
    }
);

both_runtimes!(
    fn forward_mode_ignores_address_and_command(rt: Runtime) {
        // server.md §7: in forwarding mode the requested address and the command are ignored.
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", &format!("/127.0.0.1:{}", echo.port));
        let elsewhere = free_port(); // closed: would be 07 if it were dialed
        let mut req = connect_request(elsewhere, None);
        req.extend_from_slice(b"ping");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        assert_eq!(
            read_n(&mut s, 8),
            b"\x01\x00\x00\x00ping",
            "address ignored"
        );
        // GOST's port-forward client without target: Addr ":0".
        let mut req = vec![1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 0];
        req.extend_from_slice(b"pong");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        assert_eq!(
            read_n(&mut s, 8),
            b"\x01\x00\x00\x00pong",
            "target-less client"
        );
        // An unknown command is treated as forward too.
        let mut req = vec![1, 3, 0, 0];
        req.extend_from_slice(b"cmd3");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        assert_eq!(
            read_n(&mut s, 8),
            b"\x01\x00\x00\x00cmd3",
            "command ignored"
        );
        assert_eq!(echo.accepted(), 3);
    }
);

both_runtimes!(
    fn forward_mode_dead_target_is_host_unreachable(rt: Runtime) {
        let dead = free_port();
        let (_server, p) = relay_server(rt, "", &format!("/127.0.0.1:{dead}"));
        let req = [1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 0];
        assert_status_then_close(p, &req, [1, 6, 0, 0], "forward mode, target closed");
    }
);

both_runtimes!(
    fn forward_mode_round_robin_targets(rt: Runtime) {
        let one = TcpTarget::banner(b"one\n");
        let two = TcpTarget::banner(b"two\n");
        let (_server, p) = relay_server(
            rt,
            "",
            &format!("/127.0.0.1:{},127.0.0.1:{}", one.port, two.port),
        );
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut s = connect(p);
            s.write_all(&[1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 0]).unwrap();
            let got = read_n(&mut s, 8);
            assert_eq!(&got[..4], OK);
            seen.push(String::from_utf8_lossy(&got[4..]).trim().to_string());
        }
        assert_eq!(one.accepted() + two.accepted(), 4);
        assert!(
            one.accepted() == 2 && two.accepted() == 2,
            "round robin over two targets: {seen:?}"
        );
    }
);

both_runtimes!(
    fn handshake_read_timeout(rt: Runtime) {
        // A client that never sends its request is dropped after readTimeout, without bytes;
        // meanwhile other clients are served.
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "?readTimeout=1s");
        let mut idle = connect(p);
        let started = std::time::Instant::now();
        let mut req = connect_request(echo.port, None);
        req.extend_from_slice(b"ping");
        let mut s = connect(p);
        s.write_all(&req).unwrap();
        assert_eq!(read_n(&mut s, 8), b"\x01\x00\x00\x00ping");
        assert_closed_without_data(&mut idle, Duration::from_secs(4), "idle handshake");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(800),
            "closed after {waited:?}, before readTimeout=1s"
        );
    }
);

both_runtimes!(
    fn target_closes_without_data_closes_without_response(rt: Runtime) {
        // server.md §6: with nodelay=false the OK rides on the target's first bytes; a target
        // that closes at once leaves nothing to send, so the client sees a bare close.
        let target = TcpTarget::say_and_close(b"");
        let (_server, p) = relay_server(rt, "", "");
        let req = connect_request(target.port, None);
        let (got, end) = exchange(p, &req);
        assert!(
            got.is_empty() && end != End::Timeout,
            "expected a close without a response, got {got:02x?} ({end:?})"
        );
        // With server nodelay=true the OK goes out right after the dial.
        let (_server2, p2) = relay_server(rt, "", "?nodelay=true");
        let (got, end) = exchange(p2, &req);
        assert_eq!(got, OK, "server nodelay=true ({end:?})");
    }
);

both_runtimes!(
    fn chain_node_down_closes_local_connection(rt: Runtime) {
        let echo = TcpTarget::echo();
        let dead = free_port();
        let (_client, q) = tcp_forwarder(rt, echo.port, &[format!("relay://127.0.0.1:{dead}")]);
        let mut s = connect(q);
        let _ = s.write_all(b"hello");
        assert_closed_without_data(&mut s, IO_TIMEOUT, "relay node down");
        assert_eq!(echo.accepted(), 0);
    }
);

both_runtimes!(
    fn request_split_byte_by_byte(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (_server, p) = relay_server(rt, "", "");
        let mut req = connect_request(echo.port, Some((b"u", b"p")));
        req.extend_from_slice(b"ping");
        let mut s = connect(p);
        s.set_nodelay(true).unwrap();
        for b in &req {
            s.write_all(std::slice::from_ref(b)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(read_n(&mut s, 8), b"\x01\x00\x00\x00ping");
    }
);

both_runtimes!(
    fn auth_base64_and_empty_password(rt: Runtime) {
        let echo = TcpTarget::echo();
        // ?auth=base64("user:pass") on both sides.
        let (_server, p) = relay_server(rt, "", "?auth=dXNlcjpwYXNz");
        let (_client, q) = tcp_forwarder(
            rt,
            echo.port,
            &[format!("relay://127.0.0.1:{p}?auth=dXNlcjpwYXNz")],
        );
        echo_check(q, 4096, 12);
        let wrong = connect_request(echo.port, Some((b"user", b"nope")));
        assert_status_then_close(p, &wrong, UNAUTHORIZED, "?auth server, wrong password");
        // config.md §6: a user with an empty password accepts any password.
        let (_open, p2) = relay_server(rt, "user:@", "");
        let mut req = connect_request(echo.port, Some((b"user", b"anything")));
        req.extend_from_slice(b"ping");
        let mut s = connect(p2);
        s.write_all(&req).unwrap();
        assert_eq!(read_n(&mut s, 8), b"\x01\x00\x00\x00ping");
        let other = connect_request(echo.port, Some((b"other", b"anything")));
        assert_status_then_close(p2, &other, UNAUTHORIZED, "unknown user");
    }
);
