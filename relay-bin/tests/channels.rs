//! The `relay` binary over TLS and WebSocket channels, end to end on 127.0.0.1: a relay
//! server process, a forwarding client process (or one process from YAML), an echo target.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A running `relay`, killed when dropped.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Relay {
    Relay(
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Starts `relay` and waits (up to 5 s) for `needle` in its log on stderr.
fn start_logged(args: &[&str], needle: &str) -> Relay {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = false;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if !seen && line.contains(&needle) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    let relay = Relay(child);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("relay did not log its listener");
    relay
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on {port}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// An echo server on an ephemeral port, serving for the rest of the test binary's life.
fn echo_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    port
}

/// Sends a few kilobytes through the forwarding port and expects them back.
fn echo_through(port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let msg: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    s.write_all(&msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    assert_eq!(back, msg);
    Ok(())
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "relay-channels-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` (a leaf for localhost / 127.0.0.1) into `dir`.
fn write_pki(dir: &std::path::Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "relay test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// A relay server on `server_url` (with `{port}` replaced) and a tcp forwarder through
/// `-F node_url`; returns whether an echo made it through.
fn cli_pair(server_url: &str, node_url: &str) -> std::io::Result<()> {
    let target = echo_target();
    let sport = free_port();
    let server_url = server_url.replace("{port}", &sport.to_string());
    let _server = start(&["-L", &server_url]);
    wait_port(sport);
    let cport = free_port();
    let node_url = node_url.replace("{port}", &sport.to_string());
    let _client = start(&[
        "-L",
        &format!("tcp://127.0.0.1:{cport}/127.0.0.1:{target}"),
        "-F",
        &node_url,
    ]);
    wait_port(cport);
    echo_through(cport)
}

#[test]
fn cli_tls_self_signed_client_not_verifying() {
    cli_pair(
        "relay+tls://127.0.0.1:{port}",
        "relay+tls://127.0.0.1:{port}",
    )
    .unwrap();
}

#[test]
fn cli_tls_secure_with_right_and_wrong_ca() {
    let dir = temp_dir();
    write_pki(&dir);
    let d = dir.display();
    let server = format!("relay+tls://127.0.0.1:{{port}}?cert={d}/cert.pem&key={d}/key.pem");
    cli_pair(
        &server,
        &format!("relay+tls://127.0.0.1:{{port}}?secure=true&ca={d}/ca.pem&serverName=localhost"),
    )
    .unwrap();
    let other = temp_dir();
    write_pki(&other);
    let o = other.display();
    cli_pair(
        &server,
        &format!("relay+tls://127.0.0.1:{{port}}?secure=true&ca={o}/ca.pem"),
    )
    .unwrap_err();
    // secure=true against the generated self-signed certificate fails too.
    cli_pair(
        "relay+tls://127.0.0.1:{port}",
        &format!("relay+tls://127.0.0.1:{{port}}?secure=true&ca={d}/ca.pem"),
    )
    .unwrap_err();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}

#[test]
fn cli_ws_default_and_custom_path() {
    cli_pair("relay+ws://127.0.0.1:{port}", "relay+ws://127.0.0.1:{port}").unwrap();
    cli_pair(
        "relay+ws://127.0.0.1:{port}?path=/tunnel",
        "relay+ws://127.0.0.1:{port}?path=/tunnel&host=example.com",
    )
    .unwrap();
    cli_pair(
        "relay+ws://127.0.0.1:{port}?path=/tunnel",
        "relay+ws://127.0.0.1:{port}",
    )
    .unwrap_err();
}

#[test]
fn cli_wss_default_and_custom_path() {
    cli_pair(
        "relay+wss://127.0.0.1:{port}",
        "relay+wss://127.0.0.1:{port}",
    )
    .unwrap();
    cli_pair(
        "relay+wss://127.0.0.1:{port}?path=/x",
        "relay+wss://127.0.0.1:{port}?path=/x",
    )
    .unwrap();
}

#[test]
fn yaml_wss_server_and_client_in_one_process() {
    let dir = temp_dir();
    write_pki(&dir);
    let target = echo_target();
    let (sport, cport) = (free_port(), free_port());
    let d = dir.display();
    let config = format!(
        r#"
services:
- name: relay-wss
  addr: 127.0.0.1:{sport}
  handler: {{type: relay}}
  listener:
    type: wss
    tls: {{certFile: {d}/cert.pem, keyFile: {d}/key.pem}}
    metadata: {{path: /relay}}
- name: forward
  addr: 127.0.0.1:{cport}
  handler: {{type: tcp, chain: chain-0}}
  listener: {{type: tcp}}
  forwarder:
    nodes:
    - {{name: t, addr: "127.0.0.1:{target}"}}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: 127.0.0.1:{sport}
      connector: {{type: relay}}
      dialer:
        type: wss
        tls: {{secure: true, caFile: {d}/ca.pem, serverName: localhost}}
        metadata: {{path: /relay, host: relay.example}}
"#
    );
    let file = dir.join("relay.yaml");
    std::fs::write(&file, config).unwrap();
    let _relay = start(&["-C", file.to_str().unwrap()]);
    wait_port(sport);
    wait_port(cport);
    echo_through(cport).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cli_quic_self_signed_and_secure_with_ca() {
    let dir = temp_dir();
    write_pki(&dir);
    let d = dir.display();
    let target = echo_target();
    for (server_q, node_q) in [
        (String::new(), String::new()),
        (
            format!("?cert={d}/cert.pem&key={d}/key.pem"),
            format!("?secure=true&ca={d}/ca.pem&serverName=localhost&keepAlive=true&ttl=5s"),
        ),
    ] {
        let sport = free_udp_port();
        let _server = start_logged(
            &["-L", &format!("relay+quic://127.0.0.1:{sport}{server_q}")],
            "(quic)",
        );
        let cport = free_port();
        let _client = start(&[
            "-L",
            &format!("tcp://127.0.0.1:{cport}/127.0.0.1:{target}"),
            "-F",
            &format!("relay+quic://127.0.0.1:{sport}{node_q}"),
        ]);
        wait_port(cport);
        echo_through(cport).unwrap();
        echo_through(cport).unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mio_runtime_refuses_tls_and_ws_in_one_line() {
    for url in [
        "relay+tls://127.0.0.1:0",
        "relay+wss://127.0.0.1:0",
        "relay+quic://127.0.0.1:0",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["-runtime", "mio", "-L", url])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0));
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains("is not supported on the mio runtime"),
            "{err}"
        );
    }
}
