//! Relay on a hand-rolled [mio](https://docs.rs/mio) event loop: tokens, readiness and timers,
//! no executor.
//!
//! A thin adapter over [`relay_core`]: it moves bytes and performs the actions the core asks
//! for (dial, write, close); every protocol decision (statuses, features, commands) is the
//! core's. Three services run on one loop:
//!
//! - [`EventLoop::add_relay_server`]: a relay server (proxy or forwarding mode): TCP tunnels
//!   and UDP CONNECT tunnels, to the targets directly or through a chain of relay nodes
//!   ([`EventLoop::add_relay_server_chained`]);
//! - [`EventLoop::add_tcp_forward`]: local TCP port forwarding through a chain of relay nodes;
//! - [`EventLoop::add_udp_forward`]: local UDP port forwarding through a chain (UDP CONNECT);
//! - [`EventLoop::add_entry`]: SOCKS5 / SOCKS4 / HTTP / auto proxy entries, through a chain or
//!   directly; SOCKS5 UDP ASSOCIATE as a relay UDP BIND through the chain;
//! - [`EventLoop::add_rtcp`] / [`EventLoop::add_rudp`]: remote TCP/UDP port forwarding (BIND
//!   through a chain), binding again after failures.
//!
//! Relay servers serve BIND when their config allows it ([`EventLoop::add_relay_server_with`]
//! sets the mux and UDP settings): TCP BIND runs an smux session (this end the smux client)
//! with one stream per connection accepted on the bound listener; UDP BIND relays datagrams
//! in the SOCKS5-style framing.
//!
//! Run it with [`EventLoop`] (it owns the `mio::Poll`), or embed the [`Driver`] in a loop of
//! your own (`examples/embed.rs`).
//!
//! How it moves bytes: every socket is registered edge-triggered for reading and writing under
//! its connection's token, and any event drives the whole connection until each direction
//! would block (spurious events are harmless). A TCP tunnel has two 32 KiB buffers
//! ([`COPY_BUF`]); a direction whose destination does not take its bytes stops reading its
//! source, so memory stays flat. A direction reads at most 16 times per turn, then its
//! connection waits in a ready queue for the next turn, so one busy tunnel cannot starve the
//! others. Deadlines come from the core machines' `poll_timeout()` into one timer heap. Names
//! are resolved on short-lived helper threads that wake the loop.
//!
//! Not served yet: domain names as BIND listen addresses or UDP BIND destinations (not
//! resolved on the loop), forwarding without a chain, splice(2).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//! use relay_core::server::ServerConfig;
//! use relay_mio::EventLoop;
//!
//! // An echo target and a relay server on loopback.
//! let target = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let target_addr = target.local_addr()?;
//! std::thread::spawn(move || {
//!     let (mut s, _) = target.accept().unwrap();
//!     let mut buf = [0u8; 4];
//!     s.read_exact(&mut buf).unwrap();
//!     s.write_all(&buf).unwrap();
//! });
//! let relay = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let relay_addr = relay.local_addr()?;
//! let mut event_loop = EventLoop::new()?;
//! event_loop.add_relay_server(relay, Arc::new(ServerConfig::default()), None)?;
//! let stop = event_loop.stop_handle();
//! let runner = std::thread::spawn(move || event_loop.run());
//!
//! // A client: CONNECT to the target, glued to the first payload (GOST's lazy request).
//! let mut client = relay_core::client::Client::connect(
//!     relay_core::server::Transport::Tcp,
//!     &relay_core::Address::from_socket(target_addr),
//!     None,
//!     false,
//! ).unwrap();
//! let mut s = std::net::TcpStream::connect(relay_addr)?;
//! let mut first = client.take_request().to_vec();
//! first.extend_from_slice(b"ping");
//! s.write_all(&first)?;
//! let mut back = [0u8; 8];
//! s.read_exact(&mut back)?;
//! assert_eq!(&back, &[1, 0, 0, 0, b'p', b'i', b'n', b'g']); // OK response, then the echo
//!
//! stop.stop();
//! runner.join().unwrap()?;
//! # std::io::Result::Ok(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use relay_core::route::Chain;
use relay_core::select::NodeSet;
use relay_core::server::ServerConfig;
use relay_core::target::Target;

mod bind;
mod dial;
mod driver;
mod entry;
mod forward;
mod mux;
mod pipe;
mod remote;
mod server;

