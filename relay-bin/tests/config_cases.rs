//! Acceptance cases of shared/spec/config.md §3 (CLI → YAML equivalence) and
//! §4 (seed configurations and their resolved plans).

use std::time::Duration;

use relay_bin::config::cli;
use relay_bin::config::model::Config;
use relay_bin::config::resolve::*;
use relay_bin::config::yaml::{Format, parse_str};
use relay_bin::url::HostPort;
use serde_json::Value;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cli(l: &[&str], f: &[&str]) -> Config {
    cli::build(&args(l), &args(f)).unwrap()
}

fn yaml(text: &str) -> Config {
    parse_str(text, Format::Yaml, "test.yaml").unwrap()
}

fn example(name: &str) -> Config {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    parse_str(&text, Format::Yaml, name).unwrap()
}

fn json(cfg: &Config) -> Value {
    serde_json::to_value(cfg).unwrap()
}

/// Drop `dialer.tls.serverName` (config.md §3 leaves it out from §3.4 on).
fn without_server_name(mut v: Value) -> Value {
    if let Some(chains) = v.get_mut("chains").and_then(Value::as_array_mut) {
        for hop in chains
            .iter_mut()
            .flat_map(|c| c["hops"].as_array_mut().unwrap().iter_mut())
        {
            for node in hop["nodes"].as_array_mut().unwrap() {
                let dialer = node["dialer"].as_object_mut().unwrap();
                let empty = dialer
                    .get_mut("tls")
                    .and_then(Value::as_object_mut)
                    .map(|t| {
                        t.remove("serverName");
                        t.is_empty()
                    });
                if empty == Some(true) {
                    dialer.remove("tls");
                }
            }
        }
    }
    v
}

fn assert_same(cli_cfg: &Config, yaml_text: &str) {
    assert_eq!(
        without_server_name(json(cli_cfg)),
        without_server_name(json(&yaml(yaml_text)))
    );
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.into(),
        port,
    }
}

#[test]
fn case_3_1_relay_server_with_auth_and_bind() {
    let c = cli(&["relay://user:pass@:8420?bind=true"], &[]);
    assert_same(
        &c,
        r#"
services:
- name: service-0
  addr: ":8420"
  handler:
    type: relay
    auth:
      username: user
      password: pass
    metadata:
      bind: "true"
  listener:
    type: tcp
    metadata:
      bind: "true"
  metadata:
    bind: "true"
"#,
    );
    let plan = resolve(&c).unwrap();
    let HandlerPlan::Relay(r) = &plan.services[0].handler else {
        panic!("not relay")
    };
    assert!(r.bind);
    assert_eq!(
        r.users,
        vec![User {
            username: "user".into(),
            password: "pass".into()
        }]
    );
    // A hand-written config only needs handler.metadata.bind: true.
    let hand = yaml(
        "services:\n- name: service-0\n  addr: \":8420\"\n  handler:\n    type: relay\n    auth: {username: user, password: pass}\n    metadata:\n      bind: true\n",
    );
    assert_eq!(resolve(&hand).unwrap(), plan);
}

#[test]
fn case_3_2_relay_tls_listener() {
    assert_same(
        &cli(&["relay+tls://:8443"], &[]),
        "services:\n- name: service-0\n  addr: \":8443\"\n  handler:\n    type: relay\n  listener:\n    type: tls\n",
    );
    let c = cli(&["relay+tls://:8443?cert=cert.pem&key=key.pem"], &[]);
    assert_same(
        &c,
        r#"
services:
- name: service-0
  addr: ":8443"
  handler:
    type: relay
  listener:
    type: tls
    tls:
      certFile: cert.pem
      keyFile: key.pem
"#,
    );
    assert_eq!(
        resolve(&c).unwrap().services[0].listener,
        ListenerPlan::Tls(ServerTlsPlan {
            cert: Some(("cert.pem".into(), "key.pem".into())),
            ca_file: None,
        })
    );
    let plan = resolve(&cli(&["relay+tls://:8443"], &[])).unwrap();
    assert_eq!(
        plan.services[0].listener,
        ListenerPlan::Tls(ServerTlsPlan::default())
    );
    let c = cli(&["relay+tls://:8443?cert=cert.pem"], &[]);
    assert!(
        resolve(&c)
            .unwrap_err()
            .to_string()
            .ends_with("services[0].listener.tls: certFile is set without keyFile")
    );
    // Only the relay handler runs on TLS / WebSocket listeners in this build.
    assert!(resolve(&cli(&["socks5+tls://:1080"], &[])).is_err());
}

