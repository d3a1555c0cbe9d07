//! [`Driver`]: every relay source of one event loop, driven from readiness events and timers,
//! on a `mio::Poll` that the driver does not own (so it can be embedded).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry, Token, Waker};
use relay_core::admission::{Admission, AdmissionStats, Limits};
use relay_core::route::Chain;
use relay_core::select::NodeSet;
use relay_core::server::{Server, ServerConfig, Transport};
use relay_core::target::Target;
use relay_core::udp::MAX_DATAGRAM;
use slab::Slab;

use crate::bind::BindOptions;
use crate::dial::{Resolved, Resolver};
use crate::entry::{EntryConn, EntryKind};
use crate::forward::{FwdConn, UdpSession};
use crate::remote::{RemoteConn, RemoteOptions};
use crate::server::RelayConn;

/// What a unit wants after being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it.
    Keep,
    /// Remove and close it.
    Close,
}

/// What a unit may use while it is driven.
pub(crate) struct Ctx<'a> {
    pub registry: &'a Registry,
    pub resolver: &'a Resolver,
    pub token: Token,
    pub key: usize,
    pub serial: u64,
    pub now: Instant,
    pub forward: Option<&'a mut NodeSet<Target>>,
    pub chain: Option<&'a mut Chain>,
    pub bind: BindOptions,
}

impl<'a> Ctx<'a> {
    /// The context of one unit for one turn, with no service state attached yet.
    fn new(
        registry: &'a Registry,
        resolver: &'a Resolver,
        token: Token,
        key: usize,
        serial: u64,
        now: Instant,
    ) -> Ctx<'a> {
        Ctx {
            registry,
            resolver,
            token,
            key,
            serial,
            now,
            forward: None,
            chain: None,
            bind: BindOptions::default(),
        }
    }
}

enum Service {
    Relay {
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
        chain: Option<Chain>,
        bind: BindOptions,
    },
    TcpForward {
        chain: Chain,
        target: Target,
    },
    Entry {
        chain: Option<Chain>,
        kind: EntryKind,
        dial_timeout: Duration,
    },
    Remote {
        chain: Chain,
    },
    UdpForward {
        chain: Chain,
        target: Target,
        keepalive: bool,
        ttl: Duration,
        socket: Arc<UdpSocket>,
        sessions: HashMap<SocketAddr, (usize, u64)>,
    },
}

enum Unit {
    Listener {
        svc: usize,
        listener: TcpListener,
    },
    UdpListener {
        svc: usize,
    },
    Relay(Box<RelayConn>),
    Forward(Box<FwdConn>),
    Entry(Box<EntryConn>),
    Remote(Box<RemoteConn>),
    Session {
        svc: usize,
        session: Box<UdpSession>,
    },
}

struct Slot {
    serial: u64,
    armed: Option<Instant>,
    /// In the ready queue (stopped on a budget with work left).
    queued: bool,
    /// The service and admission id of an admitted connection.
    admitted: Option<(usize, u64)>,
    unit: Unit,
}

/// Connections a listener accepts, or datagrams a UDP listener takes, per turn.
const ACCEPT_BUDGET: usize = 64;

/// Shared by a [`Driver`] and its [`StopHandle`]s.
#[derive(Debug)]
struct StopState {
    flag: AtomicBool,
    waker: Arc<Waker>,
}

/// Asks a running [`crate::EventLoop`] to return from [`crate::EventLoop::run`]; usable from any
/// thread (a signal-watching thread, a test).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<StopState>);

impl StopHandle {
    /// Requests the stop and wakes the loop.
    pub fn stop(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        let _ = self.0.waker.wake();
    }

    /// True once [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }
}

