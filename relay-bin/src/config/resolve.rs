//! Validating a [`Config`] and resolving it into a runtime-ready [`Plan`]:
//! defaults applied, metadata typed, names looked up, unsupported kinds
//! rejected with one-line errors.

use std::time::Duration;

use super::ConfigError;
use super::metadata::{
    MetaEntry, MetaError, Metadata, entry_bool, entry_duration, entry_int, entry_string,
};
use super::model::*;
use crate::url::{HostPort, parse_addr};

/// Everything the runtime needs to start, one entry per service.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The services in configuration order.
    pub services: Vec<ServicePlan>,
}

/// One listening service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// Service name (`service-0`, …).
    pub name: String,
    /// Listen address; an empty host means all interfaces. For rtcp/rudp it is
    /// the port opened on the remote relay server.
    pub listen: HostPort,
    /// How connections / datagrams are accepted.
    pub listener: ListenerPlan,
    /// What is done with each accepted connection.
    pub handler: HandlerPlan,
    /// Fixed targets (`forwarder.nodes`), if any.
    pub forward: Option<ForwardPlan>,
    /// The chain outbound connections go through (`handler.chain`, or
    /// `listener.chain` for rtcp/rudp), if any.
    pub chain: Option<ChainPlan>,
    /// Per-attempt dial timeout (service metadata `dialTimeout`, default 15 s).
    pub dial_timeout: Duration,
    /// Extra route attempts (`handler.retries`, default 0).
    pub retries: u32,
    /// Target rules of a relay service: the service's `bypass` (its matchers refused with
    /// status 3, or the only ones allowed when `reverse`), plus the SSRF guard (handler
    /// metadata `blockPrivate`).
    pub policy: relay_core::policy::Policy,
    /// Admission limits (service metadata `maxConns`, `maxHandshakes`, `rateLimit` per source
    /// per second; `docs/limits.md`).
    pub limits: relay_core::admission::Limits,
}

/// Listener kinds this build can run.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerPlan {
    /// Plain TCP accept.
    Tcp,
    /// Local UDP port with per-peer sessions.
    Udp(UdpListenerOptions),
    /// Remote TCP port bound on the relay server through the chain (BIND).
    Rtcp,
    /// Remote UDP port bound on the relay server through the chain (UDP BIND).
    Rudp(UdpListenerOptions),
    /// TLS over TCP (`relay+tls`).
    Tls(ServerTlsPlan),
    /// WebSocket over TCP (`relay+ws`), or over TLS (`relay+wss`, `tls` set).
    Ws(WsListenerPlan),
    /// QUIC over UDP (`relay+quic`): one relay connection per stream.
    Quic(ServerTlsPlan),
}

impl ListenerPlan {
    /// The data channel's name when it is not plain TCP/UDP (`tls`, `ws`, `wss`).
    pub fn channel(&self) -> Option<&'static str> {
        match self {
            ListenerPlan::Tls(_) => Some("tls"),
            ListenerPlan::Ws(w) if w.tls.is_some() => Some("wss"),
            ListenerPlan::Ws(_) => Some("ws"),
            ListenerPlan::Quic(_) => Some("quic"),
            _ => None,
        }
    }
}

/// Server TLS settings (`listener.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsPlan {
    /// `certFile` and `keyFile`; without them a self-signed certificate is generated at start,
    /// as GOST does.
    pub cert: Option<(String, String)>,
    /// `caFile`: require client certificates issued by these CAs (mutual TLS).
    pub ca_file: Option<String>,
}

/// WebSocket listener settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsListenerPlan {
    /// `path` metadata (default `/ws`).
    pub path: String,
    /// TLS under the WebSocket (`wss`).
    pub tls: Option<ServerTlsPlan>,
}

/// Options of the `udp` and `rudp` listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpListenerOptions {
    /// `keepalive`: keep a peer's session after the first reply (default false; rudp: true).
    pub keepalive: bool,
    /// `ttl` / `keepalive.ttl`: idle period of kept-alive sessions (default 5 s).
    pub ttl: Duration,
    /// `readBufferSize` / `udp.bufferSize`: max datagram size (udp 4096, rudp 8192).
    pub read_buffer_size: usize,
    /// `readQueueSize` / `recvQueueSize`: per-peer queue (udp 128, rudp 1024).
    pub read_queue_size: usize,
    /// `backlog`: pending new peers (default 128).
    pub backlog: usize,
}

