//! The plan on relay-mio's event loop.
//!
//! Runs relay services (proxy and forwarding mode, directly or through a chain) and local
//! TCP/UDP port forwarding through relay chains on one hand-rolled mio loop; SIGINT and SIGTERM stop it cleanly. Handlers this
//! runtime does not run yet are refused up front with a one-line error naming them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use relay_core::auth::Credentials;
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::{NodeSet, Strategy};
use relay_core::server::ServerConfig;
use relay_core::target::Target;
use relay_mio::EventLoop;

use crate::config::resolve::{
    ChainPlan, ForwardPlan, HandlerPlan, ListenerPlan, Plan, RelayHandlerOptions, RelayMode,
    SelectorPlan, ServicePlan, Strategy as PlanStrategy,
};
use crate::run::RunError;
use crate::url::HostPort;

/// Runs `plan` on a mio event loop until SIGINT or SIGTERM.
pub fn run(plan: &Plan) -> Result<(), RunError> {
    let mut event_loop =
        EventLoop::new().map_err(|e| RunError(format!("mio runtime: cannot start: {e}")))?;
    for service in &plan.services {
        add_service(&mut event_loop, service)?;
    }
    let stop = event_loop.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| RunError(format!("mio runtime: cannot watch signals: {e}")))?;
    let signals_handle = signals.handle();
    let watcher = std::thread::Builder::new()
        .name("relay-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("signal {signal}: stopping");
                stop.stop();
            }
        })
        .map_err(|e| RunError(format!("mio runtime: cannot watch signals: {e}")))?;
    let result = event_loop.run();
    signals_handle.close();
    let _ = watcher.join();
    result.map_err(|e| RunError(format!("mio runtime: {e}")))
}

fn handler_name(handler: &HandlerPlan) -> &'static str {
    match handler {
        HandlerPlan::Relay(_) => "relay",
        HandlerPlan::Tcp(_) => "tcp",
        HandlerPlan::Udp(_) => "udp",
        HandlerPlan::Rtcp => "rtcp",
        HandlerPlan::Rudp => "rudp",
        HandlerPlan::Socks5 => "socks5",
        HandlerPlan::Http => "http",
        HandlerPlan::Auto => "auto",
    }
}

fn unsupported(service: &ServicePlan, what: &str) -> RunError {
    RunError(format!(
        "service {}: {what} is not run by the mio runtime yet",
        service.name
    ))
}

fn add_service(event_loop: &mut EventLoop, service: &ServicePlan) -> Result<(), RunError> {
    let fail = |e: std::io::Error| {
        RunError(format!(
            "service {}: listen on {}: {e}",
            service.name,
            host_port(&service.listen)
        ))
    };
    match (&service.listener, &service.handler) {
        (ListenerPlan::Tcp, HandlerPlan::Relay(options)) => {
            let listener = std::net::TcpListener::bind(listen_addr(service)?).map_err(fail)?;
            let config = relay_config(service, options);
            let forward = match (options.mode, &service.forward) {
                (RelayMode::Forward, Some(f)) => Some(forward_set(service, f)?),
                _ => None,
            };
            log::info!(
                "service {}: relay on {} (mio)",
                service.name,
                host_port(&service.listen)
            );
            match &service.chain {
                Some(chain) => {
                    let chain = chain_of(service, chain)?;
                    event_loop.add_relay_server_chained(listener, Arc::new(config), forward, chain)
                }
                None => event_loop.add_relay_server(listener, Arc::new(config), forward),
            }
            .map_err(fail)
        }
        (ListenerPlan::Tcp, HandlerPlan::Tcp(_)) => {
            let (chain, target) = chain_and_target(service)?;
            let listener = std::net::TcpListener::bind(listen_addr(service)?).map_err(fail)?;
            log::info!(
                "service {}: tcp forward {} -> {target} (mio)",
                service.name,
                host_port(&service.listen)
            );
            event_loop
                .add_tcp_forward(listener, chain, target)
                .map_err(fail)
        }
        (ListenerPlan::Udp(options), HandlerPlan::Udp(_)) => {
            let (chain, target) = chain_and_target(service)?;
            let socket = std::net::UdpSocket::bind(listen_addr(service)?).map_err(fail)?;
            log::info!(
                "service {}: udp forward {} -> {target} (mio)",
                service.name,
                host_port(&service.listen)
            );
            event_loop
                .add_udp_forward(socket, chain, target, options.keepalive, options.ttl)
                .map_err(fail)
        }
        (_, handler) => Err(unsupported(
            service,
            &format!("the {} handler", handler_name(handler)),
        )),
    }
}

