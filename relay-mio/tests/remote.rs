//! Remote forwarding (rtcp / rudp) through relay servers that serve BIND, on mio.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::*;
use relay_core::bind::RebindConfig;
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::Strategy;
use relay_core::server::ServerConfig;
use relay_core::target::Target;
use relay_mio::{EventLoop, RemoteEvent, RemoteOptions};

fn chain_to(relay: SocketAddr) -> Chain {
    Chain::new(vec![Hop::new(
        vec![Node::new(relay)],
        Strategy::RoundRobin,
        1,
        Duration::from_secs(10),
    )])
}

fn bind_server(ev: &mut EventLoop, l: std::net::TcpListener, bind: bool) {
    let config = ServerConfig {
        bind,
        ..ServerConfig::default()
    };
    ev.add_relay_server(l, Arc::new(config), None).unwrap();
}

fn options() -> (RemoteOptions, Receiver<RemoteEvent>) {
    let (tx, rx) = channel();
    let options = RemoteOptions {
        rebind: RebindConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            stable_after: Duration::from_secs(10),
        },
        events: Some(tx),
        ..RemoteOptions::default()
    };
    (options, rx)
}

fn any_port() -> Target {
    Target::from("127.0.0.1:0".parse::<SocketAddr>().unwrap())
}

/// Waits for the next `Bound` event; returns the server-side port.
fn bound(rx: &Receiver<RemoteEvent>) -> u16 {
    loop {
        match rx.recv_timeout(T).expect("no bind event") {
            RemoteEvent::Bound { bound: Some(b) } => return b.port,
            RemoteEvent::Bound { bound: None } => panic!("bound without an address"),
            _ => continue,
        }
    }
}

fn echo_check(port: u16, len: usize, seed: u8) {
    let mut s = connect(SocketAddr::from(([127, 0, 0, 1], port)));
    let data = pattern(len, seed);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    assert_eq!(read_n(&mut s, len), data);
    writer.join().unwrap();
}

#[test]
fn rtcp_round_trips_share_one_session() {
    let echo = tcp_echo();
    let mut ev = EventLoop::new().unwrap();
    let (l, relay) = listener();
    bind_server(&mut ev, l, true);
    let (options, rx) = options();
    ev.add_rtcp(chain_to(relay), any_port(), Target::from(echo), options)
        .unwrap();
    let _r = run(ev);
    let port = bound(&rx);
    let threads: Vec<_> = (0..8u8)
        .map(|i| std::thread::spawn(move || echo_check(port, 128 * 1024, i)))
        .collect();
    for t in threads {
        t.join().expect("tunnel over rtcp");
    }
    echo_check(port, 10, 99);
}

#[test]
fn rudp_round_trips_per_peer() {
    let echo = udp_echo();
    let mut ev = EventLoop::new().unwrap();
    let (l, relay) = listener();
    bind_server(&mut ev, l, true);
    let (options, rx) = options();
    ev.add_rudp(chain_to(relay), any_port(), Target::from(echo), options)
        .unwrap();
    let _r = run(ev);
    let port = bound(&rx);
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let peers: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(T)).unwrap();
            s
        })
        .collect();
    for round in 0..3 {
        for (i, p) in peers.iter().enumerate() {
            let msg = format!("peer {i} round {round}");
            p.send_to(msg.as_bytes(), server).unwrap();
            let mut buf = [0u8; 256];
            let (n, from) = p.recv_from(&mut buf).expect("rudp reply");
            assert_eq!(from, server);
            assert_eq!(&buf[..n], msg.as_bytes());
        }
    }
}

#[test]
fn bind_refused_without_bind_permission() {
    let mut ev = EventLoop::new().unwrap();
    let (l, relay) = listener();
    bind_server(&mut ev, l, false);
    let (options, rx) = options();
    ev.add_rtcp(
        chain_to(relay),
        any_port(),
        Target::from(tcp_echo()),
        options,
    )
    .unwrap();
    let _r = run(ev);
    match rx.recv_timeout(T).expect("no event") {
        RemoteEvent::BindFailed { error, retry_in } => {
            assert_eq!(error, std::io::ErrorKind::ConnectionRefused);
            assert_eq!(retry_in, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
    // It keeps trying, backing off.
    match rx.recv_timeout(T).expect("no second event") {
        RemoteEvent::BindFailed { retry_in, .. } => {
            assert_eq!(retry_in, Duration::from_millis(200))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn relay_restart_rebinds() {
    let echo = tcp_echo();
    // The relay server on a loop of its own, so that it can go away and come back.
    let (l, relay) = listener();
    let mut server = EventLoop::new().unwrap();
    bind_server(&mut server, l, true);
    let server = run(server);

    let mut ev = EventLoop::new().unwrap();
    let (options, rx) = options();
    ev.add_rtcp(chain_to(relay), any_port(), Target::from(echo), options)
        .unwrap();
    let _client = run(ev);
    let port = bound(&rx);
    echo_check(port, 1000, 1);

    drop(server);
    match rx.recv_timeout(T).expect("no session end") {
        RemoteEvent::SessionEnded { .. } => {}
        other => panic!("{other:?}"),
    }
    let l = std::net::TcpListener::bind(relay).expect("relay port again");
    let mut server = EventLoop::new().unwrap();
    bind_server(&mut server, l, true);
    let _server = run(server);
    let port = bound(&rx);
    echo_check(port, 1000, 2);
}
