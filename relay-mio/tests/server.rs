//! The relay server on the mio loop, driven by blocking std clients on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use relay_core::auth::Credentials;
use relay_core::select::{NodeSet, Strategy};
use relay_core::server::{ServerConfig, Transport};
use relay_core::target::Target;
use relay_mio::EventLoop;

fn relay_with(config: ServerConfig, forward: Option<NodeSet<Target>>) -> (Running, SocketAddr) {
    let (l, addr) = listener();
    let mut ev = EventLoop::new().unwrap();
    ev.add_relay_server(l, Arc::new(config), forward).unwrap();
    (run(ev), addr)
}

fn relay() -> (Running, SocketAddr) {
    relay_with(ServerConfig::default(), None)
}

#[test]
fn event_loop_is_send() {
    fn send<T: Send>() {}
    send::<EventLoop>();
    send::<relay_mio::StopHandle>();
}

#[test]
fn echo_lazy_response_glued_to_first_target_bytes() {
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, &echo.to_string(), None);
    first.extend_from_slice(b"hello");
    s.write_all(&first).unwrap();
    // nodelay off: the OK response arrives glued to the echo.
    assert_eq!(
        read_n(&mut s, 9),
        [1, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']
    );
    s.write_all(b" world").unwrap();
    assert_eq!(read_n(&mut s, 6), b" world");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn nodelay_sends_response_before_target_data() {
    let echo = tcp_echo();
    let config = ServerConfig {
        nodelay: true,
        ..Default::default()
    };
    let (_r, relay) = relay_with(config, None);
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, &echo.to_string(), None))
        .unwrap();
    // The echo target says nothing until spoken to: the response comes on its own.
    assert_eq!(read_n(&mut s, 4), [1, 0, 0, 0]);
    s.write_all(b"abc").unwrap();
    assert_eq!(read_n(&mut s, 3), b"abc");
}

#[test]
fn nodelay_off_waits_for_target_bytes() {
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, &echo.to_string(), None))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 4];
    let e = s.read(&mut b).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut s, 5), [1, 0, 0, 0, b'x']);
}

#[test]
fn auth_refused_and_accepted() {
    let echo = tcp_echo();
    let config = ServerConfig {
        auth: Some(Arc::new(Credentials::single("user", "pass"))),
        ..Default::default()
    };
    let (_r, relay) = relay_with(config, None);

    let mut s = connect(relay);
    let creds: (&[u8], &[u8]) = (b"user", b"wrong");
    s.write_all(&request(Transport::Tcp, &echo.to_string(), Some(creds)))
        .unwrap();
    assert_eq!(read_to_end(&mut s), [1, 2, 0, 0], "401 then close");

    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, &echo.to_string(), None))
        .unwrap();
    assert_eq!(read_to_end(&mut s), [1, 2, 0, 0], "no credentials");

    let mut s = connect(relay);
    let creds: (&[u8], &[u8]) = (b"user", b"pass");
    let mut first = request(Transport::Tcp, &echo.to_string(), Some(creds));
    first.extend_from_slice(b"ok");
    s.write_all(&first).unwrap();
    assert_eq!(read_n(&mut s, 6), [1, 0, 0, 0, b'o', b'k']);
}

#[test]
fn dial_failure_is_status_7() {
    let (_r, relay) = relay();
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, &closed_port().to_string(), None))
        .unwrap();
    assert_eq!(read_to_end(&mut s), [1, 7, 0, 0]);
}

#[test]
fn unresolvable_domain_is_status_7() {
    let (_r, relay) = relay();
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, "no-such-host.invalid:80", None))
        .unwrap();
    assert_eq!(read_to_end(&mut s), [1, 7, 0, 0]);
}

#[test]
fn domain_target_is_resolved_off_the_loop() {
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, &format!("localhost:{}", echo.port()), None);
    first.extend_from_slice(b"dns");
    s.write_all(&first).unwrap();
    let got = read_n(&mut s, 7);
    // `localhost` may resolve to ::1 first, where the echo does not listen: then status 7.
    assert!(
        got == [1, 0, 0, 0, b'd', b'n', b's'] || got == [1, 7, 0, 0],
        "{got:?}"
    );
}