/// The relay services and connections of one event loop, without the `mio::Poll`.
///
/// Tokens from `token_base` up belong to the driver: `token_base` itself is its [`Waker`]
/// (resolver results, stop requests), the ones above its listeners and connections. Feed it
/// every event whose token [`Driver::owns`], call [`Driver::handle_timeouts`] after each poll,
/// and bound each poll by [`Driver::next_timeout`]. See `examples/embed.rs`.
///
/// ```
/// use mio::{Events, Poll};
/// use relay_mio::Driver;
/// use std::time::Instant;
///
/// let mut poll = Poll::new()?;
/// let mut relay = Driver::new(poll.registry(), 1000)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// relay.add_relay_server(listener, Default::default(), None)?;
/// let mut events = Events::with_capacity(256);
/// // One turn of the application's own loop:
/// let timeout = relay.next_timeout().map(|t| t.saturating_duration_since(Instant::now()));
/// poll.poll(&mut events, timeout.or(Some(std::time::Duration::ZERO)))?;
/// for event in events.iter() {
///     if relay.owns(event.token()) {
///         relay.handle_event(event);
///     }
/// }
/// relay.handle_timeouts(Instant::now());
/// # std::io::Result::Ok(())
/// ```
pub struct Driver {
    registry: Registry,
    base: usize,
    units: Slab<Slot>,
    services: Vec<Service>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    ready: VecDeque<(usize, u64)>,
    serial: u64,
    resolver: Resolver,
    resolved: Receiver<Resolved>,
    stop: Arc<StopState>,
    dgram: Box<[u8]>,
    /// Limits for the TCP services added from now on.
    limits: Limits,
    /// Admission state of each TCP-accepting service.
    admissions: HashMap<usize, Admission>,
    /// Connections still reading their request, by service and admission id: the ones the
    /// core may evict.
    handshaking: HashMap<(usize, u64), usize>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("token_base", &self.base)
            .field("units", &self.units.len())
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver registering its sources with `registry`, using the tokens from `token_base`
    /// up; it registers a [`Waker`] at `token_base` (mio allows one per `Poll`: if the
    /// application has its own, use [`Driver::with_waker`]).
    pub fn new(registry: &Registry, token_base: usize) -> io::Result<Driver> {
        let waker = Arc::new(Waker::new(registry, Token(token_base))?);
        Driver::with_waker(registry, waker, token_base)
    }

    /// A driver sharing the application's `waker`. Events of the waker's token must then be
    /// passed to [`Driver::handle_wake`] (spurious calls are harmless); the driver's own
    /// sources use the tokens above `token_base`.
    pub fn with_waker(
        registry: &Registry,
        waker: Arc<Waker>,
        token_base: usize,
    ) -> io::Result<Driver> {
        let (tx, rx) = channel();
        Ok(Driver {
            registry: registry.try_clone()?,
            base: token_base,
            units: Slab::new(),
            services: Vec::new(),
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            serial: 0,
            resolver: Resolver {
                tx,
                waker: waker.clone(),
            },
            resolved: rx,
            stop: Arc::new(StopState {
                flag: AtomicBool::new(false),
                waker,
            }),
            dgram: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            limits: Limits::default(),
            admissions: HashMap::new(),
            handshaking: HashMap::new(),
        })
    }

    /// Admission limits (connections, handshakes, per-source rate) of the TCP services added
    /// from now on; [`Limits::default`] until set.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// What the admission of the TCP service added `n`-th (from 0, in `add_*` order) holds and
    /// refused so far.
    pub fn admission_stats(&self, n: usize) -> Option<AdmissionStats> {
        self.admissions.get(&n).map(Admission::stats)
    }

    /// A handle that stops [`crate::EventLoop::run`] from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// True when `token` is one of this driver's (its waker's or above).
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Number of live listeners, connections and sessions.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Serves the relay protocol on `listener`: one [`Server`] handshake per accepted
    /// connection, then its tunnel. `forward` holds the targets of a forwarding service
    /// (`config.forward`); without it, forwarded requests are answered "no target".
    pub fn add_relay_server(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
    ) -> io::Result<()> {
        self.services.push(Service::Relay {
            config,
            forward,
            chain: None,
            bind: BindOptions::default(),
        });
        self.add_listener(listener)
    }

