//! The client and server handshakes against GOST's behaviour (spec client.md, server.md):
//! request bytes, every status code, every silent close, the nodelay matrix and the deadlines,
//! driven through the deterministic simulation on a fake clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::auth::Credentials;
use relay_core::client::{Client, ClientError};
use relay_core::server::{
    CloseReason, DialTarget, Established, Server, ServerConfig, ServerOutput, Transport,
};
use relay_core::sim::{Sim, SimConfig, SimEvent};
use relay_core::target::{Target, TargetHost};
use relay_core::wire::{Status, WireError};
use relay_core::{Address, Decoded};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn addr(s: &str) -> Address<'_> {
    Address::parse(s).unwrap()
}

// ---------------------------------------------------------------- client request bytes

#[test]
fn client_requests_match_gost_bytes() {
    let up = Some((&b"user"[..], &b"pass"[..]));
    let cases: [(Client, &str); 9] = [
        (
            Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap(),
            "01 01 00 07 02 00 04 03 00 00 16",
        ),
        (
            Client::connect(Transport::Tcp, &addr("example.com:80"), up, false).unwrap(),
            "01 01 00 1F 01 00 0A 04 75 73 65 72 04 70 61 73 73 02 00 0F 03 0B 65 78 61 6D 70 6C 65 2E 63 6F 6D 00 50",
        ),
        (
            Client::connect(Transport::Tcp, &addr("[2001:db8::1]:443"), None, false).unwrap(),
            "01 01 00 16 02 00 13 04 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01 01 BB",
        ),
        (
            Client::connect(Transport::Udp, &addr(":53"), None, false).unwrap(),
            "01 81 00 0C 04 00 02 00 01 02 00 04 03 00 00 35",
        ),
        (
            Client::connect(Transport::Udp, &addr("8.8.8.8:53"), up, false).unwrap(),
            "01 81 00 1C 04 00 02 00 01 01 00 0A 04 75 73 65 72 04 70 61 73 73 02 00 07 01 08 08 08 08 00 35",
        ),
        (
            Client::associate(None).unwrap(),
            "01 82 00 0F 04 00 02 00 01 02 00 07 01 00 00 00 00 00 00",
        ),
        (
            Client::bind(Transport::Tcp, &addr(":2222"), None).unwrap(),
            "01 02 00 0C 04 00 02 00 00 02 00 04 03 00 08 AE",
        ),
        (
            Client::bind(Transport::Udp, &addr(":10053"), None).unwrap(),
            "01 82 00 0C 04 00 02 00 01 02 00 04 03 00 27 45",
        ),
        (
            Client::bind(Transport::Tcp, &addr("0.0.0.0:2222"), up).unwrap(),
            "01 02 00 1c 01 00 0a 04 75 73 65 72 04 70 61 73 73 04 00 02 00 00 02 00 07 01 00 00 00 00 08 ae",
        ),
    ];
    for (client, expected) in cases {
        assert_eq!(client.request(), hex(expected).as_slice(), "{client:?}");
    }
}

#[test]
fn client_sends_request_when_gost_does() {
    let mut lazy = Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap();
    assert_eq!(
        lazy.poll_transmit(),
        None,
        "nodelay=false: no I/O at connect time"
    );
    assert_eq!(lazy.take_request().len(), 11);
    assert!(lazy.take_request().is_empty());

    let mut eager = Client::connect(Transport::Tcp, &addr(":22"), None, true).unwrap();
    assert_eq!(eager.poll_transmit().map(<[u8]>::len), Some(11));
    assert_eq!(eager.poll_transmit(), None);
    assert!(eager.take_request().is_empty(), "never sent twice");

    let mut bind = Client::bind(Transport::Tcp, &addr(":2222"), None).unwrap();
    assert!(
        bind.poll_transmit().is_some(),
        "BIND always goes out at once"
    );
    let mut assoc = Client::associate(None).unwrap();
    assert!(
        assoc.poll_transmit().is_some(),
        "association always goes out at once"
    );
}

#[test]
fn client_empty_username_sends_no_auth_and_long_one_is_refused() {
    let c = Client::connect(Transport::Tcp, &addr(":22"), Some((b"", b"x")), false).unwrap();
    assert_eq!(
        c.request(),
        hex("01 01 00 07 02 00 04 03 00 00 16").as_slice()
    );
    let long = [b'u'; 256];
    assert_eq!(
        Client::connect(Transport::Tcp, &addr(":22"), Some((&long, b"")), false).unwrap_err(),
        relay_core::EncodeError::UsernameTooLong
    );
}