#[test]
fn empty_host_dials_loopback() {
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, &format!(":{}", echo.port()), None);
    first.extend_from_slice(b"local");
    s.write_all(&first).unwrap();
    assert_eq!(
        read_n(&mut s, 9),
        [1, 0, 0, 0, b'l', b'o', b'c', b'a', b'l']
    );
}

#[test]
fn handshake_timeout_closes_silently() {
    let config = ServerConfig {
        read_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (_r, relay) = relay_with(config, None);
    let mut s = connect(relay);
    s.write_all(&[1, 1]).unwrap(); // half a request
    let t0 = Instant::now();
    assert_eq!(read_to_end(&mut s), b"");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn malformed_request_closes_without_response() {
    let (_r, relay) = relay();
    let mut s = connect(relay);
    s.write_all(&[9, 9, 9, 9, 9, 9]).unwrap();
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn bind_is_refused_without_listen_support() {
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let addr = relay_core::Address::parse(":0").unwrap();
    let mut c = relay_core::client::Client::bind(Transport::Tcp, &addr, None).unwrap();
    s.write_all(c.poll_transmit().unwrap()).unwrap();
    // bind=false: the core refuses with 403.
    assert_eq!(read_to_end(&mut s), [1, 3, 0, 0]);
}

fn forward_set(targets: Vec<SocketAddr>) -> NodeSet<Target> {
    NodeSet::new(
        targets.into_iter().map(Target::from).collect(),
        Strategy::RoundRobin,
        1,
        Duration::from_secs(10),
    )
}

#[test]
fn forward_mode_ignores_requested_address() {
    let echo = tcp_echo();
    let config = ServerConfig {
        forward: true,
        ..Default::default()
    };
    let (_r, relay) = relay_with(config, Some(forward_set(vec![echo])));
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, "192.0.2.1:9", None);
    first.extend_from_slice(b"fwd");
    s.write_all(&first).unwrap();
    assert_eq!(read_n(&mut s, 7), [1, 0, 0, 0, b'f', b'w', b'd']);
}

#[test]
fn forward_mode_failures() {
    let config = ServerConfig {
        forward: true,
        ..Default::default()
    };
    // Dead targets: 6 (host unreachable) each; once both are set aside: 5 (no target).
    // (Two targets: GOST's fail filter leaves a lone target in place.)
    let targets = vec![closed_port(), closed_port()];
    let (_r, relay) = relay_with(config.clone(), Some(forward_set(targets)));
    for expected in [6, 6, 5] {
        let mut s = connect(relay);
        s.write_all(&request(Transport::Tcp, ":1", None)).unwrap();
        assert_eq!(read_to_end(&mut s), [1, expected, 0, 0]);
    }
    // No forwarder at all: 5.
    let (_r2, relay) = relay_with(config, None);
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, ":1", None)).unwrap();
    assert_eq!(read_to_end(&mut s), [1, 5, 0, 0]);
}

#[test]
fn udp_connect_echo() {
    let echo = udp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Udp, &echo.to_string(), None);
    first.extend_from_slice(&[0, 3, b'o', b'n', b'e']);
    s.write_all(&first).unwrap();
    assert_eq!(read_n(&mut s, 9), [1, 0, 0, 0, 0, 3, b'o', b'n', b'e']);
    // A bigger datagram split across writes, and an empty one.
    let big = pattern(30_000, 7);
    let mut frame = vec![(big.len() >> 8) as u8, big.len() as u8];
    frame.extend_from_slice(&big);
    s.write_all(&frame[..100]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&frame[100..]).unwrap();
    assert_eq!(read_n(&mut s, frame.len()), frame);
    s.write_all(&[0, 0]).unwrap();
    assert_eq!(read_n(&mut s, 2), [0, 0]);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn udp_connect_nodelay_response_first() {
    let echo = udp_echo();
    let config = ServerConfig {
        nodelay: true,
        ..Default::default()
    };
    let (_r, relay) = relay_with(config, None);
    let mut s = connect(relay);
    s.write_all(&request(Transport::Udp, &echo.to_string(), None))
        .unwrap();
    assert_eq!(read_n(&mut s, 4), [1, 0, 0, 0]);
    s.write_all(&[0, 2, b'h', b'i']).unwrap();
    assert_eq!(read_n(&mut s, 4), [0, 2, b'h', b'i']);
}