    /// Like [`Driver::add_relay_server`], with the targets reached through `chain` (GOST
    /// `-L relay://:8420 -F relay://next:8420`): the dial connects to the chain's first node,
    /// the hop requests go out in front of the client's payload and the hop responses are
    /// stripped from the front of what comes back. UDP CONNECT asks the last hop for UDP.
    pub fn add_relay_server_chained(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
        chain: Chain,
    ) -> io::Result<()> {
        self.services.push(Service::Relay {
            config,
            forward,
            chain: Some(chain),
            bind: BindOptions::default(),
        });
        self.add_listener(listener)
    }

    /// Like [`Driver::add_relay_server_chained`] with an optional chain and the settings of
    /// BIND data phases (`config.bind` allows BIND).
    pub fn add_relay_server_with(
        &mut self,
        listener: std::net::TcpListener,
        config: Arc<ServerConfig>,
        forward: Option<NodeSet<Target>>,
        chain: Option<Chain>,
        bind: BindOptions,
    ) -> io::Result<()> {
        self.services.push(Service::Relay {
            config,
            forward,
            chain,
            bind,
        });
        self.add_listener(listener)
    }

    /// Serves proxy clients on `listener` (GOST `-L socks5://`, `http://`, `auto://`): the
    /// core's SOCKS5 / SOCKS4 / HTTP handshakes, then a tunnel to the requested target through
    /// `chain` (directly without one). With a chain whose nodes are all `nodelay`, the reply
    /// waits for the relay response (at most `dial_timeout`) and reports a refusal as a
    /// failure reply; otherwise success is answered once the first node is connected, as GOST
    /// does. A SOCKS5 UDP ASSOCIATE is a relay UDP BIND through `chain` (the last relay server
    /// must allow BIND; without a chain it is answered with a failure reply): the client's
    /// SOCKS5 UDP packets go up the relay connection, the replies come back to the client,
    /// until the control connection ends.
    pub fn add_entry(
        &mut self,
        listener: std::net::TcpListener,
        chain: Option<Chain>,
        kind: EntryKind,
        dial_timeout: Duration,
    ) -> io::Result<()> {
        self.services.push(Service::Entry {
            chain,
            kind,
            dial_timeout,
        });
        self.add_listener(listener)
    }

    /// Remote TCP forwarding (GOST `-L rtcp://listen/target -F relay://node`): binds `listen`
    /// on the relay server at the end of `chain` (an smux session, this end the smux server)
    /// and connects every stream the server opens to `target`. Binds again after a failure or
    /// a dead session, with the delays of `options.rebind`. A domain `target` is resolved now.
    pub fn add_rtcp(
        &mut self,
        chain: Chain,
        listen: Target,
        target: Target,
        options: RemoteOptions,
    ) -> io::Result<()> {
        options
            .mux
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.add_remote(Transport::Tcp, chain, listen, target, options)
    }

    /// Remote UDP forwarding (GOST `-L rudp://listen/target -F relay://node`): binds `listen`
    /// (UDP) on the relay server at the end of `chain`; every remote peer gets its own local
    /// UDP socket to `target`, replies go back tagged with that peer. Binds again like
    /// [`Driver::add_rtcp`].
    pub fn add_rudp(
        &mut self,
        chain: Chain,
        listen: Target,
        target: Target,
        options: RemoteOptions,
    ) -> io::Result<()> {
        self.add_remote(Transport::Udp, chain, listen, target, options)
    }