/// Handler kinds this configuration layer accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerPlan {
    /// The relay server.
    Relay(RelayHandlerOptions),
    /// Local TCP port forwarding.
    Tcp(ForwardHandlerOptions),
    /// Local UDP port forwarding.
    Udp(ForwardHandlerOptions),
    /// Remote TCP port forwarding (pairs with the rtcp listener).
    Rtcp,
    /// Remote UDP port forwarding (pairs with the rudp listener).
    Rudp,
    /// SOCKS5 proxy (`socks5`, `socks`).
    Socks5,
    /// HTTP proxy.
    Http,
    /// GOST's `auto` (HTTP / SOCKS4 / SOCKS5 sniffing).
    Auto,
}

/// Whether a relay server proxies to client-chosen addresses or to its forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Connect to the address in each request.
    Proxy,
    /// Forward every request to the service's forwarder targets (server.md §7).
    Forward,
}

/// Relay handler options (server.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHandlerOptions {
    /// Proxy or forward mode (forward when the service has a forwarder).
    pub mode: RelayMode,
    /// Accepted users (`handler.auth` plus referenced `authers`); empty = no auth.
    /// A user with an empty password accepts any password.
    pub users: Vec<User>,
    /// `bind` (default false): allow BIND / UDP BIND.
    pub bind: bool,
    /// `nodelay` (default false): send the response before target data.
    pub nodelay: bool,
    /// `readTimeout` (default 15 s; 0 also means 15 s).
    pub read_timeout: Duration,
    /// `udp.bufferSize` / `udpBufferSize` (default 4096).
    pub udp_buffer_size: usize,
}

/// Options of the tcp / udp forwarding handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardHandlerOptions {
    /// `readTimeout` (default 15 s).
    pub read_timeout: Duration,
    /// `idleTimeout` (default none).
    pub idle_timeout: Option<Duration>,
}

/// A user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub username: String,
    /// Password (may be empty).
    pub password: String,
}

/// Fixed targets with their selector.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardPlan {
    /// Targets in order.
    pub targets: Vec<Target>,
    /// How a target is picked.
    pub selector: SelectorPlan,
}

/// One forward target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Name (`target-0`, …).
    pub name: String,
    /// Address; an empty host means the local host of whoever dials.
    pub addr: HostPort,
}

/// A resolved chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainPlan {
    /// Chain name.
    pub name: String,
    /// Hops in dial order.
    pub hops: Vec<HopPlan>,
}

/// One hop: a set of alternative nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct HopPlan {
    /// Hop name.
    pub name: String,
    /// Alternative nodes.
    pub nodes: Vec<NodePlan>,
    /// How a node is picked.
    pub selector: SelectorPlan,
}

/// One relay node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    /// Node name.
    pub name: String,
    /// Node address.
    pub addr: HostPort,
    /// Relay connector options.
    pub connector: RelayConnectorOptions,
    /// Data channel.
    pub dialer: DialerKind,
}

/// Relay connector options (client.md §1, §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConnectorOptions {
    /// `connector.auth`.
    pub auth: Option<User>,
    /// `nodelay` (default false).
    pub nodelay: bool,
    /// `connectTimeout` (default none).
    pub connect_timeout: Option<Duration>,
}

/// Dialers this build can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialerKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (`relay+tls`).
    Tls(ClientTlsPlan),
    /// WebSocket over TCP (`relay+ws`), or over TLS (`relay+wss`, `tls` set).
    Ws(WsDialerPlan),
    /// QUIC (`relay+quic`); only as the first hop of a chain.
    Quic(QuicDialerPlan),
}

/// QUIC dialer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicDialerPlan {
    /// TLS settings (the QUIC handshake is TLS 1.3).
    pub tls: ClientTlsPlan,
    /// Keep-alive period: `keepAlive` (default true here, false in GOST) and `ttl`
    /// (default 10 s); None when `keepAlive=false`.
    pub keepalive: Option<Duration>,
}

