//! Running a resolved [`Plan`] on one of the two runtimes, and the conversions from the plan's
//! types to the core's that both runtimes share.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use relay_core::auth::Credentials;
use relay_core::policy::Policy;
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::{NodeSet, Strategy};
use relay_core::server::ServerConfig;
use relay_core::target::Target;

use crate::config::resolve::{
    self, ChainPlan, ForwardPlan, Plan, RelayHandlerOptions, RelayMode, SelectorPlan, ServicePlan,
};
use crate::flags::Runtime;
use crate::run::RunError;
use crate::url::HostPort;

pub mod channels;
pub mod mio;
pub mod smol;

/// Runs `plan` on `runtime` until it stops.
pub fn run(plan: &Plan, runtime: Runtime) -> Result<(), RunError> {
    for service in &plan.services {
        if matches!(&service.handler, resolve::HandlerPlan::Relay(r) if r.users.is_empty())
            && !listen_addr(&service.listen).ip().is_loopback()
        {
            log::warn!(
                "{}: relay service on {} accepts anyone: no authentication is configured",
                service.name,
                listen_addr(&service.listen)
            );
        }
    }
    if runtime == Runtime::Mio {
        for service in &plan.services {
            let node_channels = service
                .chain
                .iter()
                .flat_map(|c| &c.hops)
                .flat_map(|h| &h.nodes);
            let channel = service
                .listener
                .channel()
                .or_else(|| node_channels.filter_map(|n| n.dialer.channel()).next());
            if let Some(ch) = channel {
                return Err(RunError(format!(
                    "{}: channel {ch} is not supported on the mio runtime (use -runtime smol)",
                    service.name
                )));
            }
        }
    }
    match runtime {
        Runtime::Smol => smol::run(plan),
        Runtime::Mio => mio::run(plan),
    }
}

/// The address to listen on: an empty host means every IPv4 interface.
pub fn listen_addr(hp: &HostPort) -> SocketAddr {
    let host = hp.hostname();
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, hp.port),
        Err(_) if host.is_empty() => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), hp.port),
        Err(_) => (host, hp.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), hp.port)),
    }
}

/// A dial target from configuration text (`:22` is this host, as in GOST).
pub fn target(hp: &HostPort) -> Result<Target, RunError> {
    let text = format!("{}:{}", hp.host, hp.port);
    let addr =
        relay_core::Address::parse(&text).map_err(|e| RunError(format!("target {text}: {e}")))?;
    Ok(Target::from_address(&addr))
}

/// The forward targets of a service (empty when it has none).
pub fn targets(forward: Option<&ForwardPlan>) -> Result<NodeSet<Target>, RunError> {
    let (list, selector) = match forward {
        Some(f) => (
            f.targets
                .iter()
                .map(|t| target(&t.addr))
                .collect::<Result<Vec<_>, _>>()?,
            f.selector.clone(),
        ),
        None => (Vec::new(), SelectorPlan::default()),
    };
    Ok(NodeSet::new(
        list,
        strategy(&selector),
        selector.max_fails,
        selector.fail_timeout,
    ))
}

fn strategy(s: &SelectorPlan) -> Strategy {
    match s.strategy {
        resolve::Strategy::RoundRobin | resolve::Strategy::Hash => Strategy::RoundRobin,
        resolve::Strategy::Random => {
            Strategy::Random(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64)
        }
        resolve::Strategy::Fifo => Strategy::Fifo,
    }
}

/// A chain, its node addresses resolved now (an empty host is this host).
pub fn chain(plan: &ChainPlan) -> Result<Chain, RunError> {
    let mut hops = Vec::with_capacity(plan.hops.len());
    for hop in &plan.hops {
        let mut nodes = Vec::with_capacity(hop.nodes.len());
        for n in &hop.nodes {
            let t = target(&n.addr)?;
            let addr = match t.dial_addr() {
                Some(a) => a,
                None => (n.addr.hostname(), n.addr.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        RunError(format!("{}: cannot resolve {}", n.name, n.addr.host))
                    })?,
            };
            nodes.push(Node {
                addr,
                credentials: n.connector.auth.as_ref().map(|u| {
                    (
                        u.username.clone().into_bytes(),
                        u.password.clone().into_bytes(),
                    )
                }),
                nodelay: n.connector.nodelay,
            });
        }
        hops.push(Hop::new(
            nodes,
            strategy(&hop.selector),
            hop.selector.max_fails,
            hop.selector.fail_timeout,
        ));
    }
    Ok(Chain::new(hops))
}

/// The core's server configuration for a relay handler of `service`.
pub fn server_config(opts: &RelayHandlerOptions, service: &ServicePlan) -> ServerConfig {
    let auth = (!opts.users.is_empty()).then(|| {
        let mut creds = Credentials::new();
        for u in &opts.users {
            creds.insert(&u.username, &u.password);
        }
        Arc::new(creds) as Arc<dyn relay_core::auth::Authenticator + Send + Sync>
    });
    ServerConfig {
        read_timeout: opts.read_timeout,
        dial_timeout: service.dial_timeout,
        nodelay: opts.nodelay,
        bind: opts.bind,
        forward: opts.mode == RelayMode::Forward,
        auth,
        policy: (service.policy != Policy::default()).then(|| Arc::new(service.policy.clone())),
    }
}