#[test]
fn quic_listener_and_dialer() {
    let plan = resolve(&cli(&["relay+quic://:8443?cert=c.pem&key=k.pem"], &[])).unwrap();
    assert_eq!(
        plan.services[0].listener,
        ListenerPlan::Quic(ServerTlsPlan {
            cert: Some(("c.pem".into(), "k.pem".into())),
            ca_file: None,
        })
    );
    let plan = resolve(&cli(&[":1"], &["relay+quic://h:8443?keepAlive=false"])).unwrap();
    assert_eq!(
        plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0].dialer,
        DialerKind::Quic(QuicDialerPlan {
            tls: ClientTlsPlan {
                server_name: "h".into(),
                ..ClientTlsPlan::default()
            },
            keepalive: None,
        })
    );
    let plan = resolve(&cli(&[":1"], &["relay+quic://h:8443?ttl=3s"])).unwrap();
    let DialerKind::Quic(q) = &plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0].dialer
    else {
        panic!()
    };
    assert_eq!(q.keepalive, Some(Duration::from_secs(3)));
    // GOST: a quic node must be the first of the chain; cipherKey obfuscation is not here.
    let e = resolve(&cli(&[":1"], &["relay://a:1", "relay+quic://b:2"])).unwrap_err();
    assert!(e.to_string().contains("only be in the first hop"), "{e}");
    let e = resolve(&cli(&["relay+quic://:1?cipherKey=x"], &[])).unwrap_err();
    assert!(e.to_string().contains("cipherKey"), "{e}");
}

#[test]
fn ws_and_wss_listeners_and_dialers() {
    let plan = resolve(&cli(&["relay+ws://:8080"], &[])).unwrap();
    assert_eq!(
        plan.services[0].listener,
        ListenerPlan::Ws(WsListenerPlan {
            path: "/ws".into(),
            tls: None
        })
    );
    let plan = resolve(&cli(&["relay+wss://:8443?path=tunnel&ca=ca.pem"], &[])).unwrap();
    assert_eq!(
        plan.services[0].listener,
        ListenerPlan::Ws(WsListenerPlan {
            path: "/tunnel".into(),
            tls: Some(ServerTlsPlan {
                cert: None,
                ca_file: Some("ca.pem".into()),
            }),
        })
    );
    // The same from YAML, with listener.tls and metadata.
    let y = yaml(
        "services:\n- name: s\n  addr: :8443\n  handler: {type: relay}\n  listener:\n    type: wss\n    tls: {certFile: c.pem, keyFile: k.pem}\n    metadata: {path: /x}\n",
    );
    assert_eq!(
        resolve(&y).unwrap().services[0].listener,
        ListenerPlan::Ws(WsListenerPlan {
            path: "/x".into(),
            tls: Some(ServerTlsPlan {
                cert: Some(("c.pem".into(), "k.pem".into())),
                ca_file: None,
            }),
        })
    );
    let y = yaml(
        "services:\n- name: s\n  addr: :1\n  handler: {type: auto, chain: c}\nchains:\n- name: c\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: relay.example:443\n      connector: {type: relay}\n      dialer:\n        type: tls\n        tls: {secure: true, caFile: ca.pem}\n",
    );
    assert_eq!(
        resolve(&y).unwrap().services[0]
            .chain
            .as_ref()
            .unwrap()
            .hops[0]
            .nodes[0]
            .dialer,
        DialerKind::Tls(ClientTlsPlan {
            secure: true,
            server_name: "relay.example".into(),
            ca_file: Some("ca.pem".into()),
            cert: None,
        })
    );
}

