//! Shared helpers: a loop on its own thread, echo targets, a blocking relay client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use relay_core::client::Client;
use relay_core::server::Transport;
use relay_core::{Address, Decoded};
use relay_mio::{EventLoop, StopHandle};

/// Socket timeout for every blocking test socket.
pub const T: Duration = Duration::from_secs(5);

/// A running loop; stopped and joined on drop.
pub struct Running {
    stop: StopHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let result = t.join();
            if !std::thread::panicking() {
                result.expect("loop thread").expect("loop result");
            }
        }
    }
}

/// Runs `event_loop` on a thread.
pub fn run(mut event_loop: EventLoop) -> Running {
    let stop = event_loop.stop_handle();
    let thread = std::thread::spawn(move || event_loop.run());
    Running {
        stop,
        thread: Some(thread),
    }
}

/// A listener on an ephemeral loopback port.
pub fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A TCP echo server: each connection echoes until end of stream, then half-closes.
pub fn tcp_echo() -> SocketAddr {
    let (l, addr) = listener();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(T)).unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A UDP echo server.
pub fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    addr
}

/// A port nobody listens on.
pub fn closed_port() -> SocketAddr {
    let (l, a) = listener();
    drop(l);
    a
}

/// A connected blocking stream with timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

/// The bytes of a CONNECT request to `target`.
pub fn request(transport: Transport, target: &str, creds: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let addr = Address::parse(target).unwrap();
    let mut c = Client::connect(transport, &addr, creds, false).unwrap();
    c.take_request().to_vec()
}

/// Reads until `n` bytes or end of stream.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut out[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => panic!("read: {e} after {got} of {n} bytes"),
        }
    }
    out.truncate(got);
    out
}

/// Reads to end of stream (a reset counts as the end).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Strips one relay response from the front of the stream; returns its status byte.
pub fn read_response(s: &mut TcpStream) -> u8 {
    let mut c =
        Client::connect(Transport::Tcp, &Address::parse(":1").unwrap(), None, false).unwrap();
    let mut head = Vec::new();
    loop {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before the response");
        head.push(b[0]);
        match c.handle_response(&head) {
            Ok(Decoded::Partial { .. }) => continue,
            Ok(Decoded::Complete { .. }) => return 0,
            Err(relay_core::client::ClientError::Rejected(st)) => return st.0,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A deterministic pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
