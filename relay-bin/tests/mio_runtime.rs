//! The `relay` binary on the mio runtime: services run, refusals are one line, signals stop it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .arg("-runtime")
            .arg("mio")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn wait_listening(port: u16) {
    let end = Instant::now() + T;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` with kill(1) and waits (bounded) for the exit code.
fn signal(p: &mut Proc, sig: &str) -> Option<i32> {
    let pid = p.0.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
    let end = Instant::now() + T;
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < end, "did not stop on {sig}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unsupported_handler_is_one_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["-runtime", "mio", "-L", "tcp://127.0.0.1:0/127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "service service-0: forwarding without a relay chain is not run by the mio runtime yet\n"
    );
}

#[test]
fn forwarding_through_a_relay_then_sigterm() {
    // Echo target.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let udp_echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp_echo.recv_from(&mut buf) {
            let _ = udp_echo.send_to(&buf[..n], from);
        }
    });

    let relay_port = free_port();
    let mut server = spawn(&[
        "-L",
        &format!("relay://127.0.0.1:{relay_port}?nodelay=true"),
    ]);
    wait_listening(relay_port);
    let tcp_port = free_port();
    let udp_port_local = free_port();
    let mut client = spawn(&[
        "-L",
        &format!("tcp://127.0.0.1:{tcp_port}/127.0.0.1:{echo_port}"),
        "-L",
        &format!("udp://127.0.0.1:{udp_port_local}/127.0.0.1:{udp_port}"),
        "-F",
        &format!("relay://127.0.0.1:{relay_port}"),
    ]);
    wait_listening(tcp_port);

    let mut s = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"over mio").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"over mio");

    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(T)).unwrap();
    u.send_to(b"dgram", ("127.0.0.1", udp_port_local)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"dgram");

    assert_eq!(
        signal(&mut client, "-TERM"),
        Some(0),
        "clean stop on SIGTERM"
    );
    assert_eq!(signal(&mut server, "-INT"), Some(0), "clean stop on SIGINT");
}

#[test]
fn targetless_forward_through_a_chained_relay_to_a_forwarding_relay() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    // Last: a forwarding relay server (its own target). Middle: a relay server dialing
    // through a chain to it. Entry: a TCP forward with no target (":0"), chained to the middle.
    let last = free_port();
    let _last = spawn(&[
        "-L",
        &format!("relay://127.0.0.1:{last}/127.0.0.1:{echo_port}"),
    ]);
    wait_listening(last);
    let middle = free_port();
    let _middle = spawn(&[
        "-L",
        &format!("relay://127.0.0.1:{middle}"),
        "-F",
        &format!("relay://127.0.0.1:{last}"),
    ]);
    wait_listening(middle);
    let entry = free_port();
    let _entry = spawn(&[
        "-L",
        &format!("tcp://127.0.0.1:{entry}"),
        "-F",
        &format!("relay://127.0.0.1:{middle}"),
    ]);
    wait_listening(entry);

    let mut s = TcpStream::connect(("127.0.0.1", entry)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"three processes").unwrap();
    let mut back = [0u8; 15];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"three processes");
}
