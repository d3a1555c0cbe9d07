//! Data channels (TLS, WebSocket) from the plan to relay-smol's dialers and acceptors.

use std::path::Path;

use std::net::SocketAddr;
use std::sync::Arc;

use relay_smol::channel::quic::{self, QuicDialer};
use relay_smol::channel::{
    Acceptor, ClientTls, Dialer, Identity, ServerTls, TlsDialer, WsDialer, tls,
};
use relay_smol::route::Dialers;

use crate::config::resolve::{ChainPlan, ClientTlsPlan, DialerKind, ListenerPlan, ServerTlsPlan};
use crate::run::RunError;

fn load_identity((cert, key): &(String, String)) -> Result<Identity, RunError> {
    Identity::from_pem_files(Path::new(cert), Path::new(key)).map_err(|e| RunError(e.to_string()))
}

fn load_ca(file: &Option<String>) -> Result<Vec<tls::CertificateDer<'static>>, RunError> {
    match file {
        Some(f) => tls::load_certs(Path::new(f)).map_err(|e| RunError(e.to_string())),
        None => Ok(Vec::new()),
    }
}

/// GOST's default server certificate: `cert.pem` + `key.pem` (and `ca.pem`, which turns on
/// client verification) from the working directory when they load, else a generated one.
fn default_server_tls() -> Result<ServerTls, RunError> {
    if let Ok(identity) = Identity::from_pem_files(Path::new("cert.pem"), Path::new("key.pem")) {
        log::info!("tls: using cert.pem and key.pem of the working directory");
        let client_ca = tls::load_certs(Path::new("ca.pem")).unwrap_or_default();
        if !client_ca.is_empty() {
            log::info!("tls: ca.pem of the working directory: client certificates required");
        }
        return Ok(ServerTls {
            identity,
            client_ca,
        });
    }
    log::info!("tls: no certificate configured, using a generated self-signed one");
    Ok(ServerTls {
        identity: Identity::self_signed().map_err(|e| RunError(e.to_string()))?,
        client_ca: Vec::new(),
    })
}

fn server_tls(plan: &ServerTlsPlan) -> Result<ServerTls, RunError> {
    let mut tls = match &plan.cert {
        Some(pair) => ServerTls {
            identity: load_identity(pair)?,
            client_ca: Vec::new(),
        },
        None => default_server_tls()?,
    };
    if plan.ca_file.is_some() {
        tls.client_ca = load_ca(&plan.ca_file)?;
    }
    Ok(tls)
}

fn client_tls(plan: &ClientTlsPlan) -> Result<ClientTls, RunError> {
    Ok(ClientTls {
        secure: plan.secure,
        ca: load_ca(&plan.ca_file)?,
        identity: plan.cert.as_ref().map(load_identity).transpose()?,
    })
}

fn tls_dialer(plan: &ClientTlsPlan) -> Result<TlsDialer, RunError> {
    TlsDialer::new(&client_tls(plan)?, &plan.server_name).map_err(|e| RunError(e.to_string()))
}

/// A QUIC server endpoint on `addr` for a `quic` listener.
pub fn quic_endpoint(addr: SocketAddr, plan: &ServerTlsPlan) -> Result<quic::Endpoint, RunError> {
    quic::server_endpoint(addr, &server_tls(plan)?)
        .map_err(|e| RunError(format!("listen on {addr}/udp: {e}")))
}

/// The server side of a service's listener (plain TCP for tcp listeners).
pub fn acceptor(listener: &ListenerPlan) -> Result<Acceptor, RunError> {
    let r = match listener {
        ListenerPlan::Tls(t) => Acceptor::tls(&server_tls(t)?),
        ListenerPlan::Ws(w) => Acceptor::ws(
            Some(&w.path),
            w.tls.as_ref().map(server_tls).transpose()?.as_ref(),
        ),
        _ => Ok(Acceptor::Tcp),
    };
    r.map_err(|e| RunError(e.to_string()))
}

/// The data channel of every node of `plan`, in the chain's order.
pub fn dialers(plan: &ChainPlan) -> Result<Dialers, RunError> {
    let mut hops = Vec::with_capacity(plan.hops.len());
    for hop in &plan.hops {
        let mut nodes = Vec::with_capacity(hop.nodes.len());
        for n in &hop.nodes {
            let d = match &n.dialer {
                DialerKind::Tcp => Dialer::Tcp,
                DialerKind::Tls(t) => Dialer::Tls(tls_dialer(t)?),
                DialerKind::Ws(w) => Dialer::Ws(WsDialer::new(
                    &w.host,
                    Some(&w.path),
                    w.tls.as_ref().map(tls_dialer).transpose()?,
                )),
                DialerKind::Quic(q) => Dialer::Quic(Arc::new(
                    QuicDialer::new(&client_tls(&q.tls)?, &q.tls.server_name, q.keepalive)
                        .map_err(|e| RunError(e.to_string()))?,
                )),
            };
            nodes.push(d);
        }
        hops.push(nodes);
    }
    Ok(Dialers::new(hops))
}
