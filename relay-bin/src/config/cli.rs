//! Turning `-L` / `-F` arguments into the [`Config`] model, the way GOST's
//! `config/cmd` does (config.md §1, §3).

use super::ConfigError;
use super::metadata::Metadata;
use super::model::*;
use crate::url::{self, CmdUrl};

/// Handler names registered in the GOST v3 binary (others become `auto`).
const HANDLERS: &[&str] = &[
    "auto", "dns", "file", "forward", "http", "http2", "http3", "red", "redir", "redirect", "redu",
    "relay", "router", "rtcp", "rudp", "serial", "sni", "socks4", "socks4a", "socks5", "socks",
    "ss", "ssu", "sshd", "tap", "tcp", "tun", "tunnel", "udp", "unix",
];

/// Listener names registered in the GOST v3 binary (others become `tcp`).
const LISTENERS: &[&str] = &[
    "dns",
    "dtls",
    "ftcp",
    "grpc",
    "h2",
    "h2c",
    "h3",
    "http2",
    "http3",
    "icmp",
    "icmp6",
    "kcp",
    "mtcp",
    "mtls",
    "mws",
    "mwss",
    "obfs-http",
    "obfs-tls",
    "ohttp",
    "otls",
    "pht",
    "phts",
    "quic",
    "red",
    "redir",
    "redirect",
    "redu",
    "rtcp",
    "rudp",
    "runix",
    "serial",
    "ssh",
    "sshd",
    "stdio",
    "tap",
    "tcp",
    "tls",
    "tproxy",
    "tun",
    "udp",
    "unix",
    "ws",
    "wss",
    "wt",
];

/// Connector names registered in the GOST v3 binary (others become `http`).
const CONNECTORS: &[&str] = &[
    "direct", "forward", "http", "http2", "relay", "router", "serial", "sni", "socks4", "socks4a",
    "socks5", "socks", "ss", "ssu", "sshd", "tcp", "tunnel", "unix", "virtual",
];

/// Dialer names registered in the GOST v3 binary (others become `tcp`).
const DIALERS: &[&str] = &[
    "dtls",
    "ftcp",
    "grpc",
    "h2",
    "h2c",
    "h3",
    "http2",
    "http3",
    "icmp",
    "icmp6",
    "kcp",
    "mtcp",
    "mtls",
    "mws",
    "mwss",
    "obfs-http",
    "obfs-tls",
    "ohttp",
    "ohttps",
    "otls",
    "pht",
    "phts",
    "quic",
    "serial",
    "ssh",
    "sshd",
    "tcp",
    "tls",
    "udp",
    "unix",
    "utls",
    "ws",
    "wss",
    "wt",
    "virtual",
];

/// Listeners whose handler is replaced by the listener name when targets are given.
const FORWARD_LISTENERS: &[&str] = &[
    "tcp", "udp", "rtcp", "rudp", "tun", "tap", "dns", "unix", "runix", "serial",
];

/// Listeners that take the chain themselves (`listener.chain`).
const CHAIN_ON_LISTENER: &[&str] = &["rtcp", "rudp", "runix"];

const SOURCE: &str = "command line";

fn cli_err(arg: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(SOURCE, 0, "", format!("{arg}: {msg}"))
}

/// Split `a+b` / `a` into two names, mapping unregistered names to defaults.
fn split_scheme(
    scheme: &str,
    first: &[&str],
    first_default: &str,
    second: &[&str],
    second_default: &str,
) -> (String, String) {
    let (a, b) = scheme.split_once('+').unwrap_or((scheme, scheme));
    let pick = |name: &str, list: &[&str], default: &str| {
        if list.contains(&name) {
            name.to_string()
        } else {
            default.to_string()
        }
    };
    (
        pick(a, first, first_default),
        pick(b, second, second_default),
    )
}

fn auth_of(u: &CmdUrl) -> Option<AuthConfig> {
    u.username.as_ref().map(|name| AuthConfig {
        username: name.clone(),
        password: u.password.clone().unwrap_or_default(),
        file: String::new(),
    })
}