#[test]
fn client_response_handling() {
    let mut c = Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap();
    assert_eq!(
        c.handle_response(&[1, 0]).unwrap(),
        Decoded::Partial { needed: 4 }
    );
    assert!(!c.is_established());
    let bind_ok = hex("01 00 00 0a 02 00 07 01 7f 00 00 01 8e d5 ff");
    let Decoded::Complete { value, consumed } = c.handle_response(&bind_ok).unwrap() else {
        panic!()
    };
    assert_eq!(consumed, 14);
    let bound = Target::from("127.0.0.1:36565".parse::<SocketAddr>().unwrap());
    assert_eq!(
        value,
        relay_core::client::ClientEvent::Established { bound: Some(bound) }
    );
    assert_eq!(c.handle_eof(), None, "end after OK is a normal end");

    let mut r = Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap();
    assert_eq!(
        r.handle_response(&[1, 2, 0, 0]),
        Err(ClientError::Rejected(Status::UNAUTHORIZED))
    );
    assert_eq!(
        r.handle_response(&[1, 0, 0, 0]),
        Err(ClientError::Rejected(Status::UNAUTHORIZED)),
        "sticky"
    );
    assert_eq!(
        ClientError::Rejected(Status(9)).to_string(),
        "relay server refused: 9 "
    );

    let mut v = Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap();
    assert!(matches!(
        v.handle_response(&[2, 0, 0, 0]),
        Err(ClientError::Malformed(_))
    ));
    let mut e = Client::connect(Transport::Tcp, &addr(":22"), None, false).unwrap();
    assert_eq!(e.handle_eof(), Some(ClientError::Closed));
}

// ---------------------------------------------------------------- simulation helpers

fn start() -> Instant {
    Instant::now()
}

fn cfg(f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut c = SimConfig::default();
    f(&mut c);
    c
}

fn with_auth(c: &mut SimConfig) {
    c.server.auth = Some(Arc::new(Credentials::single("user", "pass")));
}

/// Runs a raw request against a server and returns (bytes the client got, close reason).
fn raw(config: SimConfig, request: &[u8]) -> (Vec<u8>, Option<CloseReason>, Sim) {
    let mut sim = Sim::raw(start(), config);
    sim.send_raw(request);
    sim.run();
    (
        sim.wire_down().to_vec(),
        sim.server_closed().map(|c| c.1),
        sim,
    )
}

const CONNECT_22: &str = "01 01 00 07 02 00 04 03 00 00 16";

// ---------------------------------------------------------------- status codes

#[test]
fn status_0_ok_glued_to_first_target_bytes() {
    for segment in [1, 2, 3, 7, usize::MAX] {
        let mut sim = Sim::connect(start(), cfg(|c| c.max_segment = segment), ":22").unwrap();
        sim.app_write(b"SSH-2.0-client\r\n");
        sim.run();
        assert_eq!(
            sim.target_received(),
            b"SSH-2.0-client\r\n",
            "payload glued to the request is never lost"
        );
        assert_eq!(
            sim.wire_down(),
            [&[1, 0, 0, 0][..], b"SSH-2.0-client\r\n"].concat()
        );
        assert_eq!(sim.app_received(), b"SSH-2.0-client\r\n");
        assert_eq!(sim.client_error(), None);
    }
}

#[test]
fn status_0_nodelay_server_answers_right_after_dial() {
    let config = cfg(|c| {
        c.server.nodelay = true;
        c.client_nodelay = true;
        c.target.echo = false;
    });
    let mut sim = Sim::connect(start(), config, ":22").unwrap();
    sim.run();
    assert_eq!(
        sim.wire_down(),
        &[1, 0, 0, 0],
        "response alone, before any data"
    );
    assert!(sim.events().iter().any(|(_, e)| matches!(
        e,
        SimEvent::Established(Established::Tcp { downstream_prefix }) if downstream_prefix.is_empty()
    )));
}

