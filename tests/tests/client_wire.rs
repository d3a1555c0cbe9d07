//! What the relay client (port forwarders) puts on the wire, against a relay server played by
//! hand: config.md §4.1's byte-exact requests, response stripping, refusals, nodelay timing and
//! the UDP session lifetime.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use relay_core::Address;
use relay_core::client::Client;
use relay_core::server::Transport;
use relay_tests::*;

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The next connection that carries at least `n` bytes (or, with `n == 0`, the next one that is
/// still open after a short wait); connections that close empty (readiness probes) are
/// skipped. Returns the stream and what was read (at least `n` bytes, within `within`).
fn first_bytes(fake: &Accepting, n: usize, within: Duration) -> (TcpStream, Vec<u8>) {
    loop {
        let mut s = fake.next();
        let deadline = std::time::Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "only {} of {n} bytes within {within:?}: {}",
                    got.len(),
                    hex(&got)
                );
            }
            s.set_read_timeout(Some(left)).unwrap();
            match s.read(&mut buf) {
                Ok(0) if got.is_empty() => break, // a probe: next connection
                Ok(0) => panic!("EOF after {}", hex(&got)),
                Ok(k) => {
                    got.extend_from_slice(&buf[..k]);
                    if got.len() >= n {
                        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        return (s, got);
                    }
                }
                Err(e) => panic!("reading the request: {e} after {}", hex(&got)),
            }
        }
    }
}

fn expected_request(transport: Transport, target: &str, creds: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let addr = Address::parse(target).unwrap();
    Client::connect(transport, &addr, creds, false)
        .unwrap()
        .request()
        .to_vec()
}

fn forwarder_to(rt: Runtime, listen: &str, node: String) -> (Relay, u16) {
    let listen = listen.to_string();
    let (r, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
        args(&[
            "-L",
            &listen.replace("{port}", &p[0].to_string()),
            "-F",
            &node,
        ])
    });
    (r, p[0])
}

both_runtimes!(
    fn tcp_request_bytes_and_response_stripping(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, q) = forwarder_to(
            rt,
            "tcp://127.0.0.1:{port}/:22",
            format!("relay://127.0.0.1:{}", fake.port),
        );
        let mut local = connect(q);
        local.write_all(b"SSH-2.0-client\r\n").unwrap();
        let want_req = [1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 0x16];
        let mut want = want_req.to_vec();
        want.extend_from_slice(b"SSH-2.0-client\r\n");
        let (mut relay, got) = first_bytes(&fake, want.len(), IO_TIMEOUT);
        assert_eq!(
            hex(&got),
            hex(&want),
            "request ‖ first payload (config.md §4.1)"
        );
        relay
            .write_all(b"\x01\x00\x00\x00SSH-2.0-server\r\n")
            .unwrap();
        assert_eq!(
            read_n(&mut local, 16),
            b"SSH-2.0-server\r\n",
            "response stripped"
        );
        local.write_all(b"more").unwrap();
        assert_eq!(read_n(&mut relay, 4), b"more");
        drop(local);
        let (rest, end) = read_to_end_within(&mut relay, IO_TIMEOUT);
        assert!(
            rest.is_empty() && end != End::Timeout,
            "relay side not closed: {end:?}"
        );
    }
);

both_runtimes!(
    fn tcp_request_with_auth_and_without_target(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, q) = forwarder_to(
            rt,
            "tcp://127.0.0.1:{port}",
            format!("relay://user:pass@127.0.0.1:{}", fake.port),
        );
        let mut local = connect(q);
        local.write_all(b"x").unwrap();
        let mut want = expected_request(Transport::Tcp, ":0", Some((b"user", b"pass")));
        want.push(b'x');
        let (_relay, got) = first_bytes(&fake, want.len(), IO_TIMEOUT);
        assert_eq!(hex(&got), hex(&want), "target-less request with user auth");
    }
);

both_runtimes!(
    fn tcp_nodelay_sends_request_before_payload(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, q) = forwarder_to(
            rt,
            "tcp://127.0.0.1:{port}/127.0.0.1:7",
            format!("relay://127.0.0.1:{}?nodelay=true", fake.port),
        );
        let _local = connect(q);
        let want = expected_request(Transport::Tcp, "127.0.0.1:7", None);
        let (_relay, got) = first_bytes(&fake, want.len(), Duration::from_secs(2));
        assert_eq!(
            hex(&got),
            hex(&want),
            "nodelay=true: request at connect time"
        );
    }
);

both_runtimes!(
    fn refusal_closes_local_connection(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, q) = forwarder_to(
            rt,
            "tcp://127.0.0.1:{port}/:22",
            format!("relay://127.0.0.1:{}", fake.port),
        );
        let mut local = connect(q);
        local.write_all(b"hello").unwrap();
        let (mut relay, _) = first_bytes(&fake, 11 + 5, IO_TIMEOUT);
        relay.write_all(&[1, 2, 0, 0]).unwrap();
        assert_closed_without_data(&mut local, IO_TIMEOUT, "after 01 02 00 00");
    }
);

both_runtimes!(
    fn udp_request_bytes_and_session_lifetime(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, r) = spawn_relay(rt, &[Proto::Udp], |p| {
            args(&[
                "-L",
                &format!("udp://127.0.0.1:{}/:53", p[0]),
                "-F",
                &format!("relay://127.0.0.1:{}", fake.port),
            ])
        });
        let peer = udp_peer(r[0]);
        peer.send(b"query").unwrap();
        let mut want = vec![1, 0x81, 0, 0x0c, 4, 0, 2, 0, 1, 2, 0, 4, 3, 0, 0, 0x35];
        want.extend_from_slice(b"\x00\x05query");
        let (mut relay, got) = first_bytes(&fake, want.len(), IO_TIMEOUT);
        assert_eq!(
            hex(&got),
            hex(&want),
            "UDP request ‖ framed datagram (config.md §4.1)"
        );
        relay.write_all(b"\x01\x00\x00\x00\x00\x06answer").unwrap();
        let mut buf = [0u8; 64];
        let n = peer.recv(&mut buf).expect("answer");
        assert_eq!(&buf[..n], b"answer");
        // keepalive=false: the relay connection closes after the first answer.
        let (rest, end) = read_to_end_within(&mut relay, Duration::from_secs(3));
        assert!(
            rest.is_empty() && end != End::Timeout,
            "relay connection should close after the first answer: {} {end:?}",
            hex(&rest)
        );
    }
);

both_runtimes!(
    fn udp_keepalive_keeps_one_connection(rt: Runtime) {
        let fake = Accepting::start();
        let (_client, r) = spawn_relay(rt, &[Proto::Udp], |p| {
            args(&[
                "-L",
                &format!("udp://127.0.0.1:{}/:53?keepalive=true", p[0]),
                "-F",
                &format!("relay://127.0.0.1:{}", fake.port),
            ])
        });
        let peer = udp_peer(r[0]);
        peer.send(b"one").unwrap();
        let (mut relay, got) = first_bytes(&fake, 16 + 5, IO_TIMEOUT);
        assert_eq!(&got[16..], b"\x00\x03one");
        relay.write_all(b"\x01\x00\x00\x00\x00\x01A").unwrap();
        let mut buf = [0u8; 64];
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"A");
        peer.send(b"two").unwrap();
        assert_eq!(
            read_n(&mut relay, 5),
            b"\x00\x03two",
            "second datagram, same connection"
        );
        relay.write_all(b"\x00\x01B").unwrap();
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"B");
        assert!(
            fake.next_within(Duration::from_millis(200)).is_none(),
            "keepalive: no second relay connection"
        );
    }
);