#[test]
fn case_3_3_auto_service_through_relay_node() {
    let c = cli(&[":8080"], &["relay://user:pass@host:8420?nodelay=true"]);
    let want = r#"
services:
- name: service-0
  addr: ":8080"
  handler:
    type: auto
    chain: chain-0
  listener:
    type: tcp
chains:
- name: chain-0
  hops:
  - name: hop-0
    metadata:
      nodelay: "true"
    nodes:
    - name: node-0
      addr: host:8420
      connector:
        type: relay
        auth:
          username: user
          password: pass
        metadata:
          nodelay: "true"
      dialer:
        type: tcp
        tls:
          serverName: host
        metadata:
          nodelay: "true"
      metadata:
        nodelay: "true"
"#;
    // Exact, including the generated serverName.
    assert_eq!(json(&c), json(&yaml(want)));
    let plan = resolve(&c).unwrap();
    let node = &plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0];
    assert!(node.connector.nodelay);
    assert_eq!(node.addr, hp("host", 8420));
    assert_eq!(node.connector.auth.as_ref().unwrap().username, "user");
    assert_eq!(plan.services[0].handler, HandlerPlan::Auto);
}

const CASE_3_4: &str = r#"
services:
- name: service-0
  addr: ":2222"
  handler:
    type: tcp
    chain: chain-0
  listener:
    type: tcp
  forwarder:
    nodes:
    - name: target-0
      addr: target:22
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: host:8420
      connector:
        type: relay
      dialer:
        type: tcp
"#;

#[test]
fn case_3_4_local_tcp_forwarding() {
    let c = cli(&["tcp://:2222/target:22"], &["relay://host:8420"]);
    assert_same(&c, CASE_3_4);
    resolve(&c).unwrap();
}

#[test]
fn case_3_5_local_udp_forwarding() {
    let c = cli(&["udp://:1053/target:53"], &["relay://host:8420"]);
    let want = CASE_3_4
        .replace("\":2222\"", "\":1053\"")
        .replace("type: tcp\n    chain", "type: udp\n    chain")
        .replace("listener:\n    type: tcp", "listener:\n    type: udp")
        .replace("target:22", "target:53");
    assert_same(&c, &want);
    let plan = resolve(&c).unwrap();
    let ListenerPlan::Udp(u) = &plan.services[0].listener else {
        panic!("not udp")
    };
    assert!(!u.keepalive);
    assert_eq!(u.ttl, Duration::from_secs(5));
    // keepalive / ttl on the listener.
    let c = cli(
        &["udp://:1053/target:53?keepalive=true&ttl=30s"],
        &["relay://host:8420"],
    );
    let plan = resolve(&c).unwrap();
    let ListenerPlan::Udp(u) = &plan.services[0].listener else {
        panic!("not udp")
    };
    assert!(u.keepalive);
    assert_eq!(u.ttl, Duration::from_secs(30));
}

#[test]
fn case_3_6_remote_forwarding() {
    let c = cli(
        &["rtcp://:2222/target:22", "rudp://:10053/target:53"],
        &["relay://host:8420"],
    );
    assert_same(
        &c,
        r#"
services:
- name: service-0
  addr: ":2222"
  handler:
    type: rtcp
  listener:
    type: rtcp
    chain: chain-0
  forwarder:
    nodes:
    - name: target-0
      addr: target:22
- name: service-1
  addr: ":10053"
  handler:
    type: rudp
  listener:
    type: rudp
    chain: chain-0
  forwarder:
    nodes:
    - name: target-0
      addr: target:53
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: host:8420
      connector:
        type: relay
      dialer:
        type: tcp
"#,
    );
    let plan = resolve(&c).unwrap();
    assert!(plan.services.iter().all(|s| s.chain.is_some()));
}

