//! Admission control for a listening service: how many connections it holds, how many may be
//! mid-handshake, and how fast one source may connect. Overload refuses new work cleanly and
//! counts it; tunnels already running are never touched.
//!
//! Handshakes are bounded without letting slow clients lock others out: when the handshake
//! table is full, a new connection evicts the *oldest* unfinished handshake (a slowloris client
//! trickling bytes is always the oldest), so a client that completes its request promptly always
//! gets in.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use std::time::Instant;
//! use relay_core::admission::{Admission, Admitted, Limits, Refusal};
//!
//! let now = Instant::now();
//! let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
//! let mut adm = Admission::new(Limits { max_connections: 3, max_handshakes: 2, ..Limits::default() });
//! let Admitted { id: a, evict: None } = adm.admit(ip, now).unwrap() else { panic!() };
//! let Admitted { id: b, evict: None } = adm.admit(ip, now).unwrap() else { panic!() };
//! // The handshake table is full: the newcomer evicts the oldest handshake.
//! let c = adm.admit(ip, now).unwrap();
//! assert_eq!(c.evict, Some(a));
//! adm.closed(a);
//! adm.handshake_done(b); // b is now a tunnel
//! adm.admit(ip, now).unwrap();
//! assert_eq!(adm.admit(ip, now), Err(Refusal::TooManyConnections));
//! assert_eq!(adm.stats().refused_connections, 1);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limits of one service. Defaults are generous for an edge box and documented in
/// `docs/limits.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, handshaking or tunnelling (default 8192).
    pub max_connections: usize,
    /// Connections still in their handshake (default 1024); beyond it the oldest is evicted.
    pub max_handshakes: usize,
    /// New connections per source address per `rate_window` (default 0: unlimited).
    pub rate_per_source: u32,
    /// The window of `rate_per_source` (default 1 s).
    pub rate_window: Duration,
    /// Sources tracked by the rate limiter at once (default 4096): bounds its memory.
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 8192,
            max_handshakes: 1024,
            rate_per_source: 0,
            rate_window: Duration::from_secs(1),
            max_sources: 4096,
        }
    }
}

/// Why a connection was not admitted (close it without a response, as GOST does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The service holds `max_connections` already.
    TooManyConnections,
    /// The source connected more than `rate_per_source` times in the window.
    RateLimited,
}

/// An admitted connection: its id, and an older handshake to close to make room, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Report this id to [`Admission::handshake_done`] and [`Admission::closed`].
    pub id: u64,
    /// Close this connection now: it was the oldest unfinished handshake.
    pub evict: Option<u64>,
}

/// Counters of what admission refused or evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Connections held now.
    pub connections: usize,
    /// Of which still handshaking.
    pub handshakes: usize,
    /// Refused for `max_connections`.
    pub refused_connections: u64,
    /// Refused by the per-source rate.
    pub rate_limited: u64,
    /// Handshakes closed to make room for newer ones.
    pub evicted_handshakes: u64,
    /// Sources the rate limiter tracks now (at most `max_sources`).
    pub sources: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// The admission state of one service. Time comes in as arguments.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    next_id: u64,
    connections: usize,
    /// Unfinished handshakes by id; ids grow with time, so the first is the oldest.
    handshakes: BTreeSet<u64>,
    sources: HashMap<IpAddr, Window>,
    stats: AdmissionStats,
}

impl Admission {
    /// A service with these limits.
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            next_id: 0,
            connections: 0,
            handshakes: BTreeSet::new(),
            sources: HashMap::new(),
            stats: AdmissionStats::default(),
        }
    }

    /// A connection from `source` arrived at `now`.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        if self.limits.rate_per_source > 0 && !self.rate_ok(source, now) {
            self.stats.rate_limited += 1;
            return Err(Refusal::RateLimited);
        }
        if self.connections >= self.limits.max_connections {
            self.stats.refused_connections += 1;
            return Err(Refusal::TooManyConnections);
        }
        let evict = if self.handshakes.len() >= self.limits.max_handshakes.max(1) {
            let oldest = self.handshakes.pop_first();
            self.stats.evicted_handshakes += u64::from(oldest.is_some());
            oldest
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.connections += 1;
        self.handshakes.insert(id);
        Ok(Admitted { id, evict })
    }

    fn rate_ok(&mut self, source: IpAddr, now: Instant) -> bool {
        let window = self.limits.rate_window;
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            self.sources
                .retain(|_, w| now.saturating_duration_since(w.start) < window);
            if self.sources.len() >= self.limits.max_sources {
                // Still full of active sources: refuse newcomers rather than grow.
                return false;
            }
        }
        let w = self.sources.entry(source).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count += 1;
        w.count <= self.limits.rate_per_source
    }

    /// Connection `id` finished its handshake (it is a tunnel now, or about to close).
    pub fn handshake_done(&mut self, id: u64) {
        self.handshakes.remove(&id);
    }

    /// Connection `id` is closed (whatever its state). Unknown ids are ignored.
    pub fn closed(&mut self, id: u64) {
        self.handshakes.remove(&id);
        if id < self.next_id && self.connections > 0 {
            self.connections -= 1;
        }
    }

    /// What admission holds and refused so far.
    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            connections: self.connections,
            handshakes: self.handshakes.len(),
            sources: self.sources.len(),
            ..self.stats
        }
    }
}
