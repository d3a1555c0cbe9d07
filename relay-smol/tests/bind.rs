//! Remote forwarding (BIND) end to end on 127.0.0.1: rtcp / rudp clients against our relay
//! server, refusal, rebind after a server restart, and the mux driver's bookkeeping. Every test
//! is bounded by a timeout.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use relay_core::bind::RebindConfig;
use relay_core::mux::{MuxConfig, Role};
use relay_core::route::{Chain, Hop, Node};
use relay_core::select::Strategy;
use relay_core::server::ServerConfig;
use relay_core::target::Target;
use relay_core::{Address, Host};
use relay_smol::ServeConfig;
use relay_smol::mux::Mux;
use relay_smol::remote::{RemoteEvent, RemoteOptions, serve_rtcp, serve_rudp};
use smol::Task;
use smol::channel::{Receiver, unbounded};
use smol::net::{TcpListener, TcpStream, UdpSocket};

/// Runs `f` on smol, failing the test after `secs` seconds.
fn run<F: Future<Output = ()>>(secs: u64, f: F) {
    smol::block_on(f.or(async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        panic!("test timed out after {secs} s");
    }));
}

/// A relay server whose connections all stop when it is dropped.
struct RelayServer {
    addr: SocketAddr,
    _accept: Task<()>,
}

impl RelayServer {
    async fn start(bind: bool, at: &str) -> RelayServer {
        let listener = TcpListener::bind(at).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = ServeConfig::new(ServerConfig {
            bind,
            ..ServerConfig::default()
        });
        config.mux.keep_alive_interval = Duration::from_millis(200);
        config.mux.keep_alive_timeout = Duration::from_millis(1000);
        let config = Arc::new(config);
        let accept = smol::spawn(async move {
            // Connection tasks live in this future: dropping it drops them all.
            let mut conns: Vec<Task<()>> = Vec::new();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let config = config.clone();
                conns.retain(|t| !t.is_finished());
                conns.push(smol::spawn(async move {
                    let _ = relay_smol::handle(s, &config).await;
                }));
            }
        });
        RelayServer {
            addr,
            _accept: accept,
        }
    }
}

fn chain(relay: SocketAddr) -> Mutex<Chain> {
    let hop = Hop::new(
        vec![Node::new(relay)],
        Strategy::RoundRobin,
        1,
        Duration::from_millis(50),
    );
    Mutex::new(Chain::new(vec![hop]))
}

fn options() -> (RemoteOptions, Receiver<RemoteEvent>) {
    let (tx, rx) = unbounded();
    let mux = MuxConfig {
        keep_alive_interval: Duration::from_millis(200),
        keep_alive_timeout: Duration::from_millis(1000),
        ..MuxConfig::default()
    };
    let options = RemoteOptions {
        mux,
        rebind: RebindConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            stable_after: Duration::from_millis(100),
        },
        bind_timeout: Some(Duration::from_secs(3)),
        events: Some(tx),
        ..RemoteOptions::default()
    };
    (options, rx)
}

/// Waits for the next `Bound` event and returns the server's port.
async fn bound_port(events: &Receiver<RemoteEvent>) -> u16 {
    loop {
        match events.recv().await.unwrap() {
            RemoteEvent::Bound { bound: Some(t) } => return t.port,
            RemoteEvent::Bound { bound: None } => panic!("bound without an address"),
            _ => {}
        }
    }
}

/// A TCP echo target.
async fn tcp_echo() -> (Target, Task<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = smol::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            smol::spawn(async move {
                let _ = futures_lite::io::copy(s.clone(), &mut s.clone()).await;
            })
            .detach();
        }
    });
    (Target::from(addr), task)
}

/// A UDP target answering "echo:" + datagram.
async fn udp_echo() -> (Target, Task<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let task = smol::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                return;
            };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from).await;
        }
    });
    (Target::from(addr), task)
}

fn loopback_any() -> Address<'static> {
    Address {
        host: Host::V4(std::net::Ipv4Addr::LOCALHOST),
        port: 0,
    }
}

async fn round_trip(port: u16, seed: u8, len: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let mut back = vec![0u8; len];
    let (w, r) = future::zip(s.clone().write_all(&data), s.read_exact(&mut back)).await;
    w.unwrap();
    r.unwrap();
    assert!(back == data, "bytes differ for connection {seed}");
}

#[test]
fn rtcp_forwards_concurrent_connections() {
    run(15, async {
        let relay = RelayServer::start(true, "127.0.0.1:0").await;
        let (target, _echo) = tcp_echo().await;
        let (options, events) = options();
        let chain = chain(relay.addr);
        let _client = smol::spawn(async move {
            serve_rtcp(&chain, &loopback_any(), &target, &options)
                .await
                .unwrap();
        });
        let port = bound_port(&events).await;
        let conns: Vec<_> = (1..=8u8)
            .map(|i| smol::spawn(round_trip(port, i, 100_000 + i as usize * 777)))
            .collect();
        for c in conns {
            c.await;
        }
        // And again, sequentially, on the same session.
        round_trip(port, 99, 10).await;
        assert!(events.is_empty(), "the session stayed up");
    });
}

