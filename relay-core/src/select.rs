//! Choosing a node among several (forward targets, or the nodes of a chain hop), as GOST's
//! selector does: a strategy plus a fail filter that sets a node aside after `max_fails`
//! consecutive failures, for `fail_timeout`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_core::select::{Selector, Strategy};
//! let t0 = Instant::now();
//! let mut s = Selector::new(2, Strategy::RoundRobin, 1, Duration::from_secs(10));
//! assert_eq!(s.select(t0), Some(0));
//! assert_eq!(s.select(t0), Some(1));
//! s.mark_failed(0, t0);
//! assert_eq!(s.select(t0), Some(1)); // node 0 is set aside for 10 s
//! assert_eq!(s.select(t0), Some(1));
//! assert_eq!(s.select(t0 + Duration::from_secs(10)), Some(0)); // and back
//! ```

use std::time::{Duration, Instant};

/// How a node is picked among the available ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// In turn (GOST `round`, `rr`; the default).
    RoundRobin,
    /// Pseudo-randomly, from a seed (GOST `rand`, `random`).
    Random(u64),
    /// The first available one (GOST `fifo`, `ha`): failover.
    Fifo,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    fails: u32,
    failed_at: Option<Instant>,
}

/// Picks nodes by index, with GOST's fail filter. Time comes in as arguments.
#[derive(Debug, Clone)]
pub struct Selector {
    strategy: Strategy,
    next: usize,
    max_fails: u32,
    fail_timeout: Duration,
    health: Vec<Health>,
}

impl Selector {
    /// A selector over `nodes` nodes. `max_fails` 0 disables the fail filter.
    pub fn new(
        nodes: usize,
        strategy: Strategy,
        max_fails: u32,
        fail_timeout: Duration,
    ) -> Selector {
        Selector {
            strategy,
            next: 0,
            max_fails,
            fail_timeout,
            health: vec![Health::default(); nodes],
        }
    }

    fn available(&self, i: usize, now: Instant) -> bool {
        let h = self.health[i];
        self.max_fails == 0
            || h.fails < self.max_fails
            || h.failed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.fail_timeout)
    }

    /// The index of the node to use, or `None` when every node is set aside (GOST: no target,
    /// status 5 in forwarding mode).
    pub fn select(&mut self, now: Instant) -> Option<usize> {
        let n = self.health.len();
        match n {
            0 => return None,
            // GOST's fail filter never sets aside a lone node (go-gost/x selector/filter.go).
            1 => return Some(0),
            _ => {}
        }
        let start = match self.strategy {
            Strategy::Fifo => 0,
            Strategy::RoundRobin => self.next % n,
            Strategy::Random(ref mut seed) => {
                // xorshift64*: deterministic for a given seed, plenty for spreading load.
                *seed ^= *seed >> 12;
                *seed ^= *seed << 25;
                *seed ^= *seed >> 27;
                (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
            }
        };
        let chosen = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.available(i, now))?;
        self.next = chosen + 1;
        Some(chosen)
    }

    /// Records a failure of node `i` at `now`.
    pub fn mark_failed(&mut self, i: usize, now: Instant) {
        if let Some(h) = self.health.get_mut(i) {
            h.fails = h.fails.saturating_add(1);
            h.failed_at = Some(now);
        }
    }

    /// Records a success of node `i`: its failures are forgotten.
    pub fn mark_ok(&mut self, i: usize) {
        if let Some(h) = self.health.get_mut(i) {
            *h = Health::default();
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.health.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.health.is_empty()
    }
}

/// A set of nodes with their [`Selector`]: what a hop of a chain or a forwarder holds.
#[derive(Debug, Clone)]
pub struct NodeSet<T> {
    nodes: Vec<T>,
    selector: Selector,
}

impl<T> NodeSet<T> {
    /// `nodes` picked with `strategy`, a node set aside for `fail_timeout` after `max_fails`
    /// consecutive failures (GOST's defaults: round-robin, 1, 10 s).
    pub fn new(
        nodes: Vec<T>,
        strategy: Strategy,
        max_fails: u32,
        fail_timeout: Duration,
    ) -> NodeSet<T> {
        let selector = Selector::new(nodes.len(), strategy, max_fails, fail_timeout);
        NodeSet { nodes, selector }
    }

    /// The node to use now and its index (to report the outcome with).
    pub fn pick(&mut self, now: Instant) -> Option<(usize, &T)> {
        let i = self.selector.select(now)?;
        Some((i, &self.nodes[i]))
    }

    /// Reports how using node `i` went.
    pub fn report(&mut self, i: usize, ok: bool, now: Instant) {
        if ok {
            self.selector.mark_ok(i);
        } else {
            self.selector.mark_failed(i, now);
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[T] {
        &self.nodes
    }
}