    fn add_remote(
        &mut self,
        transport: Transport,
        chain: Chain,
        listen: Target,
        target: Target,
        options: RemoteOptions,
    ) -> io::Result<()> {
        let addr = match target.dial_addr() {
            Some(a) => a,
            None => {
                let text = target.to_string();
                std::net::ToSocketAddrs::to_socket_addrs(&text)?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, text))?
            }
        };
        let svc = self.services.len();
        self.services.push(Service::Remote { chain });
        let now = Instant::now();
        let key = self.insert(
            move |_| {
                Ok(Unit::Remote(Box::new(RemoteConn::new(
                    svc, transport, listen, addr, options, now,
                ))))
            },
            now,
        );
        if let Some(key) = key {
            self.after(key, Next::Keep);
        }
        Ok(())
    }

    /// Forwards every connection accepted on `listener` to `target` through `chain` (GOST
    /// `-L tcp://:port/target -F relay://node`).
    pub fn add_tcp_forward(
        &mut self,
        listener: std::net::TcpListener,
        chain: Chain,
        target: Target,
    ) -> io::Result<()> {
        self.services.push(Service::TcpForward { chain, target });
        self.add_listener(listener)
    }

    /// Forwards the datagrams arriving on `socket` to `target` through `chain`: one relay UDP
    /// CONNECT per local peer, replies sent back to that peer. Without `keepalive` a session
    /// ends with its first reply (GOST's default); either way it ends after `ttl` without
    /// traffic.
    pub fn add_udp_forward(
        &mut self,
        socket: std::net::UdpSocket,
        chain: Chain,
        target: Target,
        keepalive: bool,
        ttl: Duration,
    ) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        let svc = self.services.len();
        let entry = self.units.vacant_entry();
        let token = Token(self.base + 1 + entry.key());
        self.registry
            .register(&mut socket, token, Interest::READABLE)?;
        self.serial += 1;
        entry.insert(Slot {
            serial: self.serial,
            armed: None,
            queued: false,
            admitted: None,
            unit: Unit::UdpListener { svc },
        });
        self.services.push(Service::UdpForward {
            chain,
            target,
            keepalive,
            ttl,
            socket: Arc::new(socket),
            sessions: HashMap::new(),
        });
        Ok(())
    }

    fn add_listener(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        let svc = self.services.len() - 1;
        self.admissions.insert(svc, Admission::new(self.limits));
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let entry = self.units.vacant_entry();
        let token = Token(self.base + 1 + entry.key());
        if let Err(e) = self
            .registry
            .register(&mut listener, token, Interest::READABLE)
        {
            self.services.pop();
            return Err(e);
        }
        self.serial += 1;
        entry.insert(Slot {
            serial: self.serial,
            armed: None,
            queued: false,
            admitted: None,
            unit: Unit::Listener { svc, listener },
        });
        Ok(())
    }

    /// Handles one readiness event of a token this driver [`Driver::owns`] (others are
    /// ignored). Spurious events are harmless.
    pub fn handle_event(&mut self, event: &Event) {
        self.handle_token(event.token());
    }

    /// Like [`Driver::handle_event`], from the token alone.
    pub fn handle_token(&mut self, token: Token) {
        if token.0 == self.base {
            return self.handle_wake();
        }
        if token.0 < self.base {
            return;
        }
        let key = token.0 - self.base - 1;
        self.dispatch(key, Instant::now(), Why::Ready);
    }

    /// Takes in the results of name lookups (call it for the waker's token).
    pub fn handle_wake(&mut self) {
        let results: Vec<Resolved> = self.resolved.try_iter().collect();
        for r in results {
            let live = self.units.get(r.key).is_some_and(|s| s.serial == r.serial);
            if live {
                self.dispatch(r.key, Instant::now(), Why::Resolved(r.result));
            }
        }
    }

    /// The earliest instant a connection wants [`Driver::handle_timeouts`] (may be early:
    /// spurious calls are harmless). It is "now" while connections that stopped on their
    /// per-turn read budget wait to continue: poll without sleeping then.
    pub fn next_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(Instant::now());
        }
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Continues the connections that stopped on their read budget, then applies every
    /// deadline that has passed by `now`.
    pub fn handle_timeouts(&mut self, now: Instant) {
        for _ in 0..self.ready.len() {
            let Some((key, serial)) = self.ready.pop_front() else {
                break;
            };
            match self.units.get_mut(key) {
                Some(slot) if slot.serial == serial => slot.queued = false,
                _ => continue,
            }
            self.dispatch(key, now, Why::Ready);
        }
        while let Some(&Reverse((at, key, serial))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.units.get_mut(key) else {
                continue;
            };
            if slot.serial != serial || slot.armed != Some(at) {
                continue;
            }
            slot.armed = None;
            self.dispatch(key, now, Why::Timeout);
        }
    }

    fn dispatch(&mut self, key: usize, now: Instant, why: Why) {
        let Some(slot) = self.units.get_mut(key) else {
            return;
        };
        let token = Token(self.base + 1 + key);
        let serial = slot.serial;
        let next = match &mut slot.unit {
            Unit::Listener { svc, .. } => {
                let svc = *svc;
                return self.accept(key, svc, now);
            }
            Unit::UdpListener { svc } => {
                let svc = *svc;
                return self.udp_readable(key, svc, now);
            }
            Unit::Relay(conn) => {
                let svc = conn.svc();
                let mut ctx = Ctx::new(&self.registry, &self.resolver, token, key, serial, now);
                if let Some(Service::Relay {
                    forward,
                    chain,
                    bind,
                    ..
                }) = self.services.get_mut(svc)
                {
                    ctx.forward = forward.as_mut();
                    ctx.chain = chain.as_mut();
                    ctx.bind = *bind;
                }
                match why {
                    Why::Ready => conn.drive(&mut ctx),
                    Why::Timeout => conn.on_timeout(&mut ctx),
                    Why::Resolved(r) => conn.on_resolved(r, &mut ctx),
                }
            }
            Unit::Forward(conn) => {
                let mut ctx = Ctx::new(&self.registry, &self.resolver, token, key, serial, now);
                let Service::TcpForward { chain, .. } = &mut self.services[conn.svc()] else {
                    return;
                };
                match why {
                    Why::Timeout => conn.on_timeout(&mut ctx, chain),
                    _ => conn.drive(&mut ctx, chain),
                }
            }
            Unit::Entry(conn) => {
                let mut ctx = Ctx::new(&self.registry, &self.resolver, token, key, serial, now);
                if let Some(Service::Entry { chain, .. }) = self.services.get_mut(conn.svc()) {
                    ctx.chain = chain.as_mut();
                }
                match why {
                    Why::Ready => conn.drive(&mut ctx),
                    Why::Timeout => conn.on_timeout(&mut ctx),
                    Why::Resolved(r) => conn.on_resolved(r, &mut ctx),
                }
            }
            Unit::Remote(conn) => {
                let mut ctx = Ctx::new(&self.registry, &self.resolver, token, key, serial, now);
                let Some(Service::Remote { chain }) = self.services.get_mut(conn.svc()) else {
                    return;
                };
                match why {
                    Why::Timeout => conn.on_timeout(&mut ctx, chain),
                    _ => conn.drive(&mut ctx, chain),
                }
            }
            Unit::Session { svc, session } => {
                let mut ctx = Ctx::new(&self.registry, &self.resolver, token, key, serial, now);
                let Service::UdpForward { chain, .. } = &mut self.services[*svc] else {
                    return;
                };
                match why {
                    Why::Timeout => session.on_timeout(&mut ctx, chain),
                    _ => session.drive(&mut ctx, chain),
                }
            }
        };
        self.after(key, next);
    }

    fn after(&mut self, key: usize, next: Next) {
        if next == Next::Close {
            return self.remove(key);
        }
        let Some(slot) = self.units.get_mut(key) else {
            return;
        };
        let handshaking = match &slot.unit {
            Unit::Relay(c) => c.in_handshake(),
            Unit::Entry(c) => c.in_handshake(),
            _ => false,
        };
        if let (Some((svc, id)), false) = (slot.admitted, handshaking) {
            if self.handshaking.remove(&(svc, id)).is_some() {
                if let Some(adm) = self.admissions.get_mut(&svc) {
                    adm.handshake_done(id);
                }
            }
        }
        let more = match &slot.unit {
            Unit::Relay(c) => c.wants_more(),
            Unit::Forward(c) => c.wants_more(),
            Unit::Entry(c) => c.wants_more(),
            Unit::Remote(c) => c.wants_more(),
            Unit::Session { session, .. } => session.wants_more(),
            _ => false,
        };
        if more && !slot.queued {
            slot.queued = true;
            self.ready.push_back((key, slot.serial));
        }
        let deadline = match &slot.unit {
            Unit::Relay(c) => c.deadline(),
            Unit::Forward(c) => c.deadline(),
            Unit::Entry(c) => c.deadline(),
            Unit::Remote(c) => c.deadline(),
            Unit::Session { session, .. } => session.deadline(),
            _ => None,
        };
        // One heap entry per unit at a time: a later deadline waits for the armed entry to
        // fire (spuriously) and re-arm; an earlier one replaces it (the old entry goes stale).
        match (deadline, slot.armed) {
            (Some(at), Some(armed)) if armed <= at => {}
            (Some(at), _) => {
                slot.armed = Some(at);
                self.timers.push(Reverse((at, key, slot.serial)));
            }
            (None, _) => {}
        }
    }

    fn remove(&mut self, key: usize) {
        let Some(slot) = self.units.try_remove(key) else {
            return;
        };
        if let Some((svc, id)) = slot.admitted {
            self.handshaking.remove(&(svc, id));
            if let Some(adm) = self.admissions.get_mut(&svc) {
                adm.closed(id);
            }
        }
        match slot.unit {
            Unit::Relay(c) => c.close(&self.registry),
            Unit::Forward(c) => c.close(&self.registry),
            Unit::Entry(c) => c.close(&self.registry),
            Unit::Remote(c) => c.close(&self.registry),
            Unit::Session { svc, session } => {
                if let Some(Service::UdpForward { sessions, .. }) = self.services.get_mut(svc) {
                    let peer = session.peer();
                    if sessions.get(&peer) == Some(&(key, slot.serial)) {
                        sessions.remove(&peer);
                    }
                }
                session.close(&self.registry);
            }
            Unit::Listener { mut listener, .. } => {
                let _ = self.registry.deregister(&mut listener);
            }
            Unit::UdpListener { .. } => {}
        }
    }

    fn insert(
        &mut self,
        unit: impl FnOnce(&Ctx<'_>) -> io::Result<Unit>,
        now: Instant,
    ) -> Option<usize> {
        let entry = self.units.vacant_entry();
        let key = entry.key();
        self.serial += 1;
        let ctx = Ctx::new(
            &self.registry,
            &self.resolver,
            Token(self.base + 1 + key),
            key,
            self.serial,
            now,
        );
        match unit(&ctx) {
            Ok(unit) => {
                entry.insert(Slot {
                    serial: self.serial,
                    armed: None,
                    queued: false,
                    admitted: None,
                    unit,
                });
                Some(key)
            }
            Err(e) => {
                log::info!("cannot start a connection: {e}");
                None
            }
        }
    }

    /// Queues a listener that stopped on its budget.
    fn requeue(&mut self, key: usize) {
        if let Some(slot) = self.units.get_mut(key) {
            if !slot.queued {
                slot.queued = true;
                self.ready.push_back((key, slot.serial));
            }
        }
    }

    fn accept(&mut self, key: usize, svc: usize, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(Slot {
                unit: Unit::Listener { listener, .. },
                ..
            }) = self.units.get_mut(key)
            else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or an aborted connection: try again on the next event.
                    log::warn!("accept: {e}");
                    return;
                }
            };
            let admitted = match self
                .admissions
                .get_mut(&svc)
                .map(|a| a.admit(peer.ip(), now))
            {
                Some(Ok(a)) => Some(a),
                Some(Err(refusal)) => {
                    log::debug!("{peer}: not admitted: {refusal:?}");
                    continue;
                }
                None => None,
            };
            if let Some(old) = admitted.and_then(|a| a.evict) {
                if let Some(k) = self.handshaking.remove(&(svc, old)) {
                    log::debug!("evicting the oldest unfinished handshake for {peer}");
                    self.remove(k);
                }
            }
            let _ = stream.set_nodelay(true);
            let new = match &mut self.services[svc] {
                Service::Relay { config, .. } => {
                    let config = config.clone();
                    self.insert(
                        move |ctx| {
                            let mut stream = stream;
                            ctx.registry.register(
                                &mut stream,
                                ctx.token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let server = Server::new(config, ctx.now);
                            Ok(Unit::Relay(Box::new(RelayConn::new(
                                peer, svc, stream, server, ctx.now,
                            ))))
                        },
                        now,
                    )
                }
                Service::TcpForward { chain, target } => {
                    let target = *target;
                    let plan = match chain.plan(now, Transport::Tcp, &target.as_address()) {
                        Ok(p) => p,
                        Err(e) => {
                            log::info!("tcp forward {peer} -> {target}: {e}");
                            continue;
                        }
                    };
                    self.insert(
                        move |ctx| {
                            let mut conn = FwdConn::new(peer, svc, stream, plan, target, ctx)?;
                            ctx.registry.register(
                                conn.local_mut(),
                                ctx.token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            Ok(Unit::Forward(Box::new(conn)))
                        },
                        now,
                    )
                }
                Service::Entry {
                    kind, dial_timeout, ..
                } => {
                    let (kind, dial_timeout) = (*kind, *dial_timeout);
                    self.insert(
                        move |ctx| {
                            let mut conn =
                                EntryConn::new(peer, svc, stream, kind, dial_timeout, ctx.now);
                            ctx.registry.register(
                                conn.local_mut(),
                                ctx.token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            Ok(Unit::Entry(Box::new(conn)))
                        },
                        now,
                    )
                }
                Service::UdpForward { .. } | Service::Remote { .. } => None,
            };
            match (new, admitted) {
                (Some(k), Some(a)) => {
                    if let Some(slot) = self.units.get_mut(k) {
                        slot.admitted = Some((svc, a.id));
                    }
                    self.handshaking.insert((svc, a.id), k);
                }
                (None, Some(a)) => {
                    if let Some(adm) = self.admissions.get_mut(&svc) {
                        adm.closed(a.id);
                    }
                }
                _ => {}
            }
            if let Some(k) = new {
                self.dispatch(k, now, Why::Ready);
            }
        }
        self.requeue(key);
    }

    fn udp_readable(&mut self, key: usize, svc: usize, now: Instant) {
        let mut dgram = std::mem::take(&mut self.dgram);
        let mut budget = ACCEPT_BUDGET;
        while let Some(Service::UdpForward { socket, .. }) = self.services.get(svc) {
            if budget == 0 {
                self.requeue(key);
                break;
            }
            budget -= 1;
            let (n, peer) = match socket.recv_from(&mut dgram) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors surface here on some systems; the socket stays usable.
                    log::debug!("udp forward: {e}");
                    continue;
                }
            };
            let key = self.session_for(svc, peer, now);
            if let Some(key) = key {
                if let Some(Slot {
                    unit: Unit::Session { session, .. },
                    ..
                }) = self.units.get_mut(key)
                {
                    session.queue(&dgram[..n], now);
                }
                self.dispatch(key, now, Why::Ready);
            }
        }
        self.dgram = dgram;
    }

    fn session_for(&mut self, svc: usize, peer: SocketAddr, now: Instant) -> Option<usize> {
        let Some(Service::UdpForward {
            chain,
            target,
            keepalive,
            ttl,
            socket,
            sessions,
        }) = self.services.get_mut(svc)
        else {
            return None;
        };
        if let Some(&(key, serial)) = sessions.get(&peer) {
            if self.units.get(key).is_some_and(|s| s.serial == serial) {
                return Some(key);
            }
            sessions.remove(&peer);
        }
        let plan = match chain.plan(now, Transport::Udp, &target.as_address()) {
            Ok(p) => p,
            Err(e) => {
                log::info!("udp forward {peer} -> {target}: {e}");
                return None;
            }
        };
        let (target, keepalive, ttl, socket) = (*target, *keepalive, *ttl, socket.clone());
        let key = self.insert(
            move |ctx| {
                // The connect registers the stream under this unit's token.
                let session = UdpSession::new(peer, socket, plan, target, keepalive, ttl, ctx)?;
                Ok(Unit::Session {
                    svc,
                    session: Box::new(session),
                })
            },
            now,
        )?;
        let serial = self.units.get(key).map(|s| s.serial)?;
        if let Some(Service::UdpForward { sessions, .. }) = self.services.get_mut(svc) {
            sessions.insert(peer, (key, serial));
        }
        Some(key)
    }

    /// True once a [`StopHandle`] asked the loop to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.flag.load(Ordering::SeqCst)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.units.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.remove(k);
        }
    }
}

enum Why {
    Ready,
    Timeout,
    Resolved(io::Result<Vec<SocketAddr>>),
}
