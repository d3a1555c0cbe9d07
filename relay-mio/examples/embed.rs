//! Embedding relay-mio in an application that owns its `mio::Poll`.
//!
//! The application registers its own sources on tokens below 1000 and hands the driver the
//! tokens from 1000 up. Each turn: poll no longer than the driver's next deadline, pass the
//! driver's events to it, then let it apply its deadlines.
//!
//! Run: `cargo run -p relay-mio --example embed` (serves relay on 127.0.0.1:8420 for 30 s, or
//! the address given as first argument).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use relay_core::server::ServerConfig;
use relay_mio::Driver;

const APP_UDP: Token = Token(1);

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8420".to_string());
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);

    // The application's own source.
    let mut app = UdpSocket::bind("127.0.0.1:0".parse().expect("address"))?;
    poll.registry()
        .register(&mut app, APP_UDP, Interest::READABLE)?;

    // The relay driver on the same poll, tokens 1000 and up.
    let mut relay = Driver::new(poll.registry(), 1000)?;
    let listener = std::net::TcpListener::bind(&listen)?;
    println!("relay on {}", listener.local_addr()?);
    relay.add_relay_server(listener, Arc::new(ServerConfig::default()), None)?;

    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let timeout = relay
            .next_timeout()
            .map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(end.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, Some(timeout))?;
        for event in events.iter() {
            if relay.owns(event.token()) {
                relay.handle_event(event);
            } else if event.token() == APP_UDP {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = app.recv_from(&mut buf) {
                    println!("application datagram: {n} bytes from {from}");
                }
            }
        }
        relay.handle_timeouts(Instant::now());
    }
    Ok(())
}