#[test]
fn case_3_7_relay_as_forwarder() {
    let c = cli(&["relay://:8420/target:80"], &[]);
    assert_same(
        &c,
        r#"
services:
- name: service-0
  addr: ":8420"
  handler:
    type: relay
  listener:
    type: tcp
  forwarder:
    nodes:
    - name: target-0
      addr: target:80
"#,
    );
    let plan = resolve(&c).unwrap();
    let HandlerPlan::Relay(r) = &plan.services[0].handler else {
        panic!()
    };
    assert_eq!(r.mode, RelayMode::Forward);

    // Target-less client services.
    let c = cli(&["tcp://:2222", "udp://:1053"], &["relay://host:8420"]);
    let plan = resolve(&c).unwrap();
    for s in &plan.services {
        assert!(s.forward.is_none() && s.chain.is_some());
    }
    let v = json(&c);
    assert_eq!(v["services"][0]["handler"]["type"], "tcp");
    assert_eq!(v["services"][1]["listener"]["type"], "udp");
    assert_eq!(v["services"][1]["handler"]["chain"], "chain-0");

    // Several targets are load-balanced round-robin with the fail filter.
    let c = cli(&["relay://:8420/a:1,b:2"], &[]);
    let plan = resolve(&c).unwrap();
    let f = plan.services[0].forward.as_ref().unwrap();
    assert_eq!(f.targets[1].name, "target-1");
    assert_eq!(f.selector, SelectorPlan::default());
    assert_eq!(f.selector.strategy, Strategy::RoundRobin);
    assert_eq!(f.selector.max_fails, 1);
    assert_eq!(f.selector.fail_timeout, Duration::from_secs(10));
}

#[test]
fn case_3_8_variants() {
    let c = cli(
        &[":1"],
        &["relay+tls://host:8443?secure=true&serverName=example.com&ca=ca.pem"],
    );
    let v = json(&c);
    let d = &v["chains"][0]["hops"][0]["nodes"][0]["dialer"];
    assert_eq!(d["type"], "tls");
    assert_eq!(
        d["tls"],
        serde_json::json!({"caFile": "ca.pem", "secure": true, "serverName": "example.com"})
    );
    let plan = resolve(&c).unwrap();
    assert_eq!(
        plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0].dialer,
        DialerKind::Tls(ClientTlsPlan {
            secure: true,
            server_name: "example.com".into(),
            ca_file: Some("ca.pem".into()),
            cert: None,
        })
    );

    let c = cli(
        &[":1"],
        &["relay+wss://host:443?path=/relay&host=example.com"],
    );
    let n = &c.chains[0].hops[0].nodes[0];
    assert_eq!(n.dialer.as_ref().unwrap().kind, "wss");
    let md = &n.dialer.as_ref().unwrap().metadata;
    assert_eq!(md.get_string("path"), Ok(Some("/relay".into())));
    assert_eq!(md.get_string("host"), Ok(Some("example.com".into())));
    let plan = resolve(&c).unwrap();
    assert_eq!(
        plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0].dialer,
        DialerKind::Ws(WsDialerPlan {
            host: "example.com".into(),
            path: "/relay".into(),
            tls: Some(ClientTlsPlan {
                server_name: "host".into(),
                ..ClientTlsPlan::default()
            }),
        })
    );
    let plan = resolve(&cli(&[":1"], &["relay+ws://:8080"])).unwrap();
    assert_eq!(
        plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0].dialer,
        DialerKind::Ws(WsDialerPlan {
            host: "localhost:8080".into(),
            path: "/ws".into(),
            tls: None,
        })
    );

    let c = cli(&[":1"], &["relay://host1:8420,host2:8420?strategy=rand"]);
    let plan = resolve(&c).unwrap();
    let hop = &plan.services[0].chain.as_ref().unwrap().hops[0];
    assert_eq!(hop.nodes.len(), 2);
    assert_eq!(hop.nodes[1].addr, hp("host2", 8420));
    assert_eq!(hop.selector.strategy, Strategy::Random);

    let c = cli(&[":1"], &["relay://host:8420?auth=dXNlcjpwYXNz"]);
    let plan = resolve(&c).unwrap();
    let node = &plan.services[0].chain.as_ref().unwrap().hops[0].nodes[0];
    assert_eq!(
        node.connector.auth,
        Some(User {
            username: "user".into(),
            password: "pass".into()
        })
    );
    assert!(
        c.chains[0].hops[0].nodes[0]
            .connector
            .as_ref()
            .unwrap()
            .metadata
            .get("auth")
            .is_none()
    );

    let c = cli(&["relay://:8420?readTimeout=30s&nodelay=true"], &[]);
    let plan = resolve(&c).unwrap();
    let HandlerPlan::Relay(r) = &plan.services[0].handler else {
        panic!()
    };
    assert_eq!(r.read_timeout, Duration::from_secs(30));
    assert!(r.nodelay);

    let c = cli(&[":1"], &["relay+tls://a:443", "relay://b:8420"]);
    let names: Vec<_> = c.chains[0].hops.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["hop-0", "hop-1"]);
    let c = cli(&[":1"], &["relay://a:8420", "relay://b:8420"]);
    let plan = resolve(&c).unwrap();
    assert_eq!(plan.services[0].chain.as_ref().unwrap().hops.len(), 2);
}