impl DialerKind {
    /// The data channel's name when it is not plain TCP (`tls`, `ws`, `wss`).
    pub fn channel(&self) -> Option<&'static str> {
        match self {
            DialerKind::Tcp => None,
            DialerKind::Tls(_) => Some("tls"),
            DialerKind::Ws(w) if w.tls.is_some() => Some("wss"),
            DialerKind::Ws(_) => Some("ws"),
            DialerKind::Quic(_) => Some("quic"),
        }
    }
}

/// Client TLS settings (`dialer.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsPlan {
    /// `secure`: verify the server certificate (default false: accept any, as GOST).
    pub secure: bool,
    /// `serverName` (SNI and name checked), else the node's host (`localhost` when empty).
    pub server_name: String,
    /// `caFile`: trust anchors when `secure` (else the system's roots).
    pub ca_file: Option<String>,
    /// `certFile` and `keyFile`: a client certificate for mutual TLS.
    pub cert: Option<(String, String)>,
}

/// WebSocket dialer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsDialerPlan {
    /// `host` metadata, else the node address: the `Host` header.
    pub host: String,
    /// `path` metadata (default `/ws`).
    pub path: String,
    /// TLS under the WebSocket (`wss`).
    pub tls: Option<ClientTlsPlan>,
}

/// Node / target selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorPlan {
    /// Strategy (default round-robin).
    pub strategy: Strategy,
    /// Failures before a node is skipped (default 1).
    pub max_fails: u32,
    /// How long a failed node is skipped (default 10 s).
    pub fail_timeout: Duration,
}

impl Default for SelectorPlan {
    fn default() -> Self {
        SelectorPlan {
            strategy: Strategy::RoundRobin,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// Selector strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `round`, `rr`, `roundrobin` (default).
    RoundRobin,
    /// `rand`, `random`.
    Random,
    /// `fifo`, `ha`.
    Fifo,
    /// `hash`.
    Hash,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Listener names GOST knows but this build does not run yet.
const LATER_LISTENERS: &[&str] = &[
    "mtls",
    "mws",
    "mwss",
    "kcp",
    "h2",
    "h2c",
    "grpc",
    "dtls",
    "pht",
    "phts",
    "ssh",
    "sshd",
    "otls",
    "ohttp",
    "ftcp",
    "icmp",
    "icmp6",
    "h3",
    "wt",
    "mtcp",
    "http2",
    "http3",
    "dns",
    "red",
    "redir",
    "redirect",
    "redu",
    "tun",
    "tap",
    "unix",
    "runix",
    "serial",
    "stdio",
    "tproxy",
    "obfs-http",
    "obfs-tls",
];

/// Dialer names GOST knows but this build does not run yet.
const LATER_DIALERS: &[&str] = &[
    "mtls",
    "mws",
    "mwss",
    "kcp",
    "h2",
    "h2c",
    "grpc",
    "dtls",
    "pht",
    "phts",
    "ssh",
    "sshd",
    "otls",
    "ohttp",
    "ohttps",
    "ftcp",
    "icmp",
    "icmp6",
    "h3",
    "wt",
    "mtcp",
    "http2",
    "http3",
    "utls",
    "udp",
    "unix",
    "serial",
    "virtual",
    "obfs-http",
    "obfs-tls",
];

struct Scope<'a> {
    origin: &'a Origin,
    path: String,
}

impl Scope<'_> {
    fn err(&self, sub: &str, msg: impl Into<String>) -> ConfigError {
        let path = if sub.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{sub}", self.path)
        };
        ConfigError::new(&self.origin.source, self.origin.line, path, msg)
    }

    fn meta_err(&self, md_path: &str, e: MetaError) -> ConfigError {
        let line = if e.line > 0 { e.line } else { self.origin.line };
        ConfigError::new(
            &self.origin.source,
            line,
            format!("{}.{md_path}.{}", self.path, e.key),
            e.message,
        )
    }

