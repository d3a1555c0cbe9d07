//! Proxy entries (SOCKS5, HTTP, auto) in front of relay servers on the same loop, or direct.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::Strategy;
use relay_core::server::ServerConfig;
use relay_mio::{EntryKind, EventLoop};

fn chain_to(relay: SocketAddr, nodelay: bool) -> Chain {
    let node = Node {
        nodelay,
        ..Node::new(relay)
    };
    Chain::new(vec![Hop::new(
        vec![node],
        Strategy::RoundRobin,
        1,
        Duration::from_secs(10),
    )])
}

/// A loop with a relay server and an entry of `kind` in front of it (or direct without
/// `nodelay`); returns the entry's address.
fn setup(kind: EntryKind, via_relay: Option<bool>) -> (Running, SocketAddr) {
    setup_with(kind, via_relay, true, Duration::from_secs(3))
}

/// Like `setup`; `server_nodelay` makes the relay server answer before the target speaks.
fn setup_with(
    kind: EntryKind,
    via_relay: Option<bool>,
    server_nodelay: bool,
    dial_timeout: Duration,
) -> (Running, SocketAddr) {
    let mut ev = EventLoop::new().unwrap();
    let (l, relay) = listener();
    let config = ServerConfig {
        nodelay: server_nodelay,
        ..ServerConfig::default()
    };
    ev.add_relay_server(l, Arc::new(config), None).unwrap();
    let (l, entry) = listener();
    let chain = via_relay.map(|nodelay| chain_to(relay, nodelay));
    ev.add_entry(l, chain, kind, dial_timeout).unwrap();
    (run(ev), entry)
}

fn socks5_request(target: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 only")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    req
}

/// SOCKS5 greeting and CONNECT; returns the stream and the reply code.
fn socks5(entry: SocketAddr, target: SocketAddr) -> (std::net::TcpStream, u8) {
    let mut s = connect(entry);
    s.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_n(&mut s, 2), [5, 0]);
    s.write_all(&socks5_request(target)).unwrap();
    let reply = read_n(&mut s, 10);
    assert_eq!(reply.len(), 10, "short SOCKS5 reply {reply:02x?}");
    assert_eq!(reply[0], 5);
    (s, reply[1])
}