#[test]
fn status_1_for_missing_address_and_unknown_commands() {
    assert_eq!(
        raw(SimConfig::default(), &hex("01 01 00 00")).0,
        [1, 1, 0, 0]
    );
    for cmd in [0x03u8, 0x04, 0x0f, 0x83] {
        let (down, reason, _) = raw(SimConfig::default(), &[1, cmd, 0, 7, 2, 0, 4, 3, 0, 0, 22]);
        assert_eq!(down, [1, 1, 0, 0], "cmd {cmd:#x}");
        assert_eq!(reason, Some(CloseReason::Refused(Status::BAD_REQUEST)));
    }
}

#[test]
fn command_zero_is_connect() {
    let (_, reason, sim) = raw(
        SimConfig::default(),
        &hex("01 00 00 07 02 00 04 03 00 00 16"),
    );
    assert_eq!(reason, None);
    assert!(matches!(
        sim.events()[0].1,
        SimEvent::Dial(Transport::Tcp, DialTarget::Requested(_))
    ));
}

#[test]
fn status_2_unauthorized_and_checked_before_the_command() {
    let (down, reason, _) = raw(cfg(with_auth), &hex(CONNECT_22));
    assert_eq!(
        (down, reason),
        (
            vec![1, 2, 0, 0],
            Some(CloseReason::Refused(Status::UNAUTHORIZED))
        )
    );
    let wrong = hex("01 01 00 14 01 00 0a 04 75 73 65 72 04 70 61 73 74 02 00 04 03 00 00 16");
    assert_eq!(raw(cfg(with_auth), &wrong).0, [1, 2, 0, 0]);
    // An unauthenticated client with a bad command gets 2, not 1 (server.md §11.12).
    assert_eq!(raw(cfg(with_auth), &hex("01 03 00 00")).0, [1, 2, 0, 0]);

    let mut sim = Sim::connect(
        start(),
        cfg(|c| {
            with_auth(c);
            c.credentials = Some((b"user".to_vec(), b"pass".to_vec()));
        }),
        ":22",
    )
    .unwrap();
    sim.app_write(b"x");
    sim.run();
    assert_eq!(sim.app_received(), b"x");

    let mut sim = Sim::connect(
        start(),
        cfg(|c| {
            with_auth(c);
            c.credentials = Some((b"user".to_vec(), b"nope".to_vec()));
        }),
        ":22",
    )
    .unwrap();
    sim.app_write(b"x");
    sim.run();
    assert_eq!(sim.rejected(), Some(Status::UNAUTHORIZED));
    assert_eq!(sim.target_received(), b"", "nothing reaches the target");
}

#[test]
fn status_3_when_bind_is_disabled() {
    for req in [
        "01 02 00 0C 04 00 02 00 00 02 00 04 03 00 08 AE",
        "01 82 00 0F 04 00 02 00 01 02 00 07 01 00 00 00 00 00 00",
    ] {
        let (down, reason, _) = raw(SimConfig::default(), &hex(req));
        assert_eq!(down, [1, 3, 0, 0]);
        assert_eq!(reason, Some(CloseReason::Refused(Status::FORBIDDEN)));
    }
}

#[test]
fn status_5_no_forward_target_6_forward_dial_failed_7_dial_failed() {
    let forward = |c: &mut SimConfig| c.server.forward = true;
    let (down, _, _) = raw(
        cfg(|c| {
            forward(c);
            c.target.forward_available = false;
        }),
        &hex(CONNECT_22),
    );
    assert_eq!(down, [1, 5, 0, 0]);
    let (down, _, _) = raw(
        cfg(|c| {
            forward(c);
            c.target.reachable = false;
        }),
        &hex(CONNECT_22),
    );
    assert_eq!(down, [1, 6, 0, 0]);
    let (down, reason, _) = raw(cfg(|c| c.target.reachable = false), &hex(CONNECT_22));
    assert_eq!(down, [1, 7, 0, 0]);
    assert_eq!(
        reason,
        Some(CloseReason::Refused(Status::NETWORK_UNREACHABLE))
    );
}

#[test]
fn status_5_tcp_listen_failed_and_udp_listen_failure_is_silent() {
    let bind_on = |c: &mut SimConfig| {
        c.server.bind = true;
        c.target.listen = None;
    };
    let (down, _, _) = raw(
        cfg(bind_on),
        &hex("01 02 00 0C 04 00 02 00 00 02 00 04 03 00 08 AE"),
    );
    assert_eq!(down, [1, 5, 0, 0]);
    let (down, reason, _) = raw(
        cfg(bind_on),
        &hex("01 82 00 0C 04 00 02 00 01 02 00 04 03 00 27 45"),
    );
    assert_eq!(down, b"", "UDP listen failure: no response at all");
    assert_eq!(reason, Some(CloseReason::UdpListenFailed));
}