/// TLS keys (`cert`, `tls.certFile`, …) removed from the query into a [`TlsConfig`].
fn take_tls(query: &mut Vec<(String, String)>) -> Result<TlsConfig, String> {
    let mut tls = TlsConfig::default();
    let mut rest = Vec::new();
    for (k, v) in query.drain(..) {
        match k.as_str() {
            "cert" | "certFile" | "tls.certFile" => tls.cert_file = Some(v),
            "key" | "keyFile" | "tls.keyFile" => tls.key_file = Some(v),
            "ca" | "caFile" | "tls.caFile" => tls.ca_file = Some(v),
            "secure" | "tls.secure" => {
                tls.secure = Some(
                    crate::flags::parse_go_bool(&v).ok_or(format!("invalid bool {v:?} for {k}"))?,
                )
            }
            "serverName" | "tls.serverName" => tls.server_name = Some(v),
            _ => rest.push((k, v)),
        }
    }
    *query = rest;
    Ok(tls)
}

fn take_selector(query: &mut Vec<(String, String)>) -> Result<Option<SelectorConfig>, String> {
    let mut sel = SelectorConfig::default();
    let mut any = false;
    let mut rest = Vec::new();
    for (k, v) in query.drain(..) {
        match k.as_str() {
            "strategy" => sel.strategy = Some(v),
            "maxFails" => {
                sel.max_fails = Some(v.parse().map_err(|_| format!("invalid maxFails {v:?}"))?)
            }
            "failTimeout" => sel.fail_timeout = Some(v),
            _ => {
                rest.push((k, v));
                continue;
            }
        }
        any = true;
    }
    *query = rest;
    Ok(any.then_some(sel))
}

/// Reject query keys that would generate top-level objects we do not model yet.
fn reject_unsupported(query: &[(String, String)], keys: &[&str]) -> Result<(), String> {
    for (k, _) in query {
        if keys.contains(&k.as_str()) || k.starts_with("limiter.") {
            return Err(format!("query parameter {k:?} is not supported yet"));
        }
    }
    Ok(())
}

/// Build the model for `-L` services and `-F` nodes.
pub fn build(services: &[String], nodes: &[String]) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    if !nodes.is_empty() {
        cfg.chains.push(build_chain(nodes)?);
    }
    for (i, arg) in services.iter().enumerate() {
        let svc = build_service(i, arg, !nodes.is_empty(), &mut cfg.bypasses)
            .map_err(|m| cli_err(arg, m))?;
        cfg.services.push(svc);
    }
    Ok(cfg)
}

fn build_service(
    index: usize,
    arg: &str,
    has_chain: bool,
    bypasses: &mut Vec<BypassConfig>,
) -> Result<ServiceConfig, String> {
    let mut u = url::parse(arg).map_err(|e| e.to_string())?;
    if u.hosts.len() != 1 {
        return Err("a service takes exactly one listen address".into());
    }
    let scheme = match u.scheme.as_str() {
        "https" => "http+tls".to_string(),
        s => s.to_string(),
    };
    let (mut handler, listener) = split_scheme(&scheme, HANDLERS, "auto", LISTENERS, "tcp");
    let auth = auth_of(&u);
    u.query.retain(|(k, _)| k != "auth");

    reject_unsupported(
        &u.query,
        &[
            "admission",
            "resolver",
            "hosts",
            "climiter",
            "rlimiter",
            "limiter",
        ],
    )?;
    let tls = take_tls(&mut u.query)?;
    let selector = take_selector(&mut u.query)?;

    let mut svc_md = Metadata::default();
    let mut handler_md = Metadata::default();
    let mut listener_md = Metadata::default();
    let mut retries = None;
    let mut bypass = None;
    for (k, v) in &u.query {
        if let Some(k) = k.strip_prefix("handler.") {
            handler_md.set_str(k, v);
        } else if let Some(k) = k.strip_prefix("listener.") {
            listener_md.set_str(k, v);
        } else if let Some(k) = k.strip_prefix("service.") {
            svc_md.set_str(k, v);
        } else if k == "retries" {
            retries = Some(v.parse().map_err(|_| format!("invalid retries {v:?}"))?);
        } else if k == "bypass" {
            let name = format!("bypass-{}", bypasses.len());
            bypasses.push(BypassConfig {
                name: name.clone(),
                reverse: false,
                matchers: v.split(',').map(str::to_string).collect(),
            });
            bypass = Some(name);
        } else if matches!(
            k.as_str(),
            "interface" | "so_mark" | "proxyProtocol" | "netns"
        ) {
            svc_md.set_str(k, v);
        } else {
            handler_md.set_str(k, v);
            listener_md.set_str(k, v);
            svc_md.set_str(k, v);
        }
    }

    let forwarder = if u.targets.is_empty() {
        None
    } else {
        if handler != "relay" {
            handler = if FORWARD_LISTENERS.contains(&listener.as_str()) {
                listener.clone()
            } else {
                "forward".to_string()
            };
        }
        Some(ForwarderConfig {
            nodes: u
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| ForwardNodeConfig {
                    name: format!("target-{i}"),
                    addr: t.to_string(),
                    ..Default::default()
                })
                .collect(),
            selector,
        })
    };

    let chain_on_listener = has_chain && CHAIN_ON_LISTENER.contains(&listener.as_str());
    let chain_on_handler = has_chain && !chain_on_listener;
    let tls = (tls != TlsConfig::default()).then_some(tls);
    Ok(ServiceConfig {
        name: format!("service-{index}"),
        addr: u.hosts[0].to_string(),
        handler: Some(HandlerConfig {
            kind: handler,
            chain: chain_on_handler.then(|| "chain-0".to_string()),
            retries,
            auth,
            metadata: handler_md,
            ..Default::default()
        }),
        listener: Some(ListenerConfig {
            kind: listener,
            chain: chain_on_listener.then(|| "chain-0".to_string()),
            auth: None,
            tls,
            metadata: listener_md,
        }),
        forwarder,
        bypass,
        metadata: svc_md,
        origin: Origin {
            source: format!("-L {arg}"),
            line: 0,
        },
    })
}