fn seed_chain() -> ChainPlan {
    ChainPlan {
        name: "chain-0".into(),
        hops: vec![HopPlan {
            name: "hop-0".into(),
            nodes: vec![NodePlan {
                name: "node-0".into(),
                addr: hp("", 8420),
                connector: RelayConnectorOptions {
                    auth: None,
                    nodelay: false,
                    connect_timeout: None,
                },
                dialer: DialerKind::Tcp,
            }],
            selector: SelectorPlan::default(),
        }],
    }
}

fn target(port: u16) -> Option<ForwardPlan> {
    Some(ForwardPlan {
        targets: vec![Target {
            name: "target-0".into(),
            addr: hp("", port),
        }],
        selector: SelectorPlan::default(),
    })
}

fn relay_server(bind: bool) -> Plan {
    Plan {
        services: vec![ServicePlan {
            name: "service-0".into(),
            listen: hp("", 8420),
            listener: ListenerPlan::Tcp,
            handler: HandlerPlan::Relay(RelayHandlerOptions {
                mode: RelayMode::Proxy,
                users: vec![],
                bind,
                nodelay: false,
                read_timeout: Duration::from_secs(15),
                udp_buffer_size: 4096,
            }),
            forward: None,
            chain: None,
            dial_timeout: Duration::from_secs(15),
            retries: 0,
            policy: Default::default(),
            limits: Default::default(),
        }],
    }
}

#[test]
fn seed_4_1_local_forwarding() {
    let client = example("local-forward-client.yaml");
    let fwd = ForwardHandlerOptions {
        read_timeout: Duration::from_secs(15),
        idle_timeout: None,
    };
    let want = Plan {
        services: vec![
            ServicePlan {
                name: "service-0".into(),
                listen: hp("", 2222),
                listener: ListenerPlan::Tcp,
                handler: HandlerPlan::Tcp(fwd.clone()),
                forward: target(22),
                chain: Some(seed_chain()),
                dial_timeout: Duration::from_secs(15),
                retries: 0,
                policy: Default::default(),
                limits: Default::default(),
            },
            ServicePlan {
                name: "service-1".into(),
                listen: hp("", 1053),
                listener: ListenerPlan::Udp(UdpListenerOptions {
                    keepalive: false,
                    ttl: Duration::from_secs(5),
                    read_buffer_size: 4096,
                    read_queue_size: 128,
                    backlog: 128,
                }),
                handler: HandlerPlan::Udp(fwd),
                forward: target(53),
                chain: Some(seed_chain()),
                dial_timeout: Duration::from_secs(15),
                retries: 0,
                policy: Default::default(),
                limits: Default::default(),
            },
        ],
    };
    assert_eq!(resolve(&client).unwrap(), want);
    // The CLI equivalent yields the same model.
    let c = cli(&["tcp://:2222/:22", "udp://:1053/:53"], &["relay://:8420"]);
    assert_eq!(json(&c), json(&client));

    let server = example("local-forward-server.yaml");
    assert_eq!(resolve(&server).unwrap(), relay_server(false));
    let c = cli(&["relay://:8420"], &[]);
    assert_eq!(json(&c), json(&server));
}

