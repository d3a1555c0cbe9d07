//! The plan on relay-mio's event loop.
//!
//! Runs relay services (proxy and forwarding mode, directly or through a chain, BIND when
//! allowed), local TCP/UDP port forwarding through relay chains, SOCKS5 / HTTP / auto entries
//! and remote forwarding (rtcp / rudp) on one hand-rolled mio loop. Handlers this runtime does
//! not run yet are refused up front with a one-line error naming them.

use std::sync::Arc;

use relay_core::route::Chain;
use relay_core::target::{Target, TargetHost};
use relay_mio::{BindOptions, EntryKind, EventLoop, RemoteOptions};

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
    event_loop.set_limits(service.limits);
    match (&service.listener, &service.handler) {
        (ListenerPlan::Tcp, HandlerPlan::Relay(options)) => {
            let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
            let config = Arc::new(server_config(options, service));
            let forward = match options.mode {
                RelayMode::Forward => Some(targets(service.forward.as_ref())?),
                RelayMode::Proxy => None,
            };
            log::info!("{}: relay on {addr} (mio)", service.name);
            let chain = service.chain.as_ref().map(chain).transpose()?;
            let bind = BindOptions {
                mux: relay_core::mux::MuxConfig::default(),
                udp_buffer_size: options.udp_buffer_size,
            };
            event_loop
                .add_relay_server_with(listener, config, forward, chain, bind)
                .map_err(fail)
        }
        (ListenerPlan::Tcp, HandlerPlan::Socks5 | HandlerPlan::Http | HandlerPlan::Auto) => {
            let kind = match &service.handler {
                HandlerPlan::Socks5 => EntryKind::Socks5,
                HandlerPlan::Http => EntryKind::Http,
                _ => EntryKind::Auto,
            };
            let chain = service.chain.as_ref().map(chain).transpose()?;
            let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
            log::info!(
                "{}: {} entry on {addr} (mio)",
                service.name,
                handler_name(&service.handler)
            );
            event_loop
                .add_entry(listener, chain, kind, service.dial_timeout)
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
        (ListenerPlan::Rtcp, HandlerPlan::Rtcp) | (ListenerPlan::Rudp(_), HandlerPlan::Rudp) => {
            let (chain, listen, target) = remote_parts(service)?;
            let mut options = RemoteOptions {
                dial_timeout: service.dial_timeout,
                ..RemoteOptions::default()
            };
            let fail = |e: std::io::Error| RunError(format!("service {}: {e}", service.name));
            if let ListenerPlan::Rudp(o) = &service.listener {
                options.udp_buffer_size = o.read_buffer_size;
                options.udp_ttl = o.ttl;
                log::info!(
                    "{}: remote udp forwarding {listen} (on the relay server) -> {target} (mio)",
                    service.name
                );
                event_loop
                    .add_rudp(chain, listen, target, options)
                    .map_err(fail)
            } else {
                log::info!(
                    "{}: remote tcp forwarding {listen} (on the relay server) -> {target} (mio)",
                    service.name
                );
                event_loop
                    .add_rtcp(chain, listen, target, options)
                    .map_err(fail)
            }
        }
        (_, handler) => Err(unsupported(
            service,
            &format!("the {} handler", handler_name(handler)),
        )),
    }
}

/// rtcp / rudp: the chain (required; its last hop receives the BIND), the address to bind on
/// the relay server, and the local target.
fn remote_parts(service: &ServicePlan) -> Result<(Chain, Target, Target), RunError> {
    let Some(c) = &service.chain else {
        return Err(RunError(format!(
            "service {}: remote forwarding needs a chain ending in a relay node",
            service.name
        )));
    };
    let listen = target(&service.listen)?;
    let forward = service
        .forward
        .as_ref()
        .and_then(|f| f.targets.first())
        .ok_or_else(|| {
            RunError(format!(
                "service {}: remote forwarding needs a target",
                service.name
            ))
        })?;
    Ok((chain(c)?, listen, target(&forward.addr)?))
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