pub use bind::BindOptions;
pub use driver::{Driver, StopHandle};
pub use entry::EntryKind;
pub use remote::{RemoteEvent, RemoteOptions};

/// Size of each direction's copy buffer in a TCP tunnel (two per connection).
pub const COPY_BUF: usize = pipe::COPY_BUF;

/// How long a connect to a chain's first node may take before the local side is closed.
pub const CONNECT_TIMEOUT: Duration = forward::CONNECT_TIMEOUT;

/// An event loop that owns its `mio::Poll` and runs a [`Driver`] on it.
#[derive(Debug)]
pub struct EventLoop {
    poll: Poll,
    events: Events,
    driver: Driver,
}

impl EventLoop {
    /// A loop with no service yet. The driver's tokens start at 0.
    pub fn new() -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let driver = Driver::new(poll.registry(), 0)?;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            driver,
        })
    }

    /// The driver, to add services or inspect it.
    pub fn driver(&mut self) -> &mut Driver {
        &mut self.driver
    }

    /// See [`Driver::add_relay_server`].
    pub fn add_relay_server(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
    ) -> io::Result<()> {
        self.driver.add_relay_server(listener, config, forward)
    }

    /// See [`Driver::add_relay_server_chained`].
    pub fn add_relay_server_chained(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
        chain: Chain,
    ) -> io::Result<()> {
        self.driver
            .add_relay_server_chained(listener, config, forward, chain)
    }

    /// See [`Driver::set_limits`].
    pub fn set_limits(&mut self, limits: relay_core::admission::Limits) {
        self.driver.set_limits(limits);
    }

    /// See [`Driver::add_relay_server_with`].
    pub fn add_relay_server_with(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
        chain: Option<Chain>,
        bind: BindOptions,
    ) -> io::Result<()> {
        self.driver
            .add_relay_server_with(listener, config, forward, chain, bind)
    }

    /// See [`Driver::add_entry`].
    pub fn add_entry(
        &mut self,
        listener: std::net::TcpListener,
        chain: Option<Chain>,
        kind: EntryKind,
        dial_timeout: Duration,
    ) -> io::Result<()> {
        self.driver.add_entry(listener, chain, kind, dial_timeout)
    }

    /// See [`Driver::add_rtcp`].
    pub fn add_rtcp(
        &mut self,
        chain: Chain,
        listen: Target,
        target: Target,
        options: RemoteOptions,
    ) -> io::Result<()> {
        self.driver.add_rtcp(chain, listen, target, options)
    }

    /// See [`Driver::add_rudp`].
    pub fn add_rudp(
        &mut self,
        chain: Chain,
        listen: Target,
        target: Target,
        options: RemoteOptions,
    ) -> io::Result<()> {
        self.driver.add_rudp(chain, listen, target, options)
    }

    /// See [`Driver::add_tcp_forward`].
    pub fn add_tcp_forward(
        &mut self,
        listener: std::net::TcpListener,
        chain: Chain,
        target: Target,
    ) -> io::Result<()> {
        self.driver.add_tcp_forward(listener, chain, target)
    }

    /// See [`Driver::add_udp_forward`].
    pub fn add_udp_forward(
        &mut self,
        socket: std::net::UdpSocket,
        chain: Chain,
        target: Target,
        keepalive: bool,
        ttl: Duration,
    ) -> io::Result<()> {
        self.driver
            .add_udp_forward(socket, chain, target, keepalive, ttl)
    }

    /// A handle that makes [`EventLoop::run`] return, from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.driver.stop_handle()
    }

    /// Waits for readiness at most `timeout` (and no later than the next connection
    /// deadline), then handles every event and every passed deadline.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let until_timer = self
            .driver
            .next_timeout()
            .map(|at| at.saturating_duration_since(now));
        let timeout = match (timeout, until_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            self.driver.handle_event(event);
        }
        self.driver.handle_timeouts(Instant::now());
        Ok(())
    }

    /// Runs until a [`StopHandle`] stops it (forever otherwise).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.driver.is_stopped() {
            self.poll_once(None)?;
        }
        Ok(())
    }

    /// Runs until `stop` is set (checked at least every 50 ms, or at once after a
    /// [`StopHandle`] wake) or a [`StopHandle`] stops it.
    pub fn run_until(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::SeqCst) && !self.driver.is_stopped() {
            self.poll_once(Some(Duration::from_millis(50)))?;
        }
        Ok(())
    }
}
