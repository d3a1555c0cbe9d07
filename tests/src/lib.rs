//! Support code for the end-to-end suite: the `relay` process guard, free loopback ports,
//! loopback targets (TCP echo, server-speaks-first banner, UDP echo), a few raw clients
//! (relay, SOCKS5, HTTP CONNECT) and hash checks for bulk data.
//!
//! Every socket operation here has a timeout and every helper thread stops by itself, so a
//! broken relay fails a test within seconds instead of hanging the suite.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Timeout of every blocking socket operation in the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a relay process gets to open its listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Loopback targets stop when dropped, and by themselves after this backstop (long enough for
/// the longest documented soak run).
const TARGET_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// The runtime a relay process runs on (`-runtime smol|mio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `-runtime smol`
    Smol,
    /// `-runtime mio`
    Mio,
}

impl Runtime {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Smol => "smol",
            Runtime::Mio => "mio",
        }
    }
}

/// One test body, run on both runtimes: `both_runtimes!(fn name(rt: Runtime) { ... })` makes
/// the tests `name::smol` and `name::mio` (so `cargo test smol` selects one runtime).
#[macro_export]
macro_rules! both_runtimes {
    ($(#[$meta:meta])* fn $name:ident($rt:ident: Runtime) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($rt: $crate::Runtime) $body

            #[test]
            fn smol() {
                body($crate::Runtime::Smol)
            }

            #[test]
            fn mio() {
                body($crate::Runtime::Mio)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A port on 127.0.0.1 that is free for both TCP and UDP right now, outside Linux's ephemeral
/// range (so outgoing connections cannot take it before the relay binds it), and never handed
/// out twice by this process. A conflict with another process is still possible; [`Relay::start`]
/// retries with fresh ports when the relay reports one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Start somewhere process-specific so concurrent test binaries (or worktrees) spread out.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7919) ^ nanos()) % SPAN + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (LOW + n % SPAN) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// `127.0.0.1:port`
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------------------------
// The relay binary

/// Path of the `relay` binary: `$RELAY_BIN`, else `<target>/<profile>/relay` next to this test
/// executable, built once per test process with `cargo build -p relay-bin --bin relay` (a no-op
/// when it is up to date).
pub fn relay_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RELAY_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current_exe");
        // <target>/<profile>/deps/<test-exe>
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("test executable outside a target dir")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "relay-bin", "--bin", "relay"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the relay binary");
        assert!(status.success(), "cargo build -p relay-bin failed");
        let bin = profile_dir.join(format!("relay{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A listener the relay process is expected to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port on 127.0.0.1: ready once it accepts a connection.
    Tcp(u16),
    /// A UDP port on 127.0.0.1: ready once we can no longer bind it ourselves.
    Udp(u16),
}

/// A running `relay` process; killed on drop. Its stderr is captured (and printed when the
/// guard is dropped during a panic, i.e. when a test fails).
pub struct Relay {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
    args: Vec<String>,
}

impl Relay {
    /// Starts `relay -runtime <rt> <args>` and waits until every listener in the spec accepts.
    /// `spec` is called again with fresh ports (up to 5 attempts) when the process exits
    /// complaining that an address is in use. Panics with the relay's stderr on failure.
    pub fn start(rt: Runtime, mut spec: impl FnMut() -> (Vec<String>, Vec<Listen>)) -> Relay {
        let mut last = String::new();
        for _ in 0..5 {
            let (args, ready) = spec();
            match Relay::try_start(rt, &args, &ready) {
                Ok(r) => return r,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    /// One attempt of [`Relay::start`].
    pub fn try_start(rt: Runtime, args: &[String], ready: &[Listen]) -> Result<Relay, String> {
        let mut full = vec!["-runtime".to_string(), rt.name().to_string()];
        full.extend(args.iter().cloned());
        let mut child = Command::new(relay_bin())
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn relay: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let reader = Some(thread::spawn(move || collect(pipe, sink)));
        let mut relay = Relay {
            child,
            stderr,
            reader,
            args: full,
        };
        relay.wait_ready(ready)?;
        Ok(relay)
    }

    fn wait_ready(&mut self, ready: &[Listen]) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending: Vec<Listen> = ready.to_vec();
        let mut child_exited = None;
        while !pending.is_empty() {
            pending.retain(|l| !is_listening(*l));
            if pending.is_empty() {
                break;
            }
            if let Some(status) = self.try_wait() {
                child_exited = Some(status);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "relay {:?}: {:?} not ready after {:?}\nstderr:\n{}",
                    self.args,
                    pending,
                    START_TIMEOUT,
                    self.stderr()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(status) = child_exited {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            return Err(format!(
                "relay {:?} exited ({status}) before listening\nstderr:\n{}",
                self.args,
                self.stderr()
            ));
        }
        Ok(())
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors the process holds now (Linux `/proc`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// What the process's descriptors point to (for failure messages).
    pub fn fd_targets(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.pid());
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Resident memory of the process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Waits up to `within` for the descriptor count to come back to `baseline` (or below);
    /// returns the last count seen.
    pub fn fds_settle(&self, baseline: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let n = self.open_fds();
            if n <= baseline || Instant::now() > deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!("---- relay {:?} stderr ----\n{}", self.args, self.stderr());
        }
    }
}

fn collect(mut pipe: impl Read, sink: Arc<Mutex<String>>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

fn is_listening(l: Listen) -> bool {
    match l {
        Listen::Tcp(port) => {
            TcpStream::connect_timeout(&local(port), Duration::from_millis(200)).is_ok()
        }
        Listen::Udp(port) => UdpSocket::bind(local(port)).is_err(),
    }
}

/// The kind of a listener [`spawn_relay`] allocates a port for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP listener.
    Tcp,
    /// A UDP listener.
    Udp,
}

/// Starts a relay process listening on one fresh port per entry of `listeners`; `make_args`
/// builds the command line from those ports (in order). Returns the guard and the ports.
pub fn spawn_relay(
    rt: Runtime,
    listeners: &[Proto],
    make_args: impl Fn(&[u16]) -> Vec<String>,
) -> (Relay, Vec<u16>) {
    let mut ports = Vec::new();
    let relay = Relay::start(rt, || {
        ports = listeners.iter().map(|_| free_port()).collect();
        let ready = listeners
            .iter()
            .zip(&ports)
            .map(|(l, &p)| match l {
                Proto::Tcp => Listen::Tcp(p),
                Proto::Udp => Listen::Udp(p),
            })
            .collect();
        (make_args(&ports), ready)
    });
    (relay, ports)
}

/// A relay server `relay -L relay://127.0.0.1:P<suffix>` (suffix: `?nodelay=true`, `/target`,
/// …; `userinfo` like `user:pass@` goes before the host). Returns the guard and P.
pub fn relay_server(rt: Runtime, userinfo: &str, suffix: &str) -> (Relay, u16) {
    let (r, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
        vec![
            "-L".into(),
            format!("relay://{userinfo}127.0.0.1:{}{suffix}", p[0]),
        ]
    });
    (r, p[0])
}

/// A TCP port forwarder `relay -L tcp://127.0.0.1:Q/127.0.0.1:<target> -F <chain…>`. Returns
/// the guard and Q.
pub fn tcp_forwarder(rt: Runtime, target: u16, chain: &[String]) -> (Relay, u16) {
    let (r, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
        let mut a = vec![
            "-L".to_string(),
            format!("tcp://127.0.0.1:{}/127.0.0.1:{target}", p[0]),
        ];
        for f in chain {
            a.push("-F".into());
            a.push(f.clone());
        }
        a
    });
    (r, p[0])
}

/// Runs `relay <args>` to completion (bounded by `timeout`, killed after it) and returns its
/// exit status (None when it had to be killed) and stderr.
pub fn run_to_exit(rt: Runtime, args: &[&str], timeout: Duration) -> (Option<ExitStatus>, String) {
    let mut child = Command::new(relay_bin())
        .args(["-runtime", rt.name()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relay");
    let stderr = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().expect("piped stderr");
    let sink = stderr.clone();
    let reader = thread::spawn(move || collect(pipe, sink));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = reader.join();
    let text = stderr.lock().map(|s| s.clone()).unwrap_or_default();
    (status, text)
}

/// `args` as owned strings.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Loopback targets

/// A TCP server on 127.0.0.1 running `handler` on a thread per connection. Stops accepting
/// when dropped (or after 30 s); connection threads end with their sockets' timeouts.
pub struct TcpTarget {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
}

impl TcpTarget {
    /// Starts a server calling `handler` for each accepted connection (timeouts already set).
    pub fn spawn(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let handler = Arc::new(handler);
        let (s, a) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            let end = Instant::now() + TARGET_LIFETIME;
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        set_timeouts(&stream);
                        let h = handler.clone();
                        thread::spawn(move || h(stream));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TcpTarget {
            port,
            stop,
            accepted,
        }
    }

    /// Echoes everything; on EOF it shuts down its write side.
    pub fn echo() -> TcpTarget {
        TcpTarget::spawn(echo_loop)
    }

    /// Sends `banner` on accept (server speaks first), then echoes.
    pub fn banner(banner: &'static [u8]) -> TcpTarget {
        TcpTarget::spawn(move |mut s| {
            if s.write_all(banner).is_ok() {
                echo_loop(s)
            }
        })
    }

    /// Reads until EOF, then replies `"got <n> bytes, fnv <hash>"` and closes.
    pub fn reply_after_eof() -> TcpTarget {
        TcpTarget::spawn(|mut s| {
            let mut data = Vec::new();
            if s.read_to_end(&mut data).is_ok() {
                let _ = s.write_all(eof_reply(&data).as_bytes());
            }
        })
    }

    /// Sends `reply` and closes at once (the target closes first).
    pub fn say_and_close(reply: &'static [u8]) -> TcpTarget {
        TcpTarget::spawn(move |mut s| {
            let _ = s.write_all(reply);
            let _ = s.shutdown(Shutdown::Both);
        })
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The reply of [`TcpTarget::reply_after_eof`] for `data`.
pub fn eof_reply(data: &[u8]) -> String {
    format!("got {} bytes, fnv {:016x}", data.len(), fnv(data))
}

fn echo_loop(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A UDP echo server on 127.0.0.1 (each datagram goes back to its sender). Stops when dropped
/// or after 30 s.
pub struct UdpEcho {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU32>,
}

impl UdpEcho {
    /// Starts the server on a fresh port.
    pub fn start() -> UdpEcho {
        UdpEcho::on(UdpSocket::bind("127.0.0.1:0").expect("bind udp echo"))
    }

    /// A TCP echo and a UDP echo on the same port number.
    pub fn with_tcp_echo() -> (TcpTarget, UdpEcho) {
        loop {
            let tcp = TcpTarget::echo();
            if let Ok(s) = UdpSocket::bind(local(tcp.port)) {
                return (tcp, UdpEcho::on(s));
            }
        }
    }

    fn on(socket: UdpSocket) -> UdpEcho {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let port = socket.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU32::new(0));
        let (s, r) = (stop.clone(), received.clone());
        thread::spawn(move || {
            let end = Instant::now() + TARGET_LIFETIME;
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        UdpEcho {
            port,
            stop,
            received,
        }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u32 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

fn set_timeouts(s: &TcpStream) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
}

/// Connects to 127.0.0.1:`port` with timeouts set on the stream.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&local(port), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    set_timeouts(&s);
    s
}

/// A UDP socket on 127.0.0.1 with timeouts, connected to 127.0.0.1:`port`.
pub fn udp_peer(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp peer");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.connect(local(port)).expect("udp connect");
    s
}

/// Reads exactly `n` bytes (panics with context on EOF or timeout).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) => panic!(
                "EOF after {got} of {n} bytes: {:?}",
                String::from_utf8_lossy(&buf[..got])
            ),
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {got} of {n} bytes: {e}"),
        }
    }
    buf
}

/// What a read-until-end saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Orderly EOF.
    Eof,
    /// Connection reset (or another error that is not a timeout).
    Reset(String),
    /// Nothing happened before the timeout.
    Timeout,
}

/// Reads until EOF, an error or `within` passes; returns the bytes and how it ended.
pub fn read_to_end_within(s: &mut TcpStream, within: Duration) -> (Vec<u8>, End) {
    let deadline = Instant::now() + within;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (data, End::Timeout);
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return (data, End::Eof),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (data, End::Timeout);
            }
            Err(e) => return (data, End::Reset(e.to_string())),
        }
    }
}

/// Asserts that the peer closes (EOF or reset) within `within` without sending a byte.
pub fn assert_closed_without_data(s: &mut TcpStream, within: Duration, what: &str) {
    let (data, end) = read_to_end_within(s, within);
    assert!(
        data.is_empty() && end != End::Timeout,
        "{what}: expected a close without data within {within:?}, got {} bytes {:02x?} and {end:?}",
        data.len(),
        &data[..data.len().min(32)]
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a, 64 bit.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Sends `len` pattern bytes through the TCP port (from a writer thread) and checks that the
/// same bytes come back (hash compared), reading concurrently.
pub fn echo_check(port: u16, len: usize, seed: u64) {
    let mut s = connect(port);
    echo_check_on(&mut s, len, seed);
}

/// [`echo_check`] on an established stream (left open).
pub fn echo_check_on(s: &mut TcpStream, len: usize, seed: u64) {
    let data = pattern(len, seed);
    let want = fnv(&data);
    let mut w = s.try_clone().expect("clone stream");
    let writer = thread::spawn(move || -> io::Result<()> {
        for chunk in data.chunks(16 * 1024) {
            w.write_all(chunk)?;
        }
        Ok(())
    });
    let got = read_n(s, len);
    writer
        .join()
        .expect("writer thread")
        .expect("write through tunnel");
    assert_eq!(
        fnv(&got),
        want,
        "echoed {len} bytes differ (seed {seed}) from what was sent"
    );
}

/// Writes `request` to a fresh connection to `port` and returns everything read until the
/// server closes (or `within` passes) and how it ended.
pub fn raw_exchange(port: u16, request: &[u8], within: Duration) -> (Vec<u8>, End) {
    let mut s = connect(port);
    s.write_all(request).expect("write raw request");
    read_to_end_within(&mut s, within)
}

/// SOCKS5 (no auth) CONNECT to 127.0.0.1:`target` through the SOCKS5 server on `port`.
/// Returns the stream ready for payload.
pub fn socks5_connect(port: u16, target: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(&[5, 1, 0]).expect("socks5 greeting");
    let m = read_n(&mut s, 2);
    assert_eq!(m, [5, 0], "socks5 method selection");
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&target.to_be_bytes());
    s.write_all(&req).expect("socks5 request");
    let head = read_n(&mut s, 4);
    assert_eq!(&head[..3], &[5, 0, 0], "socks5 reply {head:02x?}");
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => read_n(&mut s, 1)[0] as usize + 2,
        t => panic!("socks5 reply ATYP {t}"),
    };
    read_n(&mut s, rest);
    s
}

/// HTTP CONNECT to 127.0.0.1:`target` through the HTTP proxy on `port`; returns the stream
/// after the `200` response head.
pub fn http_connect(port: u16, target: u16) -> TcpStream {
    let mut s = connect(port);
    let req = format!("CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("http connect");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            Ok(_) => panic!(
                "EOF in HTTP response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading HTTP response head: {e} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 8192, "HTTP response head too long");
    }
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "HTTP CONNECT response: {text:?}"
    );
    s
}

/// Sends `msg` on a UDP socket and returns the first datagram received back.
pub fn udp_roundtrip(s: &UdpSocket, msg: &[u8]) -> Vec<u8> {
    s.send(msg).expect("udp send");
    let mut buf = [0u8; 65536];
    let n = s
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("udp reply to {:?}: {e}", String::from_utf8_lossy(msg)));
    buf[..n].to_vec()
}

/// Writes `text` to a fresh file under the temp dir and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "relay-e2e-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Rewrites the `addr:` values of a seed configuration: each `(from, to)` replaces a line whose
/// value is exactly `from` (so `:22` does not touch `:2222`).
pub fn rewrite_addrs(yaml: &str, map: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let replaced = trimmed.strip_prefix("addr:").and_then(|v| {
            let v = v.trim().trim_matches('"');
            map.iter()
                .find(|(from, _)| *from == v)
                .map(|(_, to)| format!("{indent}addr: \"{to}\""))
        });
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A seed configuration shipped in relay-bin/examples.
pub fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../relay-bin/examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The stderr lines that are not log records (`<secs>.<millis> <level> …`).
pub fn non_log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let mut parts = l.splitn(3, ' ');
            let ts = parts.next().unwrap_or("");
            let level = parts.next().unwrap_or("");
            !(ts.contains('.')
                && ts.chars().all(|c| c.is_ascii_digit() || c == '.')
                && ["error", "warn", "info", "debug", "trace"].contains(&level))
        })
        .collect()
}

/// A listener on 127.0.0.1 whose accepted connections are handed to the test (to play a
/// relay server by hand and look at the exact bytes a relay client sends).
pub struct Accepting {
    /// The port it listens on.
    pub port: u16,
    rx: std::sync::mpsc::Receiver<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Accepting {
    /// Starts listening.
    pub fn start() -> Accepting {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        thread::spawn(move || {
            let end = Instant::now() + TARGET_LIFETIME;
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        set_timeouts(&stream);
                        if tx.send(stream).is_err() {
                            return;
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Accepting { port, rx, stop }
    }

    /// The next accepted connection (panics after `IO_TIMEOUT`).
    pub fn next(&self) -> TcpStream {
        self.rx
            .recv_timeout(IO_TIMEOUT)
            .expect("no connection accepted in time")
    }

    /// The next connection if one arrives within `within`.
    pub fn next_within(&self, within: Duration) -> Option<TcpStream> {
        self.rx.recv_timeout(within).ok()
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
