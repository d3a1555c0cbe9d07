//! The plan on relay-mio's event loop.
//!
//! Runs relay services (proxy and forwarding mode, directly or through a chain) and local
//! TCP/UDP port forwarding through relay chains on one hand-rolled mio loop. Handlers this
//! runtime does not run yet are refused up front with a one-line error naming them.

use std::sync::Arc;

use relay_core::route::Chain;
use relay_core::target::{Target, TargetHost};
use relay_mio::EventLoop;

use super::{chain, listen_addr, server_config, target, targets};
use crate::config::resolve::{HandlerPlan, ListenerPlan, Plan, RelayMode, ServicePlan};
use crate::run::RunError;

/// Runs `plan` on a mio event loop until the process is stopped.
pub fn run(plan: &Plan) -> Result<(), RunError> {
    let mut event_loop =
        EventLoop::new().map_err(|e| RunError(format!("mio runtime: cannot start: {e}")))?;
    for service in &plan.services {
        add_service(&mut event_loop, service)?;
    }
    event_loop
        .run()
        .map_err(|e| RunError(format!("mio runtime: {e}")))
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
    let addr = listen_addr(&service.listen);
    let fail =
        |e: std::io::Error| RunError(format!("service {}: listen on {addr}: {e}", service.name));
    match (&service.listener, &service.handler) {
        (ListenerPlan::Tcp, HandlerPlan::Relay(options)) => {
            let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
            let config = Arc::new(server_config(options, service));
            let forward = match options.mode {
                RelayMode::Forward => Some(targets(service.forward.as_ref())?),
                RelayMode::Proxy => None,
            };
            log::info!("{}: relay on {addr} (mio)", service.name);
            match &service.chain {
                Some(c) => {
                    event_loop.add_relay_server_chained(listener, config, forward, chain(c)?)
                }
                None => event_loop.add_relay_server(listener, config, forward),
            }
            .map_err(fail)
        }
        (ListenerPlan::Tcp, HandlerPlan::Tcp(_)) => {
            let (chain, target) = chain_and_target(service)?;
            let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
            log::info!("{}: tcp forward {addr} -> {target} (mio)", service.name);
            event_loop
                .add_tcp_forward(listener, chain, target)
                .map_err(fail)
        }
        (ListenerPlan::Udp(options), HandlerPlan::Udp(_)) => {
            let (chain, target) = chain_and_target(service)?;
            let socket = std::net::UdpSocket::bind(addr).map_err(fail)?;
            log::info!("{}: udp forward {addr} -> {target} (mio)", service.name);
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

fn chain_and_target(service: &ServicePlan) -> Result<(Chain, Target), RunError> {
    let Some(c) = &service.chain else {
        return Err(unsupported(service, "forwarding without a relay chain"));
    };
    let list = service.forward.as_ref().map_or(&[][..], |f| &f.targets[..]);
    if list.len() > 1 {
        log::warn!(
            "{}: the mio runtime forwards to the first target only",
            service.name
        );
    }
    // Without a target, GOST's forward handler asks for ":0" and a forwarding relay server
    // picks its own target (client.md §9.3).
    let t = match list.first() {
        Some(t) => target(&t.addr)?,
        None => Target {
            host: TargetHost::Local,
            port: 0,
        },
    };
    Ok((chain(c)?, t))
}