    fn md<T>(
        &self,
        md_path: &str,
        md: &Metadata,
        keys: &[&str],
        f: fn(&MetaEntry) -> Result<T, MetaError>,
    ) -> Result<Option<T>, ConfigError> {
        md.first(keys)
            .map(f)
            .transpose()
            .map_err(|e| self.meta_err(md_path, e))
    }
}

fn addr(scope: &Scope, sub: &str, s: &str) -> Result<HostPort, ConfigError> {
    parse_addr(s).map_err(|e| scope.err(sub, e.to_string()))
}

/// The users an `auth` object names: its own pair (when it has a user name) and its file's.
fn auth_users(scope: &Scope, sub: &str, a: &AuthConfig) -> Result<Vec<User>, ConfigError> {
    let mut users = users_file(scope, sub, &a.file)?;
    if !a.username.is_empty() {
        users.insert(0, to_user(a));
    }
    Ok(users)
}

/// GOST's users file: one `username password` pair per line, blank lines and `#` comments
/// skipped, a missing password meaning an empty one. An empty path names no file.
fn users_file(scope: &Scope, sub: &str, path: &str) -> Result<Vec<User>, ConfigError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| scope.err(sub, format!("users file {path:?}: {e}")))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            User {
                username: parts.next().unwrap_or_default().to_string(),
                password: parts.next().unwrap_or_default().to_string(),
            }
        })
        .collect())
}

fn to_user(a: &AuthConfig) -> User {
    User {
        username: a.username.clone(),
        password: a.password.clone(),
    }
}

fn non_negative(scope: &Scope, sub: &str, v: i64) -> Result<u64, ConfigError> {
    u64::try_from(v).map_err(|_| scope.err(sub, format!("must not be negative, got {v}")))
}

fn selector(scope: &Scope, sel: Option<&SelectorConfig>) -> Result<SelectorPlan, ConfigError> {
    let mut plan = SelectorPlan::default();
    let Some(sel) = sel else { return Ok(plan) };
    if let Some(s) = &sel.strategy {
        plan.strategy = match s.to_ascii_lowercase().as_str() {
            "" | "round" | "rr" | "roundrobin" => Strategy::RoundRobin,
            "rand" | "random" => Strategy::Random,
            "fifo" | "ha" => Strategy::Fifo,
            "hash" => Strategy::Hash,
            _ => return Err(scope.err("selector.strategy", format!("unsupported strategy {s:?}"))),
        };
    }
    if let Some(n) = sel.max_fails {
        plan.max_fails =
            u32::try_from(non_negative(scope, "selector.maxFails", n)?).unwrap_or(u32::MAX);
    }
    if let Some(t) = &sel.fail_timeout {
        let entry = MetaEntry {
            key: "failTimeout".into(),
            value: super::metadata::MetaValue::Str(t.clone()),
            line: 0,
        };
        plan.fail_timeout =
            entry_duration(&entry).map_err(|e| scope.err("selector.failTimeout", e.message))?;
    }
    Ok(plan)
}

/// Validate `cfg` and resolve it into a [`Plan`].
pub fn resolve(cfg: &Config) -> Result<Plan, ConfigError> {
    let mut services = Vec::new();
    for (i, svc) in cfg.services.iter().enumerate() {
        services.push(resolve_service(cfg, i, svc)?);
    }
    Ok(Plan { services })
}