#[test]
fn hundred_concurrent_tunnels() {
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let threads: Vec<_> = (0..100u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(relay);
                let data = pattern(50_000 + i as usize * 97, i);
                let mut first = request(Transport::Tcp, &echo.to_string(), None);
                first.extend_from_slice(&data[..1000]);
                s.write_all(&first).unwrap();
                let mut reader = s.try_clone().unwrap();
                let rest = data[1000..].to_vec();
                let w = std::thread::spawn(move || {
                    s.write_all(&rest).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                });
                let back = read_to_end(&mut reader);
                w.join().unwrap();
                assert_eq!(&back[..4], &[1, 0, 0, 0]);
                assert!(back[4..] == data[..], "tunnel {i}: bytes differ");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn large_transfer_with_slow_reader() {
    // The client reads slowly: the loop must stop reading the target (bounded buffers)
    // and still deliver every byte.
    let echo = tcp_echo();
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let data = pattern(8 << 20, 3);
    let mut first = request(Transport::Tcp, &echo.to_string(), None);
    first.extend_from_slice(&data[..10]);
    s.write_all(&first).unwrap();
    let mut reader = s.try_clone().unwrap();
    let rest = data[10..].to_vec();
    let w = std::thread::spawn(move || {
        s.write_all(&rest).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    let back = read_to_end(&mut reader);
    w.join().unwrap();
    assert_eq!(back.len(), data.len() + 4);
    assert!(back[4..] == data[..]);
}

#[test]
fn half_close_client_first() {
    // The client ends its side; the target still answers after seeing the end.
    let (l, target) = listener();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let got = read_to_end(&mut s);
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .unwrap();
        got
    });
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, &target.to_string(), None);
    first.extend_from_slice(b"12345");
    s.write_all(&first).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = read_to_end(&mut s);
    assert_eq!(back, b"\x01\x00\x00\x00got 5 bytes");
    assert_eq!(t.join().unwrap(), b"12345");
}

#[test]
fn half_close_target_first() {
    // The target ends its side first; the client keeps sending and the target receives it.
    let (l, target) = listener();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut s)
    });
    let (_r, relay) = relay();
    let mut s = connect(relay);
    let mut first = request(Transport::Tcp, &target.to_string(), None);
    first.extend_from_slice(b"hi!");
    s.write_all(&first).unwrap();
    assert_eq!(read_to_end(&mut s), b"\x01\x00\x00\x00bye");
    s.write_all(b"still here").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(t.join().unwrap(), b"still here");
}

#[test]
fn target_closing_without_data_drops_held_response() {
    let (l, target) = listener();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        drop(s);
    });
    let (_r, relay) = relay();
    let mut s = connect(relay);
    s.write_all(&request(Transport::Tcp, &target.to_string(), None))
        .unwrap();
    // GOST drops the held OK when the target ends without a byte.
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn smol_client_against_mio_server() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let echo = tcp_echo();
    let (_r, relay) = relay();
    smol::block_on(async {
        let tcp = smol::net::TcpStream::connect(relay).await.unwrap();
        let to = echo.to_string();
        let options = relay_smol::ClientOptions::default();
        let mut s = relay_smol::connect(tcp, &relay_core::Address::parse(&to).unwrap(), &options)
            .await
            .unwrap();
        s.write_all(b"from smol").await.unwrap();
        let mut back = [0u8; 9];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"from smol");

        // UDP CONNECT too.
        let udp = udp_echo();
        let tcp = smol::net::TcpStream::connect(relay).await.unwrap();
        let (mut send, mut recv) =
            relay_smol::connect_udp(tcp, &relay_core::Address::from_socket(udp), &options)
                .await
                .unwrap();
        send.send(b"dgram").await.unwrap();
        let got = recv.recv().await.unwrap().unwrap().to_vec();
        assert_eq!(got, b"dgram");
    });
}