/// HTTP CONNECT; returns the stream and the response head.
fn http_connect(entry: SocketAddr, target: SocketAddr) -> (std::net::TcpStream, String) {
    let mut s = connect(entry);
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let b = read_n(&mut s, 1);
        assert_eq!(
            b.len(),
            1,
            "closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(b[0]);
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

fn echo_on(s: &mut std::net::TcpStream, len: usize, seed: u8) {
    let data = pattern(len, seed);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    assert_eq!(read_n(s, len), data);
    writer.join().unwrap();
}

#[test]
fn socks5_entry_through_relay() {
    let echo = tcp_echo();
    for nodelay in [false, true] {
        let (_r, entry) = setup(EntryKind::Socks5, Some(nodelay));
        let (mut s, rep) = socks5(entry, echo);
        assert_eq!(rep, 0);
        echo_on(&mut s, 256 * 1024, 1);
    }
}

#[test]
fn http_connect_entry_through_relay() {
    let echo = tcp_echo();
    for nodelay in [false, true] {
        let (_r, entry) = setup(EntryKind::Http, Some(nodelay));
        let (mut s, head) = http_connect(entry, echo);
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
        echo_on(&mut s, 64 * 1024, 2);
    }
}

#[test]
fn auto_entry_socks5_socks4_http() {
    let echo = tcp_echo();
    let (_r, entry) = setup(EntryKind::Auto, Some(false));
    let (mut s, rep) = socks5(entry, echo);
    assert_eq!(rep, 0);
    echo_on(&mut s, 4096, 3);
    let (mut h, head) = http_connect(entry, echo);
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    echo_on(&mut h, 4096, 4);
    // SOCKS4: VN 4, CD 1, port, IPv4, empty user id.
    let SocketAddr::V4(v4) = echo else {
        unreachable!()
    };
    let mut s4 = connect(entry);
    let mut req = vec![4, 1];
    req.extend_from_slice(&v4.port().to_be_bytes());
    req.extend_from_slice(&v4.ip().octets());
    req.push(0);
    s4.write_all(&req).unwrap();
    assert_eq!(read_n(&mut s4, 8)[..2], [0, 0x5a]);
    echo_on(&mut s4, 4096, 5);
}

#[test]
fn direct_entry_without_chain() {
    let echo = tcp_echo();
    let (_r, entry) = setup(EntryKind::Socks5, None);
    let (mut s, rep) = socks5(entry, echo);
    assert_eq!(rep, 0);
    echo_on(&mut s, 64 * 1024, 6);
    // A target that refuses: host unreachable, then closed.
    let (mut s, rep) = socks5(entry, closed_port());
    assert_eq!(rep, 4);
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn refusal_with_nodelay_node_is_a_failure_reply() {
    // docs/e2e-findings.md F1: with a nodelay last node, the relay response is awaited.
    let closed = closed_port();
    let (_r, entry) = setup(EntryKind::Socks5, Some(true));
    let (mut s, rep) = socks5(entry, closed);
    assert_eq!(rep, 4, "SOCKS5 reply for a refused tunnel");
    assert_eq!(read_to_end(&mut s), b"");

    let (_r, entry) = setup(EntryKind::Http, Some(true));
    let (mut s, head) = http_connect(entry, closed);
    assert!(head.starts_with("HTTP/1.1 502"), "{head:?}");
    assert_eq!(read_to_end(&mut s), b"");

    let (_r, entry) = setup(EntryKind::Auto, Some(true));
    let (_s, rep) = socks5(entry, closed);
    assert_eq!(rep, 4);
}

#[test]
fn refusal_without_nodelay_answers_success_first() {
    // GOST's lazy connector does no I/O before answering: success, then the close.
    let (_r, entry) = setup(EntryKind::Socks5, Some(false));
    let (mut s, rep) = socks5(entry, closed_port());
    assert_eq!(rep, 0);
    let _ = s.write_all(b"payload");
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn held_relay_response_answers_success_after_the_dial_timeout() {
    // A default relay server holds its OK response until the target speaks; an echo target
    // waits for the client: no response comes, so the entry answers success at the deadline.
    let echo = tcp_echo();
    for server_nodelay in [false, true] {
        let (_r, entry) = setup_with(
            EntryKind::Socks5,
            Some(true),
            server_nodelay,
            Duration::from_millis(300),
        );
        let (mut s, rep) = socks5(entry, echo);
        assert_eq!(rep, 0);
        echo_on(&mut s, 64 * 1024, 7);
    }
}

#[test]
fn first_node_down_is_a_failure_reply() {
    let mut ev = EventLoop::new().unwrap();
    let (l, entry) = listener();
    ev.add_entry(
        l,
        Some(chain_to(closed_port(), false)),
        EntryKind::Socks5,
        Duration::from_secs(3),
    )
    .unwrap();
    let _r = run(ev);
    let (mut s, rep) = socks5(entry, tcp_echo());
    assert_eq!(rep, 4);
    assert_eq!(read_to_end(&mut s), b"");
}

/// A loop with a relay server allowing BIND or not, and a SOCKS5 entry through it.
fn setup_associate(bind: bool) -> (Running, SocketAddr) {
    let mut ev = EventLoop::new().unwrap();
    let (l, relay) = listener();
    let config = ServerConfig {
        bind,
        ..ServerConfig::default()
    };
    ev.add_relay_server(l, Arc::new(config), None).unwrap();
    let (l, entry) = listener();
    ev.add_entry(
        l,
        Some(chain_to(relay, false)),
        EntryKind::Socks5,
        Duration::from_secs(3),
    )
    .unwrap();
    (run(ev), entry)
}

/// SOCKS5 greeting and UDP ASSOCIATE; returns the control stream and the 10-byte reply.
fn socks5_associate(entry: SocketAddr) -> (std::net::TcpStream, Vec<u8>) {
    let mut s = connect(entry);
    s.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_n(&mut s, 2), [5, 0]);
    s.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let reply = read_n(&mut s, 10);
    assert_eq!(reply.len(), 10, "short SOCKS5 reply {reply:02x?}");
    (s, reply)
}

/// A SOCKS5 UDP packet to `to`.
fn udp_packet(to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(v4) = to else {
        panic!("IPv4 only")
    };
    let mut p = vec![0, 0, 0, 1];
    p.extend_from_slice(&v4.ip().octets());
    p.extend_from_slice(&v4.port().to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn socks5_udp_associate_through_relay() {
    let echo = udp_echo();
    let (_r, entry) = setup_associate(true);
    let (control, reply) = socks5_associate(entry);
    assert_eq!(&reply[..4], &[5, 0, 0, 1], "reply {reply:02x?}");
    let relay_at = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    assert_eq!(
        relay_at.ip(),
        entry.ip(),
        "bound on the control connection's IP"
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 65536];
    // Not SOCKS5 packets, or empty: dropped, the association goes on.
    client.send_to(&[0, 0, 1, 1], relay_at).unwrap();
    client.send_to(&udp_packet(echo, b""), relay_at).unwrap();
    // Up to the relay server's UDP buffer (GOST's 4096): longer datagrams it cuts.
    for (i, len) in [1usize, 100, 1400, 4096].into_iter().enumerate() {
        let payload = pattern(len, i as u8);
        client
            .send_to(&udp_packet(echo, &payload), relay_at)
            .unwrap();
        let n = client
            .recv(&mut buf)
            .expect("a reply through the association");
        // The reply names its source: the echo.
        assert_eq!(
            &buf[..10],
            &udp_packet(echo, b"")[..],
            "header of reply {i}"
        );
        assert_eq!(&buf[10..n], &payload[..], "payload of reply {i}");
    }
    // The association ends with the control connection.
    drop(control);
    std::thread::sleep(Duration::from_millis(200));
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = client.send_to(&udp_packet(echo, b"late"), relay_at);
    assert!(
        client.recv(&mut buf).is_err(),
        "no reply after the control connection closed"
    );
}

#[test]
fn socks5_udp_associate_refused_without_bind() {
    let (_r, entry) = setup_associate(false);
    let (mut s, reply) = socks5_associate(entry);
    assert_eq!(reply[..2], [5, 4], "failure reply {reply:02x?}");
    assert_eq!(read_to_end(&mut s), b"");
    // Without a chain there is nothing to associate through.
    let (_r, entry) = setup(EntryKind::Socks5, None);
    let (mut s, reply) = socks5_associate(entry);
    assert_eq!(reply[..2], [5, 4], "failure reply {reply:02x?}");
    assert_eq!(read_to_end(&mut s), b"");
}
