//! Embedding the driver in an application's own `mio::Poll`.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use relay_core::server::{ServerConfig, Transport};
use relay_mio::Driver;

#[test]
fn driver_in_a_user_poll_with_own_sources() {
    let echo = tcp_echo();
    let mut poll = Poll::new().unwrap();
    // The application's own source, on a token below the driver's range.
    let mut own = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let own_addr = own.local_addr().unwrap();
    poll.registry()
        .register(&mut own, Token(7), Interest::READABLE)
        .unwrap();
    let mut relay = Driver::new(poll.registry(), 100).unwrap();
    let (l, relay_addr) = listener();
    let config = ServerConfig {
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    relay.add_relay_server(l, Arc::new(config), None).unwrap();
    assert!(!relay.owns(Token(7)) && relay.owns(Token(100)));

    let client = std::thread::spawn(move || {
        let mut s = connect(relay_addr);
        let mut first = request(Transport::Tcp, &echo.to_string(), None);
        first.extend_from_slice(b"embedded");
        s.write_all(&first).unwrap();
        let back = read_n(&mut s, 12);
        s.shutdown(Shutdown::Write).unwrap();
        // A silent connection: closed by the driver's timer.
        let mut idle = connect(relay_addr);
        let mut b = [0u8; 1];
        let idle_end = idle.read(&mut b).unwrap();
        let _own = std::net::TcpStream::connect(own_addr).unwrap();
        (back, idle_end)
    });

    let mut events = Events::with_capacity(64);
    let mut own_accepted = false;
    let deadline = Instant::now() + Duration::from_secs(8);
    while !own_accepted && Instant::now() < deadline {
        let timeout = relay
            .next_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        poll.poll(&mut events, Some(timeout)).unwrap();
        for event in events.iter() {
            if relay.owns(event.token()) {
                relay.handle_event(event);
            } else if event.token() == Token(7) {
                own_accepted = own.accept().is_ok();
            }
        }
        relay.handle_timeouts(Instant::now());
    }
    let (back, idle_end) = client.join().unwrap();
    assert_eq!(back, b"\x01\x00\x00\x00embedded");
    assert_eq!(idle_end, 0, "handshake timeout closed the idle connection");
    assert!(own_accepted);
}

#[test]
fn budgeted_connections_continue_through_handle_timeouts() {
    // Transfers far above one turn's read budget complete in a user loop that only follows
    // `next_timeout` and calls `handle_timeouts` (the ready queue lives there).
    let echo = tcp_echo();
    let mut poll = Poll::new().unwrap();
    let mut relay = Driver::new(poll.registry(), 0).unwrap();
    let (l, relay_addr) = listener();
    relay
        .add_relay_server(l, Arc::new(ServerConfig::default()), None)
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut s = connect(relay_addr);
        let data = pattern(4 << 20, 9);
        let mut first = request(Transport::Tcp, &echo.to_string(), None);
        first.extend_from_slice(&data[..100]);
        s.write_all(&first).unwrap();
        let mut reader = s.try_clone().unwrap();
        let rest = data[100..].to_vec();
        let w = std::thread::spawn(move || {
            s.write_all(&rest).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let back = read_to_end(&mut reader);
        w.join().unwrap();
        back.len() == data.len() + 4 && back[4..] == data[..]
    });
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(8);
    while !client.is_finished() && Instant::now() < deadline {
        let timeout = relay
            .next_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        poll.poll(&mut events, Some(timeout)).unwrap();
        for event in events.iter() {
            relay.handle_event(event);
        }
        relay.handle_timeouts(Instant::now());
    }
    assert!(client.join().unwrap(), "every byte came back");
}