fn relay_config(service: &ServicePlan, options: &RelayHandlerOptions) -> ServerConfig {
    let auth: Option<Arc<dyn relay_core::auth::Authenticator + Send + Sync>> =
        if options.users.is_empty() {
            None
        } else {
            let mut credentials = Credentials::new();
            for user in &options.users {
                credentials.insert(&user.username, &user.password);
            }
            Some(Arc::new(credentials))
        };
    ServerConfig {
        read_timeout: options.read_timeout,
        dial_timeout: service.dial_timeout,
        nodelay: options.nodelay,
        bind: options.bind,
        forward: options.mode == RelayMode::Forward,
        auth,
    }
}

fn host_port(hp: &HostPort) -> String {
    format!("{}:{}", hp.host, hp.port)
}

/// The listen address: an empty host means every IPv4 interface.
fn listen_addr(service: &ServicePlan) -> Result<SocketAddr, RunError> {
    let hp = &service.listen;
    if hp.host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), hp.port));
    }
    resolve(hp).map_err(|e| RunError(format!("service {}: {e}", service.name)))
}

fn resolve(hp: &HostPort) -> Result<SocketAddr, String> {
    let host = if hp.host.is_empty() {
        "127.0.0.1"
    } else {
        hp.hostname()
    };
    (host, hp.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", host_port(hp)))?
        .next()
        .ok_or_else(|| format!("{}: resolved to no address", host_port(hp)))
}

fn target_of(hp: &HostPort) -> Result<Target, String> {
    let text = host_port(hp);
    relay_core::Address::parse(&text)
        .map(|a| Target::from_address(&a))
        .map_err(|e| format!("target {text}: {e:?}"))
}

fn strategy(selector: &SelectorPlan) -> Strategy {
    match selector.strategy {
        PlanStrategy::RoundRobin => Strategy::RoundRobin,
        PlanStrategy::Fifo => Strategy::Fifo,
        PlanStrategy::Random => {
            let seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1;
            Strategy::Random(seed)
        }
        PlanStrategy::Hash => {
            log::warn!("selector strategy \"hash\" is not supported: using round-robin");
            Strategy::RoundRobin
        }
    }
}

fn forward_set(service: &ServicePlan, plan: &ForwardPlan) -> Result<NodeSet<Target>, RunError> {
    let targets = plan
        .targets
        .iter()
        .map(|t| target_of(&t.addr))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RunError(format!("service {}: {e}", service.name)))?;
    Ok(NodeSet::new(
        targets,
        strategy(&plan.selector),
        plan.selector.max_fails,
        plan.selector.fail_timeout,
    ))
}

fn chain_of(service: &ServicePlan, plan: &ChainPlan) -> Result<Chain, RunError> {
    let err = |e: String| {
        RunError(format!(
            "service {}: chain {}: {e}",
            service.name, plan.name
        ))
    };
    let mut hops = Vec::with_capacity(plan.hops.len());
    for hop in &plan.hops {
        let mut nodes = Vec::with_capacity(hop.nodes.len());
        for node in &hop.nodes {
            let mut n = Node::new(resolve(&node.addr).map_err(err)?);
            n.credentials = node.connector.auth.as_ref().map(|u| {
                (
                    u.username.clone().into_bytes(),
                    u.password.clone().into_bytes(),
                )
            });
            n.nodelay = node.connector.nodelay;
            nodes.push(n);
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

fn chain_and_target(service: &ServicePlan) -> Result<(Chain, Target), RunError> {
    let Some(chain) = &service.chain else {
        return Err(unsupported(service, "forwarding without a relay chain"));
    };
    let targets = service.forward.as_ref().map_or(&[][..], |f| &f.targets[..]);
    if targets.len() > 1 {
        log::warn!(
            "service {}: the mio runtime forwards to the first target only",
            service.name
        );
    }
    // Without a target, GOST's forward handler asks for ":0" and a forwarding relay server
    // picks its own target (client.md §9.3).
    let target = match targets.first() {
        Some(t) => {
            target_of(&t.addr).map_err(|e| RunError(format!("service {}: {e}", service.name)))?
        }
        None => Target {
            host: relay_core::target::TargetHost::Local,
            port: 0,
        },
    };
    Ok((chain_of(service, chain)?, target))
}
