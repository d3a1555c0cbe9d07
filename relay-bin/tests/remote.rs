//! The `relay` binary doing remote port forwarding end to end on 127.0.0.1: a relay server with
//! `bind=true`, and rtcp / rudp services binding ports on it through `-F`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when dropped (the test never leaves processes behind).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn rtcp_and_rudp_through_the_binary() {
    // Targets: a TCP echo and a UDP "echo:" responder.
    let tcp_target = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_target_addr = tcp_target.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in tcp_target.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    let udp_target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_target_addr = udp_target.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp_target.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = udp_target.send_to(&reply, from);
        }
    });

    let relay_port = free_port();
    let rtcp_port = free_port();
    let rudp_port = free_udp_port();
    let _server = relay(&["-L", &format!("relay://127.0.0.1:{relay_port}?bind=true")]);
    // Start the client once the server listens: a failed first attempt would set the node aside
    // for the hop's fail timeout (10 s, as GOST).
    let up = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", relay_port)).is_err() {
        assert!(Instant::now() < up, "relay server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _client = relay(&[
        "-L",
        &format!("rtcp://127.0.0.1:{rtcp_port}/{tcp_target_addr}"),
        "-L",
        &format!("rudp://127.0.0.1:{rudp_port}/{udp_target_addr}"),
        "-F",
        &format!("relay://127.0.0.1:{relay_port}"),
    ]);

    // The bound TCP port appears on the server's host once the client has bound it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", rtcp_port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("rtcp port never opened: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"hello through rtcp").unwrap();
    let mut back = [0u8; 18];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello through rtcp");

    // UDP: retry until the rudp bind is up.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = loop {
        peer.send_to(b"ping", ("127.0.0.1", rudp_port)).unwrap();
        match peer.recv_from(&mut buf) {
            Ok((n, _)) => break n,
            Err(e) if Instant::now() > deadline => panic!("no rudp reply: {e}"),
            Err(_) => {}
        }
    };
    assert_eq!(&buf[..n], b"echo:ping");
}