#[test]
fn bind_answers_ok_with_bound_address() {
    let config = cfg(|c| c.server.bind = true);
    let (down, reason, sim) = raw(
        config.clone(),
        &hex("01 02 00 0C 04 00 02 00 00 02 00 04 03 00 08 AE"),
    );
    assert_eq!(reason, None);
    assert_eq!(
        down,
        hex("01 00 00 0a 02 00 07 01 7f 00 00 01 9c 40"),
        "OK + Addr(127.0.0.1:40000)"
    );
    let bound: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert!(
        sim.events()
            .iter()
            .any(|(_, e)| *e == SimEvent::Established(Established::TcpBind { bound }))
    );
    assert!(sim.events().iter().any(|(_, e)| *e
        == SimEvent::Listen(
            Transport::Tcp,
            Target {
                host: TargetHost::Local,
                port: 2222
            }
        )));
    // UDP BIND / association.
    let (down, _, sim) = raw(
        config.clone(),
        &hex("01 82 00 0F 04 00 02 00 01 02 00 07 01 00 00 00 00 00 00"),
    );
    assert_eq!(down, hex("01 00 00 0a 02 00 07 01 7f 00 00 01 9c 40"));
    assert!(
        sim.events()
            .iter()
            .any(|(_, e)| matches!(e, SimEvent::Established(Established::UdpBind { .. })))
    );
    // The nightly gost client's malformed "0.0.0.0::2222" (port 0) is repaired.
    let (_, _, sim) = raw(
        config.clone(),
        &hex(
            "01 02 00 19 04 00 02 00 00 02 00 11 03 0d 30 2e 30 2e 30 2e 30 3a 3a 32 32 32 32 00 00",
        ),
    );
    let any: SocketAddr = "0.0.0.0:2222".parse().unwrap();
    assert!(
        sim.events()
            .iter()
            .any(|(_, e)| *e == SimEvent::Listen(Transport::Tcp, Target::from(any)))
    );
    // Unsupported networks get BadRequest (go-gost/x v0.15.5).
    let (down, _, _) = raw(
        config,
        &hex("01 02 00 0C 04 00 02 00 10 02 00 04 03 00 08 AE"),
    );
    assert_eq!(down, [1, 1, 0, 0]);
}

// ---------------------------------------------------------------- silent closes

#[test]
fn bad_version_and_malformed_features_close_silently() {
    let (down, reason, _) = raw(SimConfig::default(), &hex("02 01 00 00"));
    assert_eq!(
        (down, reason),
        (vec![], Some(CloseReason::Malformed(WireError::BadVersion)))
    );
    // Addr feature with an unknown ATYP.
    let (down, reason, _) = raw(
        SimConfig::default(),
        &hex("01 01 00 07 02 00 04 09 00 00 16"),
    );
    assert_eq!(
        (down, reason),
        (
            vec![],
            Some(CloseReason::Malformed(WireError::BadAddressType))
        )
    );
    // User auth shorter than its lengths.
    let (down, reason, _) = raw(SimConfig::default(), &hex("01 01 00 06 01 00 03 05 61 62"));
    assert_eq!(
        (down, reason),
        (vec![], Some(CloseReason::Malformed(WireError::ShortBuffer)))
    );
}

#[test]
fn unknown_features_are_ignored() {
    let (_, reason, sim) = raw(
        SimConfig::default(),
        &hex("01 01 00 0c fe 00 02 11 22 02 00 04 03 00 00 16"),
    );
    assert_eq!(reason, None);
    assert!(matches!(sim.events()[0].1, SimEvent::Dial(..)));
}

#[test]
fn handshake_deadline_is_total_not_per_read() {
    let t0 = start();
    let mut sim = Sim::raw(t0, SimConfig::default());
    let req = hex(CONNECT_22);
    // One byte per second: 10 bytes by 10 s, then silence; the 15 s deadline cuts it.
    for b in &req[..10] {
        sim.send_raw(&[*b]);
        sim.advance(Duration::from_secs(1));
    }
    sim.run();
    let (at, reason) = sim.server_closed().unwrap();
    assert_eq!(reason, CloseReason::HandshakeTimeout);
    assert_eq!(at, t0 + Duration::from_secs(15), "exactly at the deadline");
    assert_eq!(sim.wire_down(), b"", "no response");
}