#[test]
fn rudp_forwards_two_peers() {
    run(15, async {
        let relay = RelayServer::start(true, "127.0.0.1:0").await;
        let (target, _echo) = udp_echo().await;
        let (options, events) = options();
        let chain = chain(relay.addr);
        let _client = smol::spawn(async move {
            serve_rudp(&chain, &loopback_any(), &target, &options)
                .await
                .unwrap();
        });
        let port = bound_port(&events).await;
        let bound: SocketAddr = ([127, 0, 0, 1], port).into();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 2048];
        for round in 0..3 {
            for (sock, name) in [(&a, "a"), (&b, "b")] {
                let msg = format!("{name}-{round}");
                sock.send_to(msg.as_bytes(), bound).await.unwrap();
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, bound);
                assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
            }
        }
        // A large datagram within the caps goes through whole.
        let big = vec![7u8; 1400];
        a.send_to(&big, bound).await.unwrap();
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(n, 5 + 1400);
    });
}

#[test]
fn bind_refused_when_disabled() {
    run(10, async {
        let relay = RelayServer::start(false, "127.0.0.1:0").await;
        let (target, _echo) = tcp_echo().await;
        let (options, events) = options();
        let chain = chain(relay.addr);
        let _client = smol::spawn(async move {
            serve_rtcp(&chain, &loopback_any(), &target, &options)
                .await
                .unwrap();
        });
        match events.recv().await.unwrap() {
            RemoteEvent::BindFailed { error, .. } => {
                assert_eq!(error, std::io::ErrorKind::ConnectionRefused)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // It keeps trying, with backoff.
        assert!(matches!(
            events.recv().await.unwrap(),
            RemoteEvent::BindFailed { .. }
        ));
    });
}

#[test]
fn rtcp_rebinds_after_server_restart() {
    run(15, async {
        let relay = RelayServer::start(true, "127.0.0.1:0").await;
        let relay_addr = relay.addr;
        let (target, _echo) = tcp_echo().await;
        let (options, events) = options();
        let chain = chain(relay_addr);
        let _client = smol::spawn(async move {
            serve_rtcp(&chain, &loopback_any(), &target, &options)
                .await
                .unwrap();
        });
        let port = bound_port(&events).await;
        round_trip(port, 3, 1000).await;

        // Kill the server: its listener and every connection (so the bound port) go away.
        drop(relay);
        loop {
            if let RemoteEvent::SessionEnded { .. } = events.recv().await.unwrap() {
                break;
            }
        }
        // The bound port is closed with the session.
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

        // Restart on the same address: the client binds again.
        let relay = RelayServer::start(true, &relay_addr.to_string()).await;
        let port = bound_port(&events).await;
        round_trip(port, 5, 5000).await;
        drop(relay);
    });
}

#[test]
fn bad_stream_header_closes_only_that_stream() {
    use relay_core::client::Client;
    run(10, async {
        // A hand-made relay server: OK to the BIND, then one stream with a bad header and one
        // with a good one.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = l.local_addr().unwrap();
        let (target, _echo) = tcp_echo().await;
        let (options, events) = options();
        let mux_config = options.mux;
        let chain = chain(relay_addr);
        let _client = smol::spawn(async move {
            serve_rtcp(&chain, &loopback_any(), &target, &options)
                .await
                .unwrap();
        });
        let (mut conn, _) = l.accept().await.unwrap();
        let request = Client::bind(relay_core::server::Transport::Tcp, &loopback_any(), None)
            .unwrap()
            .request()
            .to_vec();
        let mut got = vec![0u8; request.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, request);
        conn.write_all(relay_core::bind::preamble(([127, 0, 0, 1], 9).into()).as_slice())
            .await
            .unwrap();
        let mux = Mux::spawn(conn, Vec::new(), Role::Client, mux_config).unwrap();
        let mut bad = mux.open().unwrap();
        // A refusal where a header should be: not a valid stream header.
        let mut refusal = [0u8; 4];
        relay_core::wire::Response::status(relay_core::wire::Status::SERVICE_UNAVAILABLE)
            .encode(&mut refusal)
            .unwrap();
        bad.write_all(&refusal).await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(bad.read(&mut buf).await.unwrap(), 0); // the client closed it
        let mut good = mux.open().unwrap();
        good.write_all(relay_core::bind::preamble(([127, 0, 0, 1], 10).into()).as_slice())
            .await
            .unwrap();
        good.write_all(b"still alive").await.unwrap();
        let mut back = [0u8; 11];
        good.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still alive");
        assert!(!mux.is_closed());
        assert!(matches!(
            events.recv().await.unwrap(),
            RemoteEvent::Bound { .. }
        ));
        assert!(events.is_empty());
    });
}

async fn mux_pair(config: MuxConfig) -> (Mux, Mux) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = future::zip(TcpStream::connect(addr), l.accept()).await;
    let client = Mux::spawn(a.unwrap(), Vec::new(), Role::Client, config).unwrap();
    let server = Mux::spawn(b.unwrap().0, Vec::new(), Role::Server, config).unwrap();
    (client, server)
}

#[test]
fn many_streams_leave_no_state() {
    run(15, async {
        let (client, server) = mux_pair(MuxConfig::default()).await;
        let server = Arc::new(server);
        let echo = {
            let server = server.clone();
            smol::spawn(async move {
                while let Ok(s) = server.accept().await {
                    smol::spawn(async move {
                        let _ = futures_lite::io::copy(&s, &mut &s).await;
                        let _ = (&s).close().await;
                    })
                    .detach();
                }
            })
        };
        for round in 0..10 {
            let tasks: Vec<_> = (0..30)
                .map(|i| {
                    let mut s = client.open().unwrap();
                    smol::spawn(async move {
                        let msg = format!("stream {round}/{i}");
                        s.write_all(msg.as_bytes()).await.unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg.as_bytes());
                        s.close().await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        // FINs cross; both tables drain.
        for _ in 0..200 {
            if client.stream_count() == 0 && server.stream_count() == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!((client.stream_count(), server.stream_count()), (0, 0));
        assert_eq!((client.buffered(), server.buffered()), (0, 0));
        assert_eq!(server.pending_accept(), 0);
        drop(echo);
    });
}

#[test]
fn mux_backpressure_moves_large_transfers() {
    run(15, async {
        let config = MuxConfig {
            stream_send_buffer: 4096,
            max_receive_buffer: 16 * 1024,
            max_stream_buffer: 8 * 1024,
            max_frame_size: 1024,
            ..MuxConfig::default()
        };
        let (client, server) = mux_pair(config).await;
        let len = 2 * 1024 * 1024;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut s = client.open().unwrap();
        let writer = {
            let data = data.clone();
            async move {
                s.write_all(&data).await.unwrap();
                s.close().await.unwrap();
            }
        };
        let reader = async {
            let mut t = server.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 777];
            loop {
                let n = t.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() % 7 == 0 {
                    smol::future::yield_now().await; // a slow reader
                }
            }
            got
        };
        let ((), got) = future::zip(writer, reader).await;
        assert!(got == data);
        assert!(server.buffered() <= 16 * 1024 + 1024);
    });
}

#[test]
fn mux_keepalive_detects_a_silent_peer() {
    run(10, async {
        let config = MuxConfig {
            keep_alive_interval: Duration::from_millis(100),
            keep_alive_timeout: Duration::from_millis(300),
            ..MuxConfig::default()
        };
        // A peer that never speaks.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = future::zip(TcpStream::connect(addr), l.accept()).await;
        let _silent = b.unwrap();
        let mux = Mux::spawn(a.unwrap(), Vec::new(), Role::Server, config).unwrap();
        assert_eq!(
            mux.closed().await,
            relay_core::mux::MuxError::KeepAliveTimeout
        );
        assert!(mux.open().is_err());
    });
}

#[test]
fn udp_association_resolves_domains_caps_sizes_and_survives_bad_destinations() {
    use relay_core::udp::Datagram;
    use relay_smol::udp::{DatagramRecv, DatagramSend};
    run(10, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = listener.local_addr().unwrap();
        let mut config = ServeConfig::new(ServerConfig {
            bind: true,
            ..ServerConfig::default()
        });
        config.udp_buffer_size = 16;
        let _server = smol::spawn(relay_smol::serve(listener, Arc::new(config)));
        let (target, _echo) = udp_echo().await;
        let chain = chain(relay_addr);
        // A UDP association: UDP BIND of 0.0.0.0:0.
        let any = Address {
            host: Host::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
        };
        let (stream, bound) =
            relay_smol::route::bind(&chain, relay_core::server::Transport::Udp, &any, None)
                .await
                .unwrap();
        assert!(bound.is_some());
        let (r, w) = futures_lite::io::split(stream);
        let mut send = DatagramSend::new(w);
        let mut recv = DatagramRecv::new(r, &[]);

        // An unresolvable destination drops that datagram only (GOST ends the association).
        let nowhere = Address {
            host: Host::Domain(b"no-such-host.invalid"),
            port: 9,
        };
        send.send(&Datagram {
            addr: nowhere,
            payload: b"lost",
        })
        .await
        .unwrap();
        // A domain destination is resolved; a datagram over the cap is cut to 16 bytes.
        let port = target.port;
        let localhost = Address {
            host: Host::Domain(b"localhost"),
            port,
        };
        send.send(&Datagram {
            addr: localhost,
            payload: b"0123456789abcdefTAIL",
        })
        .await
        .unwrap();
        let d = recv.recv().await.unwrap().unwrap();
        // The reply comes back tagged with its source (the target), cut to 16 bytes again.
        assert_eq!(d.addr.port, port);
        assert_eq!(d.payload, b"echo:0123456789a");
    });
}