#[test]
fn seed_4_2_remote_forwarding() {
    let client = example("remote-forward-client.yaml");
    let plan = resolve(&client).unwrap();
    assert_eq!(plan.services.len(), 2);
    let s0 = &plan.services[0];
    assert_eq!(
        (&s0.listen, &s0.listener, &s0.handler),
        (&hp("", 2222), &ListenerPlan::Rtcp, &HandlerPlan::Rtcp)
    );
    assert_eq!(s0.forward, target(22));
    assert_eq!(s0.chain, Some(seed_chain()));
    let s1 = &plan.services[1];
    assert_eq!(s1.listen, hp("", 10053));
    assert_eq!(
        s1.listener,
        ListenerPlan::Rudp(UdpListenerOptions {
            keepalive: true,
            ttl: Duration::from_secs(5),
            read_buffer_size: 8192,
            read_queue_size: 1024,
            backlog: 128,
        })
    );
    assert_eq!(s1.handler, HandlerPlan::Rudp);
    assert_eq!(s1.forward, target(53));
    assert_eq!(s1.chain, Some(seed_chain()));
    let c = cli(
        &["rtcp://:2222/:22", "rudp://:10053/:53"],
        &["relay://:8420"],
    );
    assert_eq!(json(&c), json(&client));

    let server = example("remote-forward-server.yaml");
    assert_eq!(resolve(&server).unwrap(), relay_server(true));
    // `gost -L relay://:8420?bind=true` resolves to the same plan (the CLI
    // model differs only in the string "true" and its extra metadata copies).
    assert_eq!(
        resolve(&cli(&["relay://:8420?bind=true"], &[])).unwrap(),
        relay_server(true)
    );
}

#[test]
fn json_config_resolves_like_yaml() {
    let text = serde_json::to_string(&json(&example("local-forward-client.yaml"))).unwrap();
    let cfg = parse_str(&text, Format::Json, "c.json").unwrap();
    assert_eq!(
        resolve(&cfg).unwrap(),
        resolve(&example("local-forward-client.yaml")).unwrap()
    );
}

#[test]
fn bad_configs_give_one_line_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n- name: s\n  addr: :1\n  handler:\n    type: relay\n    metadata:\n      readTimeout: abc\n",
            "config.yaml:7: services[0].handler.metadata.readTimeout: invalid duration \"abc\"",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler:\n    type: relay\n    metadata:\n      bind: maybe\n",
            "config.yaml:7: services[0].handler.metadata.bind: invalid bool \"maybe\"",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler:\n    type: ss\n",
            "config.yaml:2: services[0].handler.type: handler \"ss\" is not supported",
        ),
        (
            "services:\n- name: s\n  addr: nope\n",
            "config.yaml:2: services[0].addr: missing port in address \"nope\"",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler: {type: auto, chain: c}\n",
            "config.yaml:2: services[0].handler.chain: chain \"c\" not found",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler: {type: auto, chain: c}\nchains:\n- name: c\n  hops:\n  - name: h\n    nodes:\n    - name: n\n      addr: x:1\n",
            "config.yaml:6: chains[0].hops[0].nodes[0].connector.type: connector \"http\" is not supported (only relay)",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler: {type: relay}\n  listener: {type: foo}\n",
            "config.yaml:2: services[0].listener.type: unknown listener \"foo\"",
        ),
        (
            "services:\n- name: s\n  addr: :1\n  handler: {type: tcp}\n",
            "config.yaml:2: services[0].forwarder: handler \"tcp\" needs a forwarder target or a chain",
        ),
    ];
    for (text, want) in cases {
        let got = parse_str(text, Format::Yaml, "config.yaml")
            .and_then(|c| resolve(&c).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert_eq!(&got, want);
        assert!(!got.contains('\n'));
    }
}

