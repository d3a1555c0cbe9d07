//! Chains of relay nodes, as GOST routes through them: dial the first hop's node, ask each node
//! in turn for a TCP CONNECT to the next hop's node, and ask the last one for the target.
//!
//! A [`Chain`] holds hops of alternative nodes with their selectors; [`Chain::plan`] picks one
//! node per hop and builds each hop's [`Client`], whose requests go out in order and whose
//! responses come back in the same order (each server strips its own layer). The adapters only
//! connect to the first node and move bytes.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_core::route::{Chain, Hop, Node};
//! use relay_core::select::Strategy;
//! use relay_core::server::Transport;
//! use relay_core::Address;
//!
//! let node = |a: &str| Node::new(a.parse().unwrap());
//! let mut chain = Chain::new(vec![
//!     Hop::new(vec![node("127.0.0.1:8420")], Strategy::RoundRobin, 1, Duration::from_secs(10)),
//!     Hop::new(vec![node("127.0.0.1:8421")], Strategy::RoundRobin, 1, Duration::from_secs(10)),
//! ]);
//! let plan = chain.plan(Instant::now(), Transport::Tcp, &Address::parse(":22").unwrap()).unwrap();
//! assert_eq!(plan.first_hop.to_string(), "127.0.0.1:8420");
//! assert_eq!(plan.clients.len(), 2);
//! // First hop: CONNECT to the second node; second hop: CONNECT to ":22".
//! assert_eq!(plan.clients[0].request(), &[1, 1, 0, 10, 2, 0, 7, 1, 127, 0, 0, 1, 0x20, 0xe5]);
//! assert_eq!(plan.clients[1].request(), &[1, 1, 0, 7, 2, 0, 4, 3, 0, 0, 22]);
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::addr::Address;
use crate::client::Client;
use crate::codec::EncodeError;
use crate::select::{NodeSet, Strategy};
use crate::server::Transport;

/// One relay server a hop can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where it listens.
    pub addr: SocketAddr,
    /// User name and password for it.
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
    /// Its connector's `nodelay`.
    pub nodelay: bool,
}

impl Node {
    /// A node without credentials, `nodelay` off.
    pub fn new(addr: SocketAddr) -> Node {
        Node {
            addr,
            credentials: None,
            nodelay: false,
        }
    }

    fn credentials(&self) -> Option<(&[u8], &[u8])> {
        self.credentials.as_ref().map(|(u, p)| (&u[..], &p[..]))
    }
}

/// A hop: alternative nodes and how one is picked.
#[derive(Debug, Clone)]
pub struct Hop {
    nodes: NodeSet<Node>,
}

impl Hop {
    /// A hop over `nodes` (GOST's defaults: round-robin, 1 failure, 10 s).
    pub fn new(
        nodes: Vec<Node>,
        strategy: Strategy,
        max_fails: u32,
        fail_timeout: Duration,
    ) -> Hop {
        Hop {
            nodes: NodeSet::new(nodes, strategy, max_fails, fail_timeout),
        }
    }
}

/// Hops in dial order.
#[derive(Debug, Clone)]
pub struct Chain {
    hops: Vec<Hop>,
}

/// Why a route could not be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The chain has no hop.
    Empty,
    /// Every node of a hop is set aside after failures.
    NoNode {
        /// Which hop.
        hop: usize,
    },
    /// A request could not be encoded (over-long credentials or domain).
    Encode(EncodeError),
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::Empty => f.write_str("the chain has no hop"),
            RouteError::NoNode { hop } => write!(f, "no node available in hop {hop}"),
            RouteError::Encode(e) => write!(f, "cannot build relay request: {e}"),
        }
    }
}

impl std::error::Error for RouteError {}

/// One way through a chain, decided at one instant.
#[derive(Debug)]
pub struct RoutePlan {
    /// The node to connect to.
    pub first_hop: SocketAddr,
    /// One client per hop, in order: write their requests in this order, read their responses
    /// in this order.
    pub clients: Vec<Client>,
    /// The node index picked in each hop, to report the outcome with [`Chain::report`].
    pub picks: Vec<usize>,
}

impl Chain {
    /// A chain of `hops`.
    pub fn new(hops: Vec<Hop>) -> Chain {
        Chain { hops }
    }

    /// Picks a node per hop and builds the requests that reach `target` over `transport`.
    /// Inner hops ask for TCP; the last asks for `transport`.
    pub fn plan(
        &mut self,
        now: Instant,
        transport: Transport,
        target: &Address<'_>,
    ) -> Result<RoutePlan, RouteError> {
        if self.hops.is_empty() {
            return Err(RouteError::Empty);
        }
        let mut picks = Vec::with_capacity(self.hops.len());
        let mut nodes = Vec::with_capacity(self.hops.len());
        for (hop, h) in self.hops.iter_mut().enumerate() {
            let (i, node) = h.nodes.pick(now).ok_or(RouteError::NoNode { hop })?;
            picks.push(i);
            nodes.push(node.clone());
        }
        let mut clients = Vec::with_capacity(nodes.len());
        for (k, node) in nodes.iter().enumerate() {
            let client = match nodes.get(k + 1) {
                Some(next) => Client::connect(
                    Transport::Tcp,
                    &Address::from_socket(next.addr),
                    node.credentials(),
                    node.nodelay,
                ),
                None => Client::connect(transport, target, node.credentials(), node.nodelay),
            };
            clients.push(client.map_err(RouteError::Encode)?);
        }
        Ok(RoutePlan {
            first_hop: nodes[0].addr,
            clients,
            picks,
        })
    }

    /// Builds the BIND (or UDP BIND) request for the last hop, after CONNECTs through the
    /// others, for remote forwarding.
    pub fn plan_bind(
        &mut self,
        now: Instant,
        transport: Transport,
        listen: &Address<'_>,
    ) -> Result<RoutePlan, RouteError> {
        let mut plan = self.plan(now, Transport::Tcp, listen)?;
        let last = self.hops.len() - 1;
        let node = &self.hops[last].nodes.nodes()[plan.picks[last]];
        let bind =
            Client::bind(transport, listen, node.credentials()).map_err(RouteError::Encode)?;
        if let Some(slot) = plan.clients.last_mut() {
            *slot = bind;
        }
        Ok(plan)
    }

    /// Reports how reaching hop `hop`'s node of `plan` went (feeds that hop's fail filter).
    pub fn report(&mut self, plan: &RoutePlan, hop: usize, ok: bool, now: Instant) {
        if let (Some(h), Some(&i)) = (self.hops.get_mut(hop), plan.picks.get(hop)) {
            h.nodes.report(i, ok, now);
        }
    }
}
