//! Fault injection on loopback: targets resetting mid-stream, clients vanishing mid-handshake,
//! a mux session killed with 50 streams open. After each, the relay processes' file
//! descriptors come back to their baseline and they keep serving.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use relay_core::Address;
use relay_core::client::Client;
use relay_core::server::Transport;
use relay_tests::*;

fn connect_request(target: u16) -> Vec<u8> {
    let text = format!("127.0.0.1:{target}");
    let addr = Address::parse(&text).unwrap();
    Client::connect(Transport::Tcp, &addr, None, false)
        .unwrap()
        .take_request()
        .to_vec()
}

/// One tunnel through the server, so that lazily created runtime descriptors exist before the
/// baseline is taken.
fn warm_up(port: u16, echo: u16) {
    let mut s = connect(port);
    let mut req = connect_request(echo);
    req.extend_from_slice(b"warm");
    s.write_all(&req).unwrap();
    assert_eq!(read_n(&mut s, 8), b"\x01\x00\x00\x00warm");
    drop(s);
    thread::sleep(Duration::from_millis(200));
}

/// A target that reads a little, answers, then resets the connection (SO_LINGER 0 is not in
/// std: dropping with unread input in the receive queue makes Linux send RST).
fn resetting_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming().take(60) {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4];
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                if s.read_exact(&mut buf).is_ok() {
                    let _ = s.write_all(b"half");
                    // Unread bytes are still queued: closing now sends RST.
                    thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    port
}

both_runtimes!(
    fn resets_and_vanishing_clients_leave_no_descriptors_behind(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (server, p) = relay_server(rt, "", "");
        warm_up(p, echo.port);
        let baseline = server.open_fds();
        let reset_port = resetting_target();
        let mut handles = Vec::new();
        for i in 0..50u16 {
            handles.push(thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(local(p)) else {
                    return;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                match i % 3 {
                    // The target resets mid-stream while the client keeps sending.
                    0 => {
                        let mut req = connect_request(reset_port);
                        req.extend_from_slice(b"data");
                        let _ = s.write_all(&req);
                        let _ = s.write_all(&[7u8; 64 * 1024]);
                        let mut sink = Vec::new();
                        let _ = s.read_to_end(&mut sink);
                    }
                    // The client vanishes mid-handshake.
                    1 => {
                        let _ = s.write_all(&connect_request(reset_port)[..6]);
                    }
                    // The client vanishes mid-tunnel.
                    _ => {
                        let mut req = connect_request(reset_port);
                        req.extend_from_slice(b"data");
                        let _ = s.write_all(&req);
                    }
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let left = server.fds_settle(baseline, Duration::from_secs(5));
        assert!(
            left <= baseline,
            "descriptors: baseline {baseline}, after faults {left}"
        );
        // And it still serves.
        let mut s = connect(p);
        let mut req = connect_request(echo.port);
        req.extend_from_slice(b"ping");
        s.write_all(&req).unwrap();
        assert_eq!(read_n(&mut s, 8), b"\x01\x00\x00\x00ping");
    }
);

both_runtimes!(
    fn mux_session_killed_with_50_streams_open(rt: Runtime) {
        let echo = TcpTarget::echo();
        let (server, p) = relay_server(rt, "", "?bind=true");
        warm_up(p, echo.port);
        let baseline = server.open_fds();
        let before = server.fd_targets();
        let (mut client, s) = spawn_relay(rt, &[Proto::Tcp], |s| {
            args(&[
                "-L",
                &format!("rtcp://127.0.0.1:{}/127.0.0.1:{}", s[0], echo.port),
                "-F",
                &format!("relay://127.0.0.1:{p}"),
            ])
        });
        let bound = s[0];
        let mut streams = Vec::new();
        for _ in 0..50 {
            let mut c = connect(bound);
            c.write_all(b"ping").unwrap();
            assert_eq!(read_n(&mut c, 4), b"ping");
            streams.push(c);
        }
        // The remote-forwarding client dies with 50 streams open.
        client.kill();
        for c in &mut streams {
            let (_, end) = read_to_end_within(c, IO_TIMEOUT);
            assert_ne!(end, End::Timeout, "a stream of the dead session stays open");
        }
        let left = server.fds_settle(baseline, Duration::from_secs(5));
        assert!(
            left <= baseline,
            "server descriptors: baseline {before:?}, after {:?}",
            server.fd_targets()
        );
        assert!(
            TcpStream::connect(local(bound)).is_err(),
            "the bound port is closed"
        );
    }
);
