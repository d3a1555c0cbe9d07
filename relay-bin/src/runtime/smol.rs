//! The plan on smol: one task per service, all on one executor thread.

use std::sync::{Arc, Mutex};

use relay_core::auth::Credentials;
use relay_smol::ServeConfig;
use relay_smol::services::{
    self, EntryConfig, EntryKind, ForwardConfig, UdpForwardOptions, Upstream,
};
use smol::net::{TcpListener, UdpSocket};

use relay_core::route::Chain;
use relay_core::target::Target;
use relay_smol::remote::{self, RemoteOptions};

use super::{chain, channels, listen_addr, server_config, target, targets};
use crate::config::resolve::{HandlerPlan, ListenerPlan, Plan, ServicePlan};
use crate::run::RunError;

/// Runs `plan` on smol until a service fails.
pub fn run(plan: &Plan) -> Result<(), RunError> {
    smol::block_on(async {
        let mut tasks = Vec::new();
        for service in &plan.services {
            tasks.push(start(service).await?);
        }
        for task in tasks {
            task.await.map_err(|e| RunError(e.to_string()))?;
        }
        Ok(())
    })
}

fn err(service: &ServicePlan, e: impl std::fmt::Display) -> RunError {
    RunError(format!("{}: {e}", service.name))
}

async fn tcp_listener(service: &ServicePlan) -> Result<TcpListener, RunError> {
    let addr = listen_addr(&service.listen);
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| err(service, format!("listen on {addr}: {e}")))?;
    log::info!("{}: listening on {addr}", service.name);
    Ok(l)
}

fn upstream(service: &ServicePlan) -> Result<Upstream, RunError> {
    Ok(match &service.chain {
        Some(c) => {
            let dialers = channels::dialers(c)?;
            if dialers.all_tcp() {
                Upstream::Chain(Mutex::new(chain(c)?))
            } else {
                Upstream::Route(relay_smol::route::Route::new(chain(c)?, dialers))
            }
        }
        None => Upstream::Direct,
    })
}

type Task = smol::Task<std::io::Result<()>>;

/// rtcp / rudp: the chain (required; its last hop receives the BIND), the address to bind on
/// the relay server (`:2222` goes out as GOST ≤ v3.2.6 sends it), and the local target.
fn remote_parts(service: &ServicePlan) -> Result<(Mutex<Chain>, Target, Target), RunError> {
    let chain_plan = service.chain.as_ref().ok_or_else(|| {
        err(
            service,
            "remote forwarding needs a chain ending in a relay node",
        )
    })?;
    let listen = target(&service.listen)?;
    let forward = service
        .forward
        .as_ref()
        .and_then(|f| f.targets.first())
        .ok_or_else(|| err(service, "remote forwarding needs a target"))?;
    Ok((
        Mutex::new(chain(chain_plan)?),
        listen,
        target(&forward.addr)?,
    ))
}

async fn start(service: &ServicePlan) -> Result<Task, RunError> {
    let forward = || -> Result<Arc<ForwardConfig>, RunError> {
        Ok(Arc::new(ForwardConfig {
            upstream: upstream(service)?,
            targets: Mutex::new(targets(service.forward.as_ref())?),
            dial_timeout: service.dial_timeout,
            limits: service.limits,
        }))
    };
    let entry = |kind| -> Result<Arc<EntryConfig>, RunError> {
        Ok(Arc::new(EntryConfig {
            upstream: upstream(service)?,
            credentials: Credentials::new(),
            kind,
            dial_timeout: service.dial_timeout,
            handshake_timeout: std::time::Duration::from_secs(15),
            limits: service.limits,
        }))
    };
    Ok(match (&service.handler, &service.listener) {
        (
            HandlerPlan::Relay(opts),
            ListenerPlan::Tcp | ListenerPlan::Tls(_) | ListenerPlan::Ws(_) | ListenerPlan::Quic(_),
        ) => {
            let config = ServeConfig {
                relay: Arc::new(server_config(opts, service)),
                mux: relay_core::mux::MuxConfig::default(),
                udp_buffer_size: opts.udp_buffer_size,
                limits: service.limits,
                forward: service
                    .forward
                    .as_ref()
                    .map(|f| targets(Some(f)))
                    .transpose()?
                    .map(Mutex::new),
            };
            if let ListenerPlan::Quic(tls) = &service.listener {
                let addr = listen_addr(&service.listen);
                let endpoint = channels::quic_endpoint(addr, tls).map_err(|e| err(service, e))?;
                log::info!("{}: listening on {addr}/udp (quic)", service.name);
                return Ok(smol::spawn(relay_smol::serve_quic(
                    endpoint,
                    Arc::new(config),
                )));
            }
            let acceptor = channels::acceptor(&service.listener).map_err(|e| err(service, e))?;
            smol::spawn(relay_smol::serve_channel(
                tcp_listener(service).await?,
                Arc::new(acceptor),
                Arc::new(config),
            ))
        }
        (HandlerPlan::Tcp(_), ListenerPlan::Tcp) => smol::spawn(services::serve_tcp_forward(
            tcp_listener(service).await?,
            forward()?,
        )),
        (HandlerPlan::Udp(_), ListenerPlan::Udp(o)) => {
            let addr = listen_addr(&service.listen);
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|e| err(service, format!("listen on {addr}/udp: {e}")))?;
            log::info!("{}: listening on {addr}/udp", service.name);
            let options = UdpForwardOptions {
                keepalive: o.keepalive,
                ttl: o.ttl,
                read_buffer_size: o.read_buffer_size,
                queue: o.read_queue_size,
            };
            smol::spawn(services::serve_udp_forward(socket, forward()?, options))
        }
        (HandlerPlan::Rtcp, ListenerPlan::Rtcp) => {
            let (chain, listen, target) = remote_parts(service)?;
            let options = RemoteOptions {
                dial_timeout: service.dial_timeout,
                ..RemoteOptions::default()
            };
            log::info!(
                "{}: remote tcp forwarding {listen} (on the relay server) -> {target}",
                service.name
            );
            smol::spawn(async move {
                remote::serve_rtcp(&chain, &listen.as_address(), &target, &options).await
            })
        }
        (HandlerPlan::Rudp, ListenerPlan::Rudp(o)) => {
            let (chain, listen, target) = remote_parts(service)?;
            let options = RemoteOptions {
                dial_timeout: service.dial_timeout,
                udp_buffer_size: o.read_buffer_size,
                udp_ttl: o.ttl,
                ..RemoteOptions::default()
            };
            log::info!(
                "{}: remote udp forwarding {listen} (on the relay server) -> {target}",
                service.name
            );
            smol::spawn(async move {
                remote::serve_rudp(&chain, &listen.as_address(), &target, &options).await
            })
        }
        (HandlerPlan::Socks5, ListenerPlan::Tcp) => smol::spawn(services::serve_entry(
            tcp_listener(service).await?,
            entry(EntryKind::Socks5)?,
        )),
        (HandlerPlan::Http, ListenerPlan::Tcp) => smol::spawn(services::serve_entry(
            tcp_listener(service).await?,
            entry(EntryKind::Http)?,
        )),
        (HandlerPlan::Auto, ListenerPlan::Tcp) => smol::spawn(services::serve_entry(
            tcp_listener(service).await?,
            entry(EntryKind::Auto)?,
        )),
        (handler, listener) => {
            return Err(err(
                service,
                format!(
                    "handler {handler:?} on listener {listener:?} is not supported by this build yet"
                ),
            ));
        }
    })
}
