//! TCP and UDP forwarding through relay chains, served by relay servers on the same loop.

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use relay_core::auth::Credentials;
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::Strategy;
use relay_core::server::ServerConfig;
use relay_core::target::Target;
use relay_mio::EventLoop;

fn hop(node: Node) -> Hop {
    Hop::new(vec![node], Strategy::RoundRobin, 1, Duration::from_secs(10))
}

fn add_relay(ev: &mut EventLoop, config: ServerConfig) -> SocketAddr {
    let (l, addr) = listener();
    ev.add_relay_server(l, Arc::new(config), None).unwrap();
    addr
}

fn tcp_forward(ev: &mut EventLoop, chain: Chain, target: SocketAddr) -> SocketAddr {
    let (l, addr) = listener();
    ev.add_tcp_forward(l, chain, Target::from(target)).unwrap();
    addr
}

#[test]
fn tcp_forward_through_one_relay() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let local = tcp_forward(&mut ev, Chain::new(vec![hop(Node::new(relay))]), echo);
    let _r = run(ev);

    let mut s = connect(local);
    s.write_all(b"through the chain").unwrap();
    // No relay response reaches the local side: it is stripped.
    assert_eq!(read_n(&mut s, 17), b"through the chain");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn tcp_forward_through_two_relays_mixed_nodelay() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let r1 = add_relay(
        &mut ev,
        ServerConfig {
            nodelay: true,
            ..Default::default()
        },
    );
    let r2 = add_relay(
        &mut ev,
        ServerConfig {
            auth: Some(Arc::new(Credentials::single("u", "p"))),
            ..Default::default()
        },
    );
    let first = Node {
        nodelay: true,
        ..Node::new(r1)
    };
    let second = Node {
        credentials: Some((b"u".to_vec(), b"p".to_vec())),
        ..Node::new(r2)
    };
    let chain = Chain::new(vec![hop(first), hop(second)]);
    let local = tcp_forward(&mut ev, chain, echo);
    let _r = run(ev);

    for round in 0..3u8 {
        let mut s = connect(local);
        let data = pattern(200_000, round);
        let mut reader = s.try_clone().unwrap();
        let d = data.clone();
        let w = std::thread::spawn(move || {
            s.write_all(&d).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let back = read_to_end(&mut reader);
        w.join().unwrap();
        assert!(
            back == data,
            "round {round}: {} of {} bytes",
            back.len(),
            data.len()
        );
    }
}

#[test]
fn tcp_forward_survives_clients_that_leave_at_once() {
    // Local clients closing before a byte (port probes) must not set the node aside.
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let local = tcp_forward(&mut ev, Chain::new(vec![hop(Node::new(relay))]), echo);
    let _r = run(ev);
    for _ in 0..3 {
        drop(connect(local));
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut s = connect(local);
    s.write_all(b"still works").unwrap();
    assert_eq!(read_n(&mut s, 11), b"still works");
}

#[test]
fn tcp_forward_refusal_closes_local() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(
        &mut ev,
        ServerConfig {
            auth: Some(Arc::new(Credentials::single("u", "p"))),
            ..Default::default()
        },
    );
    let local = tcp_forward(&mut ev, Chain::new(vec![hop(Node::new(relay))]), echo);
    let _r = run(ev);
    for _ in 0..2 {
        // Refused every time (the refusal does not take the node out: no "no node" instead).
        let mut s = connect(local);
        s.write_all(b"let me in").unwrap();
        assert_eq!(read_to_end(&mut s), b"");
    }
}

#[test]
fn tcp_forward_dead_first_node_closes_local() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let local = tcp_forward(
        &mut ev,
        Chain::new(vec![hop(Node::new(closed_port()))]),
        echo,
    );
    let _r = run(ev);
    let mut s = connect(local);
    let _ = s.write_all(b"anyone?");
    assert_eq!(read_to_end(&mut s), b"");
}