fn resolve_service(
    cfg: &Config,
    index: usize,
    svc: &ServiceConfig,
) -> Result<ServicePlan, ConfigError> {
    let scope = Scope {
        origin: &svc.origin,
        path: format!("services[{index}]"),
    };
    let listen = addr(&scope, "addr", &svc.addr)?;
    let default_handler = HandlerConfig::default();
    let h = svc.handler.as_ref().unwrap_or(&default_handler);
    let default_listener = ListenerConfig::default();
    let l = svc.listener.as_ref().unwrap_or(&default_listener);
    let hkind = if h.kind.is_empty() {
        "auto"
    } else {
        h.kind.as_str()
    };
    let lkind = if l.kind.is_empty() {
        "tcp"
    } else {
        l.kind.as_str()
    };

    let listener = match lkind {
        "tcp" => ListenerPlan::Tcp,
        "rtcp" => ListenerPlan::Rtcp,
        "udp" => ListenerPlan::Udp(udp_options(&scope, &l.metadata, false)?),
        "rudp" => ListenerPlan::Rudp(udp_options(&scope, &l.metadata, true)?),
        "tls" => ListenerPlan::Tls(server_tls(&scope, l.tls.as_ref())?),
        "quic" => {
            reject_cipher_key(&scope, "listener.metadata", &l.metadata)?;
            ListenerPlan::Quic(server_tls(&scope, l.tls.as_ref())?)
        }
        "ws" | "wss" => ListenerPlan::Ws(WsListenerPlan {
            path: ws_path(&scope, "listener.metadata", &l.metadata)?,
            tls: (lkind == "wss")
                .then(|| server_tls(&scope, l.tls.as_ref()))
                .transpose()?,
        }),
        k if LATER_LISTENERS.contains(&k) => {
            return Err(scope.err(
                "listener.type",
                format!("listener {k:?} is not supported yet"),
            ));
        }
        k => return Err(scope.err("listener.type", format!("unknown listener {k:?}"))),
    };

    let forward = match &svc.forwarder {
        Some(f) if !f.nodes.is_empty() => {
            let mut targets = Vec::new();
            for (i, n) in f.nodes.iter().enumerate() {
                let sub = format!("forwarder.nodes[{i}]");
                targets.push(Target {
                    name: if n.name.is_empty() {
                        format!("target-{i}")
                    } else {
                        n.name.clone()
                    },
                    addr: addr(&scope, &format!("{sub}.addr"), &n.addr)?,
                });
            }
            let fscope = Scope {
                origin: scope.origin,
                path: format!("{}.forwarder", scope.path),
            };
            Some(ForwardPlan {
                targets,
                selector: selector(&fscope, f.selector.as_ref())?,
            })
        }
        _ => None,
    };

    let hmd = &h.metadata;
    let handler = match hkind {
        "relay" => {
            let mut users = Vec::new();
            if let Some(a) = &h.auth {
                users.extend(auth_users(&scope, "handler.auth", a)?);
            }
            let names = h.auther.iter().chain(h.authers.iter());
            for name in names {
                let auther = cfg
                    .authers
                    .iter()
                    .find(|a| &a.name == name)
                    .ok_or_else(|| {
                        scope.err("handler.authers", format!("auther {name:?} not found"))
                    })?;
                for a in &auther.auths {
                    users.extend(auth_users(&scope, "handler.authers", a)?);
                }
                users.extend(users_file(&scope, "handler.authers", &auther.file)?);
            }
            let read_timeout = scope
                .md("handler.metadata", hmd, &["readTimeout"], entry_duration)?
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT);
            let udp_buffer_size = match scope.md(
                "handler.metadata",
                hmd,
                &["udp.bufferSize", "udpBufferSize"],
                entry_int,
            )? {
                Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => 4096,
            };
            HandlerPlan::Relay(RelayHandlerOptions {
                mode: if forward.is_some() {
                    RelayMode::Forward
                } else {
                    RelayMode::Proxy
                },
                users,
                bind: scope
                    .md("handler.metadata", hmd, &["bind"], entry_bool)?
                    .unwrap_or(false),
                nodelay: scope
                    .md("handler.metadata", hmd, &["nodelay"], entry_bool)?
                    .unwrap_or(false),
                read_timeout,
                udp_buffer_size,
            })
        }
        "tcp" | "udp" => {
            let opts = ForwardHandlerOptions {
                read_timeout: scope
                    .md("handler.metadata", hmd, &["readTimeout"], entry_duration)?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_TIMEOUT),
                idle_timeout: scope
                    .md("handler.metadata", hmd, &["idleTimeout"], entry_duration)?
                    .filter(|d| !d.is_zero()),
            };
            if hkind == "tcp" {
                HandlerPlan::Tcp(opts)
            } else {
                HandlerPlan::Udp(opts)
            }
        }
        "rtcp" => HandlerPlan::Rtcp,
        "rudp" => HandlerPlan::Rudp,
        "socks5" | "socks" => HandlerPlan::Socks5,
        "http" => HandlerPlan::Http,
        "auto" => HandlerPlan::Auto,
        k => return Err(scope.err("handler.type", format!("handler {k:?} is not supported"))),
    };

    // Handler / listener pairing.
    let pair_ok = match (&handler, &listener) {
        (HandlerPlan::Rtcp, ListenerPlan::Rtcp) | (HandlerPlan::Rudp, ListenerPlan::Rudp(_)) => {
            true
        }
        (HandlerPlan::Udp(_), ListenerPlan::Udp(_)) => true,
        (HandlerPlan::Rtcp | HandlerPlan::Rudp | HandlerPlan::Udp(_), _) => false,
        (_, ListenerPlan::Tcp) => true,
        (
            HandlerPlan::Relay(_),
            ListenerPlan::Tls(_) | ListenerPlan::Ws(_) | ListenerPlan::Quic(_),
        ) => true,
        _ => false,
    };
    if !pair_ok {
        return Err(scope.err(
            "",
            format!("handler {hkind:?} cannot be used with listener {lkind:?}"),
        ));
    }
    if matches!(handler, HandlerPlan::Rtcp | HandlerPlan::Rudp) && forward.is_none() {
        return Err(scope.err(
            "forwarder",
            format!("handler {hkind:?} needs a forwarder target"),
        ));
    }

    let chain_name = if matches!(listener, ListenerPlan::Rtcp | ListenerPlan::Rudp(_)) {
        l.chain.as_ref().or(h.chain.as_ref())
    } else {
        h.chain.as_ref()
    };
    let chain = match chain_name {
        None => None,
        Some(name) => {
            let (ci, c) = cfg
                .chains
                .iter()
                .enumerate()
                .find(|(_, c)| &c.name == name)
                .ok_or_else(|| scope.err("handler.chain", format!("chain {name:?} not found")))?;
            Some(resolve_chain(ci, c)?)
        }
    };
    if matches!(handler, HandlerPlan::Tcp(_) | HandlerPlan::Udp(_))
        && forward.is_none()
        && chain.is_none()
    {
        return Err(scope.err(
            "forwarder",
            format!("handler {hkind:?} needs a forwarder target or a chain"),
        ));
    }

    let retries = match h.retries {
        Some(r) => u32::try_from(non_negative(&scope, "handler.retries", r)?).unwrap_or(u32::MAX),
        None => 0,
    };
    let dial_timeout = scope
        .md("metadata", &svc.metadata, &["dialTimeout"], entry_duration)?
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT);

    Ok(ServicePlan {
        name: svc.name.clone(),
        listen,
        listener,
        handler,
        forward,
        chain,
        dial_timeout,
        retries,
        policy: policy(cfg, &scope, svc, &h.metadata)?,
        limits: limits(&scope, &svc.metadata)?,
    })
}

