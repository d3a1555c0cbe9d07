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