#[test]
fn printed_yaml_and_json_read_back_identically() {
    let configs = [
        cli(&["relay://user:pass@:8420?bind=true&readTimeout=30s"], &[]),
        cli(
            &["tcp://:2222/target:22", "rudp://:10053/:53"],
            &[
                "relay://u:p@host:8420?nodelay=true&connectTimeout=5s",
                "relay+tls://[::1]:443",
            ],
        ),
        example("remote-forward-server.yaml"),
    ];
    for cfg in configs {
        let y = serde_saphyr::to_string(&cfg).unwrap();
        assert_eq!(json(&yaml(&y)), json(&cfg), "{y}");
        let j = serde_json::to_string(&cfg).unwrap();
        let back = parse_str(&j, Format::Json, "x.json").unwrap();
        assert_eq!(json(&back), json(&cfg));
    }
}

proptest::proptest! {
    #[test]
    fn cli_and_resolve_never_panic(
        l in proptest::collection::vec("[a-z+]{0,10}(://)?([a-z:]{0,4}@)?[a-z0-9.:]{0,10}(/[a-z0-9:,]{0,10})?(\\?[a-zA-Z.=&0-9]{0,20})?", 0..3),
        f in proptest::collection::vec("(relay|tls|relay\\+tls|x)?(://)?[a-z0-9.:,]{0,12}(\\?[a-zA-Z.=&0-9]{0,20})?", 0..3),
    ) {
        if let Ok(cfg) = cli::build(&l, &f) {
            let _ = resolve(&cfg);
        }
    }

    #[test]
    fn loader_never_panics(s in "\\PC{0,60}") {
        if let Ok(cfg) = parse_str(&s, Format::Yaml, "x.yaml") {
            let _ = resolve(&cfg);
        }
        let _ = parse_str(&s, Format::Json, "x.json");
    }
}

#[test]
fn bypass_block_private_and_limits_resolve() {
    let flags = relay_bin::flags::parse(
        [
            "-L",
            "relay://:8420?bypass=10.0.0.0/8,*.internal&blockPrivate=true&maxConns=100&maxHandshakes=10&rateLimit=5",
        ]
        .map(String::from),
    )
    .unwrap();
    let plan = resolve(&relay_bin::run::load(&flags).unwrap()).unwrap();
    let s = &plan.services[0];
    assert_eq!(
        s.policy.deny,
        vec!["10.0.0.0/8".parse().unwrap(), "*.internal".parse().unwrap()]
    );
    assert!(s.policy.block_internal);
    assert!(s.policy.allow.is_empty());
    assert_eq!(
        (
            s.limits.max_connections,
            s.limits.max_handshakes,
            s.limits.rate_per_source
        ),
        (100, 10, 5)
    );
    let bad = relay_bin::flags::parse(["-L", "relay://:8420?bypass=1.2.3.4/99"].map(String::from))
        .unwrap();
    let e = resolve(&relay_bin::run::load(&bad).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bypass") && e.contains("1.2.3.4/99"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn users_from_auth_files_and_authers() {
    let dir = std::env::temp_dir().join(format!("relay-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.txt");
    std::fs::write(
        &file,
        "# GOST users file\nalice s3cret\n\nbob   pw2  # trailing comment\ncarol\n",
    )
    .unwrap();
    let text = format!(
        "services:\n- name: s\n  addr: :8420\n  handler:\n    type: relay\n    auth:\n      username: admin\n      password: root\n      file: {}\n    authers: [extra]\n  listener:\n    type: tcp\nauthers:\n- name: extra\n  auths:\n  - username: dave\n    password: d\n",
        file.display()
    );
    let plan = resolve(&yaml(&text)).unwrap();
    let HandlerPlan::Relay(opts) = &plan.services[0].handler else {
        panic!()
    };
    let users: Vec<(&str, &str)> = opts
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.password.as_str()))
        .collect();
    assert_eq!(
        users,
        [
            ("admin", "root"),
            ("alice", "s3cret"),
            ("bob", "pw2"),
            ("carol", ""),
            ("dave", "d")
        ]
    );
    let missing = text.replace(&file.display().to_string(), "/nonexistent/users.txt");
    let e = resolve(&yaml(&missing)).unwrap_err().to_string();
    assert!(
        e.contains("users file") && e.contains("/nonexistent/users.txt"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