#[test]
fn deadline_not_hit_one_instant_early() {
    let t0 = start();
    let mut server = Server::new(Arc::new(ServerConfig::default()), t0);
    assert_eq!(server.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    server.handle_timeout(t0 + Duration::from_secs(15) - Duration::from_nanos(1));
    assert_eq!(server.poll_output(), None);
    server.handle_timeout(t0 + Duration::from_secs(15));
    assert_eq!(
        server.poll_output(),
        Some(ServerOutput::Close(CloseReason::HandshakeTimeout))
    );
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn peer_closing_mid_handshake_is_a_silent_close() {
    let mut sim = Sim::raw(start(), SimConfig::default());
    sim.send_raw(&hex("01 01 00 07 02"));
    sim.client_close();
    sim.run();
    assert_eq!(
        sim.server_closed().map(|c| c.1),
        Some(CloseReason::PeerClosed)
    );
    assert_eq!(sim.wire_down(), b"");
}

#[test]
fn dial_deadline_answers_7() {
    let t0 = start();
    let config = cfg(|c| c.target.dial_delay = Duration::from_secs(60));
    let mut sim = Sim::raw(t0, config);
    sim.send_raw(&hex(CONNECT_22));
    sim.run();
    let (at, reason) = sim.server_closed().unwrap();
    assert_eq!(reason, CloseReason::Refused(Status::NETWORK_UNREACHABLE));
    assert_eq!(at, t0 + Duration::from_millis(5) + Duration::from_secs(15));
}

// ---------------------------------------------------------------- nodelay matrix

/// (client nodelay, server nodelay, target speaks first) → the app gets its data.
#[test]
fn nodelay_matrix_never_stalls_except_where_gost_needs_the_client_to_speak() {
    for client_nodelay in [false, true] {
        for server_nodelay in [false, true] {
            for target_first in [false, true] {
                let config = cfg(|c| {
                    c.client_nodelay = client_nodelay;
                    c.server.nodelay = server_nodelay;
                    if target_first {
                        c.target.greeting = b"220 ready\r\n".to_vec();
                        c.target.echo = false;
                    }
                });
                let mut sim = Sim::connect(start(), config, ":21").unwrap();
                if !target_first {
                    sim.app_write(b"GET / HTTP/1.1\r\n\r\n");
                }
                sim.run();
                let label = format!(
                    "client={client_nodelay} server={server_nodelay} target_first={target_first}"
                );
                if target_first && !client_nodelay {
                    // GOST's documented limitation: the lazy request never leaves, the server
                    // times out after 15 s (go-gost/gost#125, #241). Same bytes as GOST.
                    assert_eq!(
                        sim.server_closed().map(|c| c.1),
                        Some(CloseReason::HandshakeTimeout),
                        "{label}"
                    );
                    assert_eq!(sim.app_received(), b"", "{label}");
                } else if target_first {
                    assert_eq!(sim.app_received(), b"220 ready\r\n", "{label}");
                } else {
                    // Includes client=true/server=false, where GOST's client blocks in Connect.
                    assert_eq!(sim.app_received(), b"GET / HTTP/1.1\r\n\r\n", "{label}");
                }
            }
        }
    }
}

#[test]
fn target_closing_without_data_drops_the_held_response() {
    let config = cfg(|c| c.target.close_at_once = true);
    let mut sim = Sim::connect(start(), config, ":22").unwrap();
    sim.app_write(b"x");
    sim.run();
    assert_eq!(sim.wire_down(), b"", "GOST sends nothing at all");
    assert_eq!(sim.client_error(), Some(ClientError::Closed));
    assert!(sim.app_eof());
}

// ---------------------------------------------------------------- forwarding mode and UDP

#[test]
fn forward_mode_ignores_address_and_command_but_honours_udp() {
    let forward = cfg(|c| c.server.forward = true);
    for (req, network) in [
        ("01 01 00 07 02 00 04 03 00 00 00", Transport::Tcp),
        (
            "01 02 00 0C 04 00 02 00 00 02 00 04 03 00 08 AE",
            Transport::Tcp,
        ), // BIND
        ("01 03 00 00", Transport::Tcp), // ASSOCIATE
        (
            "01 81 00 0C 04 00 02 00 01 02 00 04 03 00 00 35",
            Transport::Udp,
        ),
        ("01 01 00 05 04 00 02 00 01", Transport::Udp), // network feature only
    ] {
        let (_, reason, sim) = raw(forward.clone(), &hex(req));
        assert_eq!(reason, None, "{req}");
        assert_eq!(
            sim.events()[0].1,
            SimEvent::Dial(network, DialTarget::Forward),
            "{req}"
        );
    }
}

#[test]
fn udp_flag_or_network_feature_means_udp() {
    for req in [
        "01 81 00 0C 04 00 02 00 01 02 00 04 03 00 00 35",
        "01 01 00 0C 04 00 02 00 01 02 00 04 03 00 00 35",
        "01 81 00 07 02 00 04 03 00 00 35",
    ] {
        let (_, _, sim) = raw(SimConfig::default(), &hex(req));
        assert!(
            matches!(sim.events()[0].1, SimEvent::Dial(Transport::Udp, _)),
            "{req}"
        );
        assert!(
            sim.events()
                .iter()
                .any(|(_, e)| matches!(e, SimEvent::Established(Established::Udp { .. })))
        );
    }
}

#[test]
fn unix_serial_and_ip_networks_are_refused_as_dial_failures() {
    for id in ["00 02", "00 10", "00 11"] {
        let req = hex(&format!("01 01 00 0c 04 00 02 {id} 02 00 04 03 00 00 16"));
        assert_eq!(raw(SimConfig::default(), &req).0, [1, 7, 0, 0]);
    }
}

// ---------------------------------------------------------------- any split, same outcome

#[test]
fn any_split_of_the_request_gives_the_same_result() {
    let input = [hex(CONNECT_22), b"payload".to_vec()].concat();
    for split in 1..input.len() {
        let t0 = start();
        let mut server = Server::new(Arc::new(ServerConfig::default()), t0);
        let mut buf = Vec::new();
        let mut used = 0;
        for chunk in input.chunks(split) {
            buf.extend_from_slice(chunk);
            if used == 0 {
                used = server.handle_input(&buf, t0);
            }
        }
        assert_eq!(used, 11, "split {split}");
        assert_eq!(&buf[used..], b"payload");
        assert!(matches!(server.poll_output(), Some(ServerOutput::Dial(_))));
    }
}

// ---------------------------------------------------------------- target policy

#[test]
fn policy_refuses_with_status_3() {
    use relay_core::policy::Policy;
    let policy = Policy {
        deny: vec!["*.blocked.example".parse().unwrap()],
        block_internal: true,
        ..Policy::default()
    };
    let config = cfg(|c| c.server.policy = Some(Arc::new(policy)));
    // ":22" is this host: the SSRF guard refuses it.
    assert_eq!(raw(config.clone(), &hex(CONNECT_22)).0, [1, 3, 0, 0]);
    let request = |to: &str| {
        Client::connect(Transport::Tcp, &addr(to), None, false)
            .unwrap()
            .request()
            .to_vec()
    };
    assert_eq!(
        raw(config.clone(), &request("x.blocked.example:80")).0,
        [1, 3, 0, 0]
    );
    assert_eq!(raw(config.clone(), &request("10.0.0.1:80")).0, [1, 3, 0, 0]);
    // A public name passes the request check (its addresses are checked after resolution).
    let (_, reason, sim) = raw(config, &request("example.com:80"));
    assert_eq!(reason, None);
    assert!(matches!(sim.events()[0].1, SimEvent::Dial(..)));
}

#[test]
fn resolved_address_refused_is_status_3() {
    let t0 = start();
    let mut server = Server::new(Arc::new(ServerConfig::default()), t0);
    server.handle_input(
        &hex("01 01 00 12 02 00 0f 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 00 50"),
        t0,
    );
    assert!(matches!(server.poll_output(), Some(ServerOutput::Dial(_))));
    server.dial_done(Err(relay_core::server::DialError::Forbidden), t0);
    let Some(ServerOutput::Transmit(bytes)) = server.poll_output() else {
        panic!()
    };
    assert_eq!(bytes.as_slice(), &[1, 3, 0, 0]);
}