#[test]
fn tcp_forward_half_close_target_first() {
    let (l, target) = listener();
    let t = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        s.write_all(b"early bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut s)
    });
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let local = tcp_forward(&mut ev, Chain::new(vec![hop(Node::new(relay))]), target);
    let _r = run(ev);
    let mut s = connect(local);
    s.write_all(b"hello").unwrap();
    assert_eq!(read_to_end(&mut s), b"early bye");
    s.write_all(b"more after").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(t.join().unwrap(), b"more after");
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn udp_forward(
    ev: &mut EventLoop,
    chain: Chain,
    target: SocketAddr,
    keepalive: bool,
    ttl: Duration,
) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    ev.add_udp_forward(s, chain, Target::from(target), keepalive, ttl)
        .unwrap();
    addr
}

#[test]
fn udp_forward_one_reply_per_session() {
    let echo = udp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let chain = Chain::new(vec![hop(Node::new(relay))]);
    let local = udp_forward(&mut ev, chain, echo, false, Duration::from_secs(5));
    let _r = run(ev);

    let c = udp_client();
    let mut buf = [0u8; 2048];
    for i in 0..3u8 {
        // Each datagram opens a fresh session (the previous one ended with its reply).
        let msg = [b'm', i];
        c.send_to(&msg, local).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, local);
        assert_eq!(&buf[..n], &msg);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn udp_forward_keepalive_many_datagrams() {
    let echo = udp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let chain = Chain::new(vec![hop(Node::new(relay))]);
    let local = udp_forward(&mut ev, chain, echo, true, Duration::from_secs(5));
    let _r = run(ev);

    let clients: Vec<UdpSocket> = (0..4).map(|_| udp_client()).collect();
    let mut buf = vec![0u8; 65536];
    for round in 0..5u8 {
        for (k, c) in clients.iter().enumerate() {
            let msg = pattern(1000 + 100 * k, round);
            c.send_to(&msg, local).unwrap();
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg[..], "client {k} round {round}");
        }
    }
}

#[test]
fn udp_forward_session_ends_after_idle_ttl() {
    let echo = udp_echo();
    let mut ev = EventLoop::new().unwrap();
    let relay = add_relay(&mut ev, ServerConfig::default());
    let chain = Chain::new(vec![hop(Node::new(relay))]);
    let local = udp_forward(&mut ev, chain, echo, true, Duration::from_millis(100));
    let stop = ev.stop_handle();
    let t = std::thread::spawn(move || {
        let c = udp_client();
        let mut buf = [0u8; 64];
        c.send_to(b"a", local).unwrap();
        assert_eq!(c.recv_from(&mut buf).unwrap().0, 1);
        std::thread::sleep(Duration::from_millis(400));
        // A new session after the idle end still works.
        c.send_to(b"b", local).unwrap();
        assert_eq!(c.recv_from(&mut buf).unwrap().0, 1);
        stop.stop();
    });
    // Drive the loop here, watching its size: listeners (2) + relay conn + session come and go.
    let mut saw_idle_end = false;
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while !ev.stop_handle().is_stopped() && std::time::Instant::now() < deadline {
        ev.poll_once(Some(Duration::from_millis(20))).unwrap();
        let n = ev.driver().len();
        peak = peak.max(n);
        if peak > 2 && n == 2 {
            saw_idle_end = true;
        }
    }
    t.join().unwrap();
    assert!(
        saw_idle_end,
        "the session and its tunnel ended after the ttl"
    );
}