/// The service's target rules: its `bypass` and the handler's `blockPrivate`.
fn policy(
    cfg: &Config,
    scope: &Scope,
    svc: &ServiceConfig,
    handler_md: &Metadata,
) -> Result<relay_core::policy::Policy, ConfigError> {
    let mut policy = relay_core::policy::Policy {
        block_internal: scope
            .md(
                "handler.metadata",
                handler_md,
                &["blockPrivate"],
                entry_bool,
            )?
            .unwrap_or(false),
        ..Default::default()
    };
    let Some(name) = svc.bypass.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(policy);
    };
    let bypass = cfg
        .bypasses
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| scope.err("bypass", format!("bypass {name:?} not found")))?;
    let rules = bypass
        .matchers
        .iter()
        .map(|m| {
            m.parse::<relay_core::policy::Rule>()
                .map_err(|e| scope.err("bypass", format!("{m:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if bypass.reverse {
        policy.allow = rules;
    } else {
        policy.deny = rules;
    }
    Ok(policy)
}

/// The service's admission limits from its metadata, GOST-style keys, defaults otherwise.
fn limits(scope: &Scope, md: &Metadata) -> Result<relay_core::admission::Limits, ConfigError> {
    let mut limits = relay_core::admission::Limits::default();
    let count = |keys: &[&str]| -> Result<Option<usize>, ConfigError> {
        Ok(scope
            .md("metadata", md, keys, entry_int)?
            .filter(|n| *n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    };
    if let Some(n) = count(&["maxConns", "maxConnections"])? {
        limits.max_connections = n;
    }
    if let Some(n) = count(&["maxHandshakes"])? {
        limits.max_handshakes = n;
    }
    if let Some(n) = count(&["rateLimit"])? {
        limits.rate_per_source = u32::try_from(n).unwrap_or(u32::MAX);
    }
    Ok(limits)
}

fn server_tls(scope: &Scope, tls: Option<&TlsConfig>) -> Result<ServerTlsPlan, ConfigError> {
    let Some(t) = tls else {
        return Ok(ServerTlsPlan::default());
    };
    Ok(ServerTlsPlan {
        cert: cert_pair(scope, "listener.tls", t)?,
        ca_file: t.ca_file.clone().filter(|f| !f.is_empty()),
    })
}

fn cert_pair(
    scope: &Scope,
    sub: &str,
    t: &TlsConfig,
) -> Result<Option<(String, String)>, ConfigError> {
    let cert = t.cert_file.as_deref().filter(|f| !f.is_empty());
    let key = t.key_file.as_deref().filter(|f| !f.is_empty());
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c.to_string(), k.to_string()))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(scope.err(sub, "certFile is set without keyFile")),
        (None, Some(_)) => Err(scope.err(sub, "keyFile is set without certFile")),
    }
}

/// GOST's `cipherKey` obfuscates QUIC packets; without it here the peers could not talk.
fn reject_cipher_key(scope: &Scope, md_path: &str, md: &Metadata) -> Result<(), ConfigError> {
    if md.get("cipherKey").is_some() {
        return Err(scope.err(md_path, "quic cipherKey is not supported yet"));
    }
    Ok(())
}

fn client_tls(
    scope: &Scope,
    tls: Option<&TlsConfig>,
    node_host: &str,
) -> Result<ClientTlsPlan, ConfigError> {
    let default = TlsConfig::default();
    let t = tls.unwrap_or(&default);
    let server_name = match t.server_name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None if node_host.is_empty() => "localhost".to_string(),
        None => node_host.to_string(),
    };
    Ok(ClientTlsPlan {
        secure: t.secure.unwrap_or(false),
        server_name,
        ca_file: t.ca_file.clone().filter(|f| !f.is_empty()),
        cert: cert_pair(scope, "dialer.tls", t)?,
    })
}

/// The default `Host` of a WebSocket dialer: the node address (`localhost:port` for `:port`).
fn ws_host(hp: &HostPort) -> String {
    if hp.host.is_empty() {
        format!("localhost:{}", hp.port)
    } else {
        hp.to_string()
    }
}

fn ws_path(scope: &Scope, md_path: &str, md: &Metadata) -> Result<String, ConfigError> {
    let path = scope
        .md(md_path, md, &["path"], entry_string)?
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/ws".to_string());
    Ok(if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    })
}