fn build_chain(nodes: &[String]) -> Result<ChainConfig, ConfigError> {
    let mut hops = Vec::new();
    for (i, arg) in nodes.iter().enumerate() {
        hops.push(build_hop(i, arg).map_err(|m| cli_err(arg, m))?);
    }
    Ok(ChainConfig {
        name: "chain-0".into(),
        hops,
        metadata: Metadata::default(),
        origin: Origin {
            source: SOURCE.into(),
            line: 0,
        },
    })
}

fn build_hop(index: usize, arg: &str) -> Result<HopConfig, String> {
    let mut u = url::parse(arg).map_err(|e| e.to_string())?;
    let (connector, dialer) = split_scheme(&u.scheme, CONNECTORS, "http", DIALERS, "tcp");
    let auth = auth_of(&u);
    u.query.retain(|(k, _)| k != "auth");
    reject_unsupported(&u.query, &["bypass", "resolver", "hosts"])?;
    let tls = take_tls(&mut u.query)?;
    let selector = take_selector(&mut u.query)?;

    let mut connector_md = Metadata::default();
    let mut dialer_md = Metadata::default();
    let mut node_md = Metadata::default();
    let mut hop_md = Metadata::default();
    for (k, v) in &u.query {
        if let Some(k) = k.strip_prefix("connector.") {
            connector_md.set_str(k, v);
        } else if let Some(k) = k.strip_prefix("dialer.") {
            dialer_md.set_str(k, v);
        } else if let Some(k) = k.strip_prefix("node.") {
            node_md.set_str(k, v);
        } else if let Some(k) = k.strip_prefix("hop.") {
            hop_md.set_str(k, v);
        } else {
            connector_md.set_str(k, v);
            dialer_md.set_str(k, v);
            node_md.set_str(k, v);
            hop_md.set_str(k, v);
        }
    }
    let ssh = matches!(dialer.as_str(), "ssh" | "sshd");
    let nodes = u
        .hosts
        .iter()
        .enumerate()
        .map(|(j, h)| {
            let mut tls = tls.clone();
            if tls.server_name.is_none() && !h.hostname().is_empty() {
                tls.server_name = Some(h.hostname().to_string());
            }
            NodeConfig {
                name: format!("node-{j}"),
                addr: h.to_string(),
                connector: Some(ConnectorConfig {
                    kind: connector.clone(),
                    auth: if ssh { None } else { auth.clone() },
                    metadata: connector_md.clone(),
                }),
                dialer: Some(DialerConfig {
                    kind: dialer.clone(),
                    auth: if ssh { auth.clone() } else { None },
                    tls: (tls != TlsConfig::default()).then_some(tls),
                    metadata: dialer_md.clone(),
                }),
                metadata: node_md.clone(),
            }
        })
        .collect();
    Ok(HopConfig {
        name: format!("hop-{index}"),
        selector,
        metadata: hop_md,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(args: &[&str]) -> Config {
        build(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[]).unwrap()
    }

    #[test]
    fn scheme_mapping() {
        let c = l(&[
            "relay://:1",
            ":2",
            "relay+tls://:3",
            "tls://:4",
            "socks5://:5",
            "tcp://:6/x:7",
            "relay+ws://:8/x:9",
            "ws://:10/x:11",
        ]);
        let kinds: Vec<(String, String)> = c
            .services
            .iter()
            .map(|s| {
                (
                    s.handler.as_ref().unwrap().kind.clone(),
                    s.listener.as_ref().unwrap().kind.clone(),
                )
            })
            .collect();
        let want = [
            ("relay", "tcp"),
            ("auto", "tcp"),
            ("relay", "tls"),
            ("auto", "tls"),
            ("socks5", "tcp"),
            ("tcp", "tcp"),
            ("relay", "ws"),
            ("forward", "ws"),
        ];
        for (got, want) in kinds.iter().zip(want) {
            assert_eq!((got.0.as_str(), got.1.as_str()), want);
        }
    }

    #[test]
    fn prefixes_and_specials() {
        let c = l(&[
            "relay://:1/a:1?handler.x=1&listener.y=2&service.z=3&w=4&retries=2&cert=c.pem&strategy=rand&interface=eth0&auth=dXNlcjpwYXNz",
        ]);
        let s = &c.services[0];
        let h = s.handler.as_ref().unwrap();
        let li = s.listener.as_ref().unwrap();
        assert!(h.metadata.get("x").is_some() && h.metadata.get("y").is_none());
        assert!(li.metadata.get("y").is_some() && li.metadata.get("x").is_none());
        assert!(s.metadata.get("z").is_some() && s.metadata.get("interface").is_some());
        for md in [&h.metadata, &li.metadata, &s.metadata] {
            assert!(md.get("w").is_some());
            assert!(md.get("auth").is_none() && md.get("cert").is_none());
        }
        assert!(h.metadata.get("interface").is_none());
        assert_eq!(h.retries, Some(2));
        assert_eq!(h.auth.as_ref().unwrap().username, "user");
        assert_eq!(li.tls.as_ref().unwrap().cert_file.as_deref(), Some("c.pem"));
        let sel = s.forwarder.as_ref().unwrap().selector.as_ref().unwrap();
        assert_eq!(sel.strategy.as_deref(), Some("rand"));
    }

    #[test]
    fn hops_nodes_and_tls() {
        let c = build(
            &[],
            &[
                "relay+tls://a:443?secure=true&ca=ca.pem".to_string(),
                "relay://b1:1,b2:2?hop.h=1&node.n=2&connector.c=3&dialer.d=4".to_string(),
                "ssh://u:p@c:22".to_string(),
            ],
        )
        .unwrap();
        let ch = &c.chains[0];
        assert_eq!(ch.hops.len(), 3);
        let n0 = &ch.hops[0].nodes[0];
        let t = n0.dialer.as_ref().unwrap().tls.as_ref().unwrap();
        assert_eq!(
            (t.secure, t.ca_file.as_deref(), t.server_name.as_deref()),
            (Some(true), Some("ca.pem"), Some("a"))
        );
        let h1 = &ch.hops[1];
        assert_eq!(h1.nodes.len(), 2);
        assert_eq!(h1.nodes[1].name, "node-1");
        assert!(h1.metadata.get("h").is_some() && h1.metadata.get("n").is_none());
        assert!(h1.nodes[0].metadata.get("n").is_some());
        assert!(
            h1.nodes[0]
                .connector
                .as_ref()
                .unwrap()
                .metadata
                .get("c")
                .is_some()
        );
        assert!(
            h1.nodes[0]
                .dialer
                .as_ref()
                .unwrap()
                .metadata
                .get("d")
                .is_some()
        );
        let ssh = &ch.hops[2].nodes[0];
        assert_eq!(ssh.connector.as_ref().unwrap().kind, "http");
        assert!(ssh.connector.as_ref().unwrap().auth.is_none());
        assert_eq!(
            ssh.dialer.as_ref().unwrap().auth.as_ref().unwrap().username,
            "u"
        );
    }

    #[test]
    fn errors_are_one_line() {
        let e = build(&["relay://:1-5".to_string()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("command line: relay://:1-5: port range"),
            "{e}"
        );
        let e = build(&["relay://:1?resolver=r".to_string()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"resolver\" is not supported"), "{e}");
        let e = build(&[], &["relay://h".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing port"), "{e}");
    }
}