#[test]
fn relay_server_through_a_chain_tcp_and_udp() {
    let echo = tcp_echo();
    let uecho = udp_echo();
    let mut ev = EventLoop::new().unwrap();
    let last = add_relay(&mut ev, ServerConfig::default());
    let (l, entry) = listener();
    ev.add_relay_server_chained(
        l,
        Arc::new(ServerConfig::default()),
        None,
        Chain::new(vec![hop(Node::new(last))]),
    )
    .unwrap();
    let _r = run(ev);

    // TCP: one OK from the entry server (held until data), the last hop's response stripped.
    let mut s = connect(entry);
    let mut first = request(relay_core::server::Transport::Tcp, &echo.to_string(), None);
    first.extend_from_slice(b"two hops");
    s.write_all(&first).unwrap();
    assert_eq!(read_n(&mut s, 12), b"\x01\x00\x00\x00two hops");
    s.write_all(b" and more").unwrap();
    assert_eq!(read_n(&mut s, 9), b" and more");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"");

    // TCP, request alone first: the lazy hop request waits for the payload.
    let mut s = connect(entry);
    s.write_all(&request(
        relay_core::server::Transport::Tcp,
        &echo.to_string(),
        None,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"later").unwrap();
    assert_eq!(read_n(&mut s, 9), b"\x01\x00\x00\x00later");

    // UDP CONNECT through the chain.
    let mut s = connect(entry);
    let mut first = request(relay_core::server::Transport::Udp, &uecho.to_string(), None);
    first.extend_from_slice(&[0, 2, b'u', b'p']);
    s.write_all(&first).unwrap();
    assert_eq!(read_n(&mut s, 8), [1, 0, 0, 0, 0, 2, b'u', b'p']);
    s.write_all(&[0, 3, b'a', b'g', b'n']).unwrap();
    assert_eq!(read_n(&mut s, 5), [0, 3, b'a', b'g', b'n']);
}

#[test]
fn relay_server_through_a_chain_refusals() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    // The last hop refuses (auth): the client sees the stream end, its held OK dropped.
    let last = add_relay(
        &mut ev,
        ServerConfig {
            auth: Some(Arc::new(Credentials::single("u", "p"))),
            ..Default::default()
        },
    );
    let (l, entry) = listener();
    ev.add_relay_server_chained(
        l,
        Arc::new(ServerConfig::default()),
        None,
        Chain::new(vec![hop(Node::new(last))]),
    )
    .unwrap();
    // A dead first node: the dial fails, status 7.
    let (l2, entry2) = listener();
    ev.add_relay_server_chained(
        l2,
        Arc::new(ServerConfig::default()),
        None,
        Chain::new(vec![hop(Node::new(closed_port()))]),
    )
    .unwrap();
    let _r = run(ev);

    let mut s = connect(entry);
    let mut first = request(relay_core::server::Transport::Tcp, &echo.to_string(), None);
    first.extend_from_slice(b"x");
    s.write_all(&first).unwrap();
    assert_eq!(read_to_end(&mut s), b"");

    let mut s = connect(entry2);
    s.write_all(&request(
        relay_core::server::Transport::Tcp,
        &echo.to_string(),
        None,
    ))
    .unwrap();
    assert_eq!(read_to_end(&mut s), [1, 7, 0, 0]);
}

#[test]
fn mio_tcp_forward_against_smol_relay_server() {
    let echo = tcp_echo();
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    std::thread::spawn(move || {
        smol::block_on(async {
            let listener = smol::net::TcpListener::try_from(relay).unwrap();
            let config = relay_smol::ServeConfig::new(ServerConfig::default());
            let _ = relay_smol::serve(listener, Arc::new(config)).await;
        })
    });
    let mut ev = EventLoop::new().unwrap();
    let local = tcp_forward(&mut ev, Chain::new(vec![hop(Node::new(relay_addr))]), echo);
    let udp = udp_echo();
    let ulocal = udp_forward(
        &mut ev,
        Chain::new(vec![hop(Node::new(relay_addr))]),
        udp,
        false,
        Duration::from_secs(5),
    );
    let _r = run(ev);

    let mut s = connect(local);
    s.write_all(b"mio client, smol server").unwrap();
    assert_eq!(read_n(&mut s, 23), b"mio client, smol server");

    let c = udp_client();
    c.send_to(b"to smol", ulocal).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to smol");
}