fn udp_options(
    scope: &Scope,
    md: &Metadata,
    remote: bool,
) -> Result<UdpListenerOptions, ConfigError> {
    let p = "listener.metadata";
    let size = |keys: &[&str], default: usize| -> Result<usize, ConfigError> {
        Ok(match scope.md(p, md, keys, entry_int)? {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => default,
        })
    };
    Ok(UdpListenerOptions {
        keepalive: scope
            .md(p, md, &["keepalive"], entry_bool)?
            .unwrap_or(remote),
        ttl: scope
            .md(p, md, &["ttl", "keepalive.ttl"], entry_duration)?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5)),
        read_buffer_size: size(
            &["readBufferSize", "udp.bufferSize"],
            if remote { 8192 } else { 4096 },
        )?,
        read_queue_size: size(
            &["readQueueSize", "recvQueueSize"],
            if remote { 1024 } else { 128 },
        )?,
        backlog: size(&["backlog"], 128)?,
    })
}

fn resolve_chain(index: usize, chain: &ChainConfig) -> Result<ChainPlan, ConfigError> {
    let cscope = Scope {
        origin: &chain.origin,
        path: format!("chains[{index}]"),
    };
    if chain.hops.is_empty() {
        return Err(cscope.err("hops", "a chain needs at least one hop"));
    }
    let mut hops = Vec::new();
    for (hi, hop) in chain.hops.iter().enumerate() {
        let hscope = Scope {
            origin: &chain.origin,
            path: format!("chains[{index}].hops[{hi}]"),
        };
        if hop.nodes.is_empty() {
            return Err(hscope.err("nodes", "a hop needs at least one node"));
        }
        let mut nodes = Vec::new();
        for (ni, node) in hop.nodes.iter().enumerate() {
            let s = Scope {
                origin: &chain.origin,
                path: format!("{}.nodes[{ni}]", hscope.path),
            };
            let ckind = node.connector.as_ref().map_or("", |c| c.kind.as_str());
            let ckind = if ckind.is_empty() { "http" } else { ckind };
            if ckind != "relay" {
                return Err(s.err(
                    "connector.type",
                    format!("connector {ckind:?} is not supported (only relay)"),
                ));
            }
            let node_addr = addr(&s, "addr", &node.addr)?;
            let dkind = node.dialer.as_ref().map_or("", |d| d.kind.as_str());
            let dtls = node.dialer.as_ref().and_then(|d| d.tls.as_ref());
            let default_dmd = Metadata::default();
            let dmd = node.dialer.as_ref().map_or(&default_dmd, |d| &d.metadata);
            let dialer = match if dkind.is_empty() { "tcp" } else { dkind } {
                "tcp" => DialerKind::Tcp,
                "tls" => DialerKind::Tls(client_tls(&s, dtls, node_addr.hostname())?),
                k @ ("ws" | "wss") => DialerKind::Ws(WsDialerPlan {
                    host: s
                        .md("dialer.metadata", dmd, &["host"], entry_string)?
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| ws_host(&node_addr)),
                    path: ws_path(&s, "dialer.metadata", dmd)?,
                    tls: (k == "wss")
                        .then(|| client_tls(&s, dtls, node_addr.hostname()))
                        .transpose()?,
                }),
                "quic" => {
                    if hi > 0 {
                        return Err(s.err(
                            "dialer.type",
                            "a quic node can only be in the first hop of a chain",
                        ));
                    }
                    reject_cipher_key(&s, "dialer.metadata", dmd)?;
                    let on = s
                        .md("dialer.metadata", dmd, &["keepAlive"], entry_bool)?
                        .unwrap_or(true);
                    let ttl = s
                        .md("dialer.metadata", dmd, &["ttl"], entry_duration)?
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_secs(10));
                    DialerKind::Quic(QuicDialerPlan {
                        tls: client_tls(&s, dtls, node_addr.hostname())?,
                        keepalive: on.then_some(ttl),
                    })
                }
                k if LATER_DIALERS.contains(&k) => {
                    return Err(s.err("dialer.type", format!("dialer {k:?} is not supported yet")));
                }
                k => return Err(s.err("dialer.type", format!("unknown dialer {k:?}"))),
            };
            let default_connector = ConnectorConfig::default();
            let c = node.connector.as_ref().unwrap_or(&default_connector);
            let cmd = &c.metadata;
            nodes.push(NodePlan {
                name: if node.name.is_empty() {
                    format!("node-{ni}")
                } else {
                    node.name.clone()
                },
                addr: node_addr,
                connector: RelayConnectorOptions {
                    auth: c
                        .auth
                        .as_ref()
                        .filter(|a| !a.username.is_empty())
                        .map(to_user),
                    nodelay: s
                        .md("connector.metadata", cmd, &["nodelay"], entry_bool)?
                        .unwrap_or(false),
                    connect_timeout: s
                        .md(
                            "connector.metadata",
                            cmd,
                            &["connectTimeout"],
                            entry_duration,
                        )?
                        .filter(|d| !d.is_zero()),
                },
                dialer,
            });
        }
        hops.push(HopPlan {
            name: if hop.name.is_empty() {
                format!("hop-{hi}")
            } else {
                hop.name.clone()
            },
            nodes,
            selector: selector(&hscope, hop.selector.as_ref())?,
        });
    }
    Ok(ChainPlan {
        name: chain.name.clone(),
        hops,
    })
}
