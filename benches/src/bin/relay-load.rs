//! `relay-load`: end-to-end load figures for relay against direct loopback and a socat pair.
//!
//! ```sh
//! cargo run --release -p relay-benches --bin relay-load            # a few minutes
//! cargo run --release -p relay-benches --bin relay-load -- --quick # about 30 s (CI)
//! ```
//!
//! Every topology runs on 127.0.0.1. The targets (a byte sink, a TCP echo, a UDP echo and an
//! accept-and-hold listener) are threads of this process; the systems under test are child
//! processes:
//!
//! * `direct`: the client talks to the target itself (the ceiling);
//! * `socat`: two `socat TCP-LISTEN:Q,fork,reuseaddr TCP:127.0.0.1:P` in a row (client hop, then
//!   server hop), `UDP-LISTEN` likewise for UDP;
//! * `relay-smol` / `relay-mio`: `relay -L tcp://…/target -L udp://…/target -F relay://…` in
//!   front of `relay -L relay://…`, with `-runtime smol|mio`.
//!
//! Each measurement runs for a bounded time; rounds are interleaved between systems (the order
//! rotates every round) and the table shows the median of the rounds, as ratios to `direct` and
//! to `socat` measured in the same run. Children are started in their own process group with
//! `PR_SET_PDEATHSIG`, killed at the end (also on error), and a watchdog ends everything if the
//! run overshoots its time budget.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------------
// Child processes

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// The children's process groups again, for the signal handler (which cannot take a lock).
static GROUPS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];

/// SIGINT/SIGTERM/SIGHUP: kill every child's group, reap them (and socat's orphaned forks), exit.
/// Only async-signal-safe calls.
extern "C" fn on_signal(sig: libc::c_int) {
    for g in &GROUPS {
        let pid = g.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: async-signal-safe syscall.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
    // SAFETY: as above; waits until no child is left (ECHILD).
    unsafe {
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
        libc::_exit(128 + sig);
    }
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Starts `cmd` in its own process group, dying with this process, stderr to `log`.
/// Must be called from the main thread: `PR_SET_PDEATHSIG` fires when the spawning thread ends.
fn spawn(mut cmd: Command, log: &Path) -> Res<u32> {
    let err = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    let pid = child.id();
    let _ = GROUPS.iter().any(|g| {
        g.compare_exchange(0, pid as i32, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
    Ok(pid)
}

/// Kills one child's process group (socat's forked children too) and reaps it.
fn kill(pid: u32) {
    let mut list = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = list.iter().position(|c| c.id() == pid) {
        let mut c = list.swap_remove(i);
        // SAFETY: plain syscall on a process group we created.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        let _ = c.kill();
        let _ = c.wait();
    }
    for g in &GROUPS {
        let _ = g.compare_exchange(pid as i32, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Reaps socat's forked children, re-parented to this process (a child subreaper) when their
/// parent was killed.
fn reap_orphans() {
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let mut status = 0;
        // SAFETY: plain syscall.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r < 0 || Instant::now() > end {
            return;
        }
        if r == 0 {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn kill_all() {
    let pids: Vec<u32> = CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(Child::id)
        .collect();
    for pid in pids {
        kill(pid);
    }
}

/// `Some(stderr)` when the child already exited.
fn exited(pid: u32, log: &Path) -> Option<String> {
    let mut list = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let c = list.iter_mut().find(|c| c.id() == pid)?;
    match c.try_wait() {
        Ok(Some(status)) => {
            let text = fs::read_to_string(log).unwrap_or_default();
            let text = text.trim();
            Some(if text.is_empty() {
                status.to_string()
            } else {
                text.lines().last().unwrap_or(text).to_string()
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// (ppid, utime + stime in ticks) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state=0 ppid=1 … utime=11 stime=12.
    Some((
        f.get(1)?.parse().ok()?,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

/// CPU seconds of `pids` and of their direct children (socat forks one per connection).
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ticks = 0;
    for &p in pids {
        ticks += stat(p).map_or(0, |s| s.1);
    }
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, t)) = stat(pid)
                && pids.contains(&ppid)
            {
                ticks += t;
            }
        }
    }
    ticks as f64 / hz
}

fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max.min(1 << 20);
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

// ---------------------------------------------------------------------------------------------
// In-process targets

fn free_port() -> Res<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Reads and discards; counts bytes.
struct Sink {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
}

fn sink() -> Res<Sink> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let bytes = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (b, o) = (bytes.clone(), open.clone());
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (b, o) = (b.clone(), o.clone());
            o.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    b.fetch_add(n as u64, Ordering::Relaxed);
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(Sink { addr, bytes, open })
}

/// Echoes every connection (one thread each).
fn tcp_echo() -> Res<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn udp_echo() -> Res<SocketAddr> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let addr = s.local_addr().map_err(|e| e.to_string())?;
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
    Ok(addr)
}

/// Accepts and keeps connections open without reading (idle tunnels).
struct Hold {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

fn hold() -> Res<Hold> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
    });
    Ok(Hold { addr, held })
}

impl Hold {
    fn count(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn clear(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Systems under test

struct Targets {
    sink: Sink,
    echo: SocketAddr,
    uecho: SocketAddr,
}

struct System {
    name: String,
    /// Entries forwarding to the sink, the TCP echo and the UDP echo.
    bulk: SocketAddr,
    echo: SocketAddr,
    udp: SocketAddr,
    /// Processes whose CPU the bulk test accounts (client side first).
    pids: Vec<u32>,
}

fn wait_tcp(addr: SocketAddr, pid: Option<(u32, &Path)>) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some((pid, log)) = pid
            && let Some(why) = exited(pid, log)
        {
            return Err(why);
        }
        if Instant::now() > deadline {
            return Err(format!("{addr} not listening after 5 s"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_udp(addr: SocketAddr) -> Res<()> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    s.connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        let _ = s.send(b"ping");
        if let Ok(4) = s.recv(&mut buf) {
            return Ok(());
        }
    }
    Err(format!("no UDP echo through {addr} after 5 s"))
}

/// Waits until something holds UDP port `addr` (a QUIC listener, which echoes nothing).
fn wait_udp_bound(addr: SocketAddr) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if UdpSocket::bind(addr).is_err() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {addr}/udp after 5 s"))
}

fn start_socat(socat: &str, t: &Targets, dir: &Path) -> Res<System> {
    let mut pids = Vec::new();
    let mut pair = |proto: &str, target: SocketAddr, tag: &str| -> Res<SocketAddr> {
        let (entry, mid) = (free_port()?, free_port()?);
        let (lst, con) = (format!("{proto}-LISTEN"), proto.to_string());
        // Server hop first, then the client hop in front of it.
        for (listen, to, hop) in [(mid, target.port(), "server"), (entry, mid, "client")] {
            let mut c = Command::new(socat);
            if proto == "UDP" {
                // A UDP fork never sees an end of stream: let it time out if it is orphaned.
                c.args(["-T", "10"]);
            }
            c.arg(format!("{lst}:{listen},fork,reuseaddr"))
                .arg(format!("{con}:127.0.0.1:{to}"));
            let log = dir.join(format!("socat-{tag}-{hop}.log"));
            let pid = spawn(c, &log)?;
            if proto == "TCP" {
                wait_tcp(local(listen), Some((pid, &log)))?;
            }
            pids.push((tag.to_string(), hop, pid));
        }
        Ok(local(entry))
    };
    let bulk = pair("TCP", t.sink.addr, "bulk")?;
    let echo = pair("TCP", t.echo, "echo")?;
    let udp = pair("UDP", t.uecho, "udp")?;
    thread::sleep(Duration::from_millis(100));
    wait_udp(udp)?;
    let mut cpu: Vec<(&str, u32)> = pids
        .iter()
        .filter(|p| p.0 == "bulk")
        .map(|p| (p.1, p.2))
        .collect();
    cpu.sort();
    Ok(System {
        name: "socat pair".into(),
        bulk,
        echo,
        udp,
        pids: cpu.into_iter().map(|p| p.1).collect(),
    })
}

/// A relay server and a client forwarder in front of it; returns (client pid, server pid).
/// The idle-memory test holds more tunnels than relay's default connection cap (8192).
const NO_ADMISSION_CAP: &str = "maxConns=65536";

fn start_relay_pair(
    relay: &Path,
    runtime: &str,
    scheme: &str,
    forwards: &[(&str, u16, SocketAddr)],
    dir: &Path,
    tag: &str,
) -> Res<(u32, u32)> {
    let sport = free_port()?;
    let mut c = Command::new(relay);
    c.args(["-runtime", runtime, "-L"])
        .arg(format!("{scheme}://127.0.0.1:{sport}?{NO_ADMISSION_CAP}"));
    let slog = dir.join(format!("relay-{tag}-{runtime}-server.log"));
    let server = spawn(c, &slog)?;
    if scheme.ends_with("quic") {
        wait_udp_bound(local(sport))?;
    } else {
        wait_tcp(local(sport), Some((server, &slog)))?;
    }
    let mut c = Command::new(relay);
    c.args(["-runtime", runtime]);
    for (proto, port, target) in forwards {
        let query = if *proto == "udp" {
            "?keepalive=true".to_string()
        } else {
            format!("?{NO_ADMISSION_CAP}")
        };
        c.arg("-L")
            .arg(format!("{proto}://127.0.0.1:{port}/{target}{query}"));
    }
    c.arg("-F").arg(format!("{scheme}://127.0.0.1:{sport}"));
    let clog = dir.join(format!("relay-{tag}-{runtime}-client.log"));
    let client = spawn(c, &clog)?;
    for (proto, port, _) in forwards {
        if *proto == "tcp" {
            wait_tcp(local(*port), Some((client, &clog)))?;
        }
    }
    Ok((client, server))
}

fn start_relay(relay: &Path, runtime: &str, scheme: &str, t: &Targets, dir: &Path) -> Res<System> {
    let (b, e, u) = (free_port()?, free_port()?, free_port()?);
    let fw = [
        ("tcp", b, t.sink.addr),
        ("tcp", e, t.echo),
        ("udp", u, t.uecho),
    ];
    // Without `keepalive` a GOST UDP forwarder ends a peer's tunnel after its first reply (one
    // relay connection per exchange); a datagram-rate figure needs the kept-alive session.
    let tag = scheme.replace('+', "-");
    let (client, server) = start_relay_pair(relay, runtime, scheme, &fw, dir, &tag)?;
    wait_udp(local(u))?;
    let channel = scheme
        .strip_prefix("relay+")
        .map_or(String::new(), |c| format!(" over {c}"));
    Ok(System {
        name: format!("relay {runtime} pair{channel}"),
        bulk: local(b),
        echo: local(e),
        udp: local(u),
        pids: vec![client, server],
    })
}

// ---------------------------------------------------------------------------------------------
// Measurements

struct Bulk {
    mib_s: f64,
    cpu_per_gib: Option<f64>,
}

fn bulk(sys: &System, sink: &Sink, streams: usize, secs: f64) -> Res<Bulk> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..streams {
        let s = TcpStream::connect(sys.bulk).map_err(|e| format!("connect {}: {e}", sys.bulk))?;
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let stop = stop.clone();
        writers.push(thread::spawn(move || {
            let mut s = s;
            let buf = vec![0x5au8; 128 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.write(&buf) {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    thread::sleep(Duration::from_secs_f64((secs * 0.25).max(0.1)));
    let (b0, c0, t0) = (
        sink.bytes.load(Ordering::SeqCst),
        cpu_seconds(&sys.pids),
        Instant::now(),
    );
    thread::sleep(Duration::from_secs_f64(secs));
    let (b1, c1, t1) = (
        sink.bytes.load(Ordering::SeqCst),
        cpu_seconds(&sys.pids),
        Instant::now(),
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    // Let the sink see every stream end before the next measurement.
    let deadline = Instant::now() + Duration::from_secs(3);
    while sink.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let bytes = (b1 - b0) as f64;
    let gib = bytes / (1u64 << 30) as f64;
    Ok(Bulk {
        mib_s: bytes / (1 << 20) as f64 / (t1 - t0).as_secs_f64(),
        cpu_per_gib: (!sys.pids.is_empty() && gib > 0.0).then(|| (c1 - c0) / gib),
    })
}

/// Round-trip times of 64-byte request/response over one tunnel: (p50, p99) in µs.
fn latency(sys: &System, secs: f64) -> Res<(f64, f64)> {
    let mut s = TcpStream::connect(sys.echo).map_err(|e| format!("connect {}: {e}", sys.echo))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let msg = [0x42u8; 64];
    let mut back = [0u8; 64];
    let mut rtt = |s: &mut TcpStream| -> Res<Duration> {
        let t = Instant::now();
        s.write_all(&msg).map_err(|e| e.to_string())?;
        s.read_exact(&mut back).map_err(|e| e.to_string())?;
        Ok(t.elapsed())
    };
    for _ in 0..200 {
        rtt(&mut s)?;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        samples.push(rtt(&mut s)?.as_nanos() as f64 / 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 0.50), percentile(&samples, 0.99)))
}

/// New tunnels per second: connect, one 64-byte round trip, close; 8 at a time.
fn tunnels(sys: &System, secs: f64) -> Res<f64> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let entry = sys.echo;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, 0u64);
                let msg = [7u8; 64];
                let mut back = [0u8; 64];
                while Instant::now() < end {
                    let mut one = || -> io::Result<()> {
                        let mut s = TcpStream::connect(entry)?;
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        s.write_all(&msg)?;
                        s.read_exact(&mut back)
                    };
                    match one() {
                        Ok(()) => ok += 1,
                        Err(_) => {
                            failed += 1;
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.join().map_err(|_| "tunnel worker panicked".to_string())?;
        ok += o;
        failed += f;
    }
    if failed > ok / 100 {
        return Err(format!("{failed} of {} tunnels failed", ok + failed));
    }
    Ok(ok as f64 / secs)
}

/// UDP datagrams per second echoed through the entry, with at most 32 in flight (a reply or a
/// 1 ms silence frees the window; silence counts the in-flight ones as lost). (dps, loss %).
fn udp(sys: &System, size: usize, secs: f64) -> Res<(f64, f64)> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    s.connect(sys.udp).map_err(|e| e.to_string())?;
    let _ = set_buf(&s, 4 << 20);
    let msg = vec![0x33u8; size];
    let mut buf = vec![0u8; 65536];
    // Open the tunnel (the first datagram may wait for it).
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let warm = Instant::now() + Duration::from_secs(3);
    loop {
        let _ = s.send(&msg);
        if s.recv(&mut buf).is_ok() {
            break;
        }
        if Instant::now() > warm {
            return Err(format!("no UDP reply through {}", sys.udp));
        }
    }
    // Drain stragglers of the warm-up.
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    while s.recv(&mut buf).is_ok() {}
    s.set_read_timeout(Some(Duration::from_millis(1)))
        .map_err(|e| e.to_string())?;
    const WINDOW: u64 = 32;
    let (mut sent, mut got, mut inflight) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        while inflight < WINDOW {
            if s.send(&msg).is_ok() {
                sent += 1;
                inflight += 1;
            } else {
                break;
            }
        }
        match s.recv(&mut buf) {
            Ok(_) => {
                got += 1;
                inflight = inflight.saturating_sub(1);
            }
            Err(_) => inflight = 0,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let loss = if sent == 0 {
        100.0
    } else {
        100.0 * (1.0 - got.min(sent) as f64 / sent as f64)
    };
    Ok((got as f64 / elapsed, loss))
}

fn set_buf(s: &UdpSocket, bytes: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: valid fd and option value pointer.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const i32).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Resident memory per idle tunnel of a fresh relay pair: (client B, server B, before KiB).
fn idle_memory(relay: &Path, runtime: &str, n: usize, dir: &Path) -> Res<(f64, f64, u64, u64)> {
    let h = hold()?;
    let port = free_port()?;
    let (client, server) = start_relay_pair(
        relay,
        runtime,
        "relay",
        &[("tcp", port, h.addr)],
        dir,
        &format!("idle{n}"),
    )?;
    let result = (|| {
        // The readiness probe opened (and closed) one tunnel.
        thread::sleep(Duration::from_millis(300));
        h.clear();
        thread::sleep(Duration::from_millis(300));
        let rss = |p| rss_kib(p).ok_or_else(|| format!("no /proc/{p}/status"));
        let (c0, s0) = (rss(client)?, rss(server)?);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            // One byte each: a relay client sends its CONNECT with the first payload (GOST's
            // lazy request), so a tunnel reaches the target only once something was written.
            let mut s = TcpStream::connect(local(port))
                .map_err(|e| format!("idle tunnel {i} of {n}: {e}"))?;
            s.write_all(b"x")
                .map_err(|e| format!("idle tunnel {i} of {n}: {e}"))?;
            conns.push(s);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while h.count() < n {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} idle tunnels reached the target",
                    h.count()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(500));
        let (c1, s1) = (rss(client)?, rss(server)?);
        drop(conns);
        h.clear();
        let per = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / n as f64;
        Ok((per(c0, c1), per(s0, s1), c0, s0))
    })();
    kill(client);
    kill(server);
    result
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

struct Opts {
    quick: bool,
    rounds: usize,
    secs: f64,
    relay: Option<PathBuf>,
    socat: String,
    /// Also measure relay pairs over TLS, WebSocket (ws, wss) and QUIC (smol runtime).
    channels: bool,
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        quick: false,
        rounds: 5,
        secs: 2.0,
        relay: None,
        socat: "socat".into(),
        channels: false,
    };
    let (mut rounds, mut secs) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => rounds = Some(val()?.parse().map_err(|e| format!("--rounds: {e}"))?),
            "--secs" => secs = Some(val()?.parse().map_err(|e| format!("--secs: {e}"))?),
            "--relay" => o.relay = Some(PathBuf::from(val()?)),
            "--socat" => o.socat = val()?,
            "--channels" => o.channels = true,
            "-h" | "--help" => {
                println!(
                    "relay-load [--quick] [--channels] [--rounds N] [--secs S] [--relay PATH] [--socat PATH]\n\
                     default: 5 rounds of 2 s per measurement; --quick: 3 rounds of 0.4 s"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a} (see --help)")),
        }
    }
    if o.quick {
        o.rounds = 3;
        o.secs = 0.3;
    }
    o.rounds = rounds.unwrap_or(o.rounds).max(1);
    o.secs = secs.unwrap_or(o.secs).max(0.1);
    Ok(o)
}

/// The relay binary: `--relay`, else built next to this executable with `cargo build`.
fn relay_binary(o: &Opts) -> Res<PathBuf> {
    if let Some(p) = &o.relay {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no executable directory")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "-q", "-p", "relay-bin"]);
    if release {
        c.arg("--release");
    } else {
        eprintln!("warning: not a release build; relay is measured unoptimised");
    }
    let st = c.status().map_err(|e| format!("cargo build: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build -p relay-bin failed: {st}"));
    }
    Ok(dir.join("relay"))
}

fn stripped_size(relay: &Path, dir: &Path) -> Res<u64> {
    let copy = dir.join("relay-stripped");
    fs::copy(relay, &copy).map_err(|e| format!("copy {}: {e}", relay.display()))?;
    let st = Command::new("strip")
        .arg(&copy)
        .status()
        .map_err(|e| format!("strip: {e}"))?;
    if !st.success() {
        return Err(format!("strip failed: {st}"));
    }
    Ok(fs::metadata(&copy).map_err(|e| e.to_string())?.len())
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let n = thread::available_parallelism().map_or(0, |n| n.get());
    format!("nproc {n}, CPU \"{cpu}\", Linux {}", kernel.trim())
}

#[derive(Clone, Copy, PartialEq)]
enum Test {
    Bulk1,
    Bulk16,
    Latency,
    Tunnels,
    Udp64,
    Udp1400,
}

const TESTS: [Test; 6] = [
    Test::Bulk1,
    Test::Bulk16,
    Test::Latency,
    Test::Tunnels,
    Test::Udp64,
    Test::Udp1400,
];

/// Rows of the result table, in print order: (key, title, higher is better).
const ROWS: [(&str, &str, bool); 12] = [
    ("bulk1", "TCP bulk, 1 tunnel (MiB/s)", true),
    ("bulk16", "TCP bulk, 16 tunnels (MiB/s)", true),
    ("cpu1", "CPU s per GiB, 1 tunnel (client+server)", false),
    ("cpu16", "CPU s per GiB, 16 tunnels (client+server)", false),
    ("p50", "Request/response 64 B, p50 (µs)", false),
    ("p99", "Request/response 64 B, p99 (µs)", false),
    (
        "tps",
        "New tunnels/s (connect, 64 B round trip, close; 8 at a time)",
        true,
    ),
    ("udp64", "UDP 64 B, datagrams/s", true),
    ("loss64", "UDP 64 B, loss %", false),
    ("udp1400", "UDP 1400 B, datagrams/s", true),
    ("loss1400", "UDP 1400 B, loss %", false),
    ("add50", "Added p50 latency vs direct (µs)", false),
];

type Samples = HashMap<(&'static str, usize), Vec<f64>>;

fn measure(
    test: Test,
    sys: &System,
    t: &Targets,
    secs: f64,
    out: &mut Samples,
    i: usize,
) -> Res<()> {
    let mut put = |k: &'static str, v: f64| out.entry((k, i)).or_default().push(v);
    match test {
        Test::Bulk1 | Test::Bulk16 => {
            let (n, k, c) = if test == Test::Bulk1 {
                (1, "bulk1", "cpu1")
            } else {
                (16, "bulk16", "cpu16")
            };
            let b = bulk(sys, &t.sink, n, secs)?;
            put(k, b.mib_s);
            if let Some(cpu) = b.cpu_per_gib {
                put(c, cpu);
            }
        }
        Test::Latency => {
            let (p50, p99) = latency(sys, secs)?;
            put("p50", p50);
            put("p99", p99);
        }
        Test::Tunnels => put("tps", tunnels(sys, secs)?),
        Test::Udp64 | Test::Udp1400 => {
            let (size, k, l) = if test == Test::Udp64 {
                (64, "udp64", "loss64")
            } else {
                (1400, "udp1400", "loss1400")
            };
            let (dps, loss) = udp(sys, size, secs)?;
            put(k, dps);
            put(l, loss);
        }
    }
    Ok(())
}

fn fmt_val(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(v: f64, base: f64) -> String {
    if v.is_finite() && base.is_finite() && base != 0.0 {
        format!("{:.2}×", v / base)
    } else {
        "–".into()
    }
}

fn run(o: &Opts, dir: &Path) -> Res<()> {
    let started = Instant::now();
    let nofile = raise_nofile();
    let relay = relay_binary(o)?;
    if !relay.exists() {
        return Err(format!("{} not found", relay.display()));
    }
    let t = Targets {
        sink: sink()?,
        echo: tcp_echo()?,
        uecho: udp_echo()?,
    };
    let mut systems = vec![System {
        name: "direct loopback".into(),
        bulk: t.sink.addr,
        echo: t.echo,
        udp: t.uecho,
        pids: vec![],
    }];
    let mut missing: Vec<(String, String)> = Vec::new();
    match start_socat(&o.socat, &t, dir) {
        Ok(s) => systems.push(s),
        Err(e) => missing.push(("socat pair".into(), e)),
    }
    let mut runtimes = Vec::new();
    for rt in ["smol", "mio"] {
        match start_relay(&relay, rt, "relay", &t, dir) {
            Ok(s) => {
                systems.push(s);
                runtimes.push(rt);
            }
            Err(e) => missing.push((format!("relay {rt} pair"), e)),
        }
    }
    if o.channels {
        for ch in ["relay+tls", "relay+ws", "relay+wss", "relay+quic"] {
            match start_relay(&relay, "smol", ch, &t, dir) {
                Ok(s) => systems.push(s),
                Err(e) => missing.push((format!("relay smol pair over {ch}"), e)),
            }
        }
    }
    let socat_idx = systems.iter().position(|s| s.name == "socat pair");

    let mut samples = Samples::new();
    let mut failures: Vec<String> = Vec::new();
    for round in 0..o.rounds {
        eprintln!(
            "round {}/{} ({:.0} s elapsed)",
            round + 1,
            o.rounds,
            started.elapsed().as_secs_f64()
        );
        for &test in &TESTS {
            for k in 0..systems.len() {
                let i = (k + round) % systems.len();
                if let Err(e) = measure(test, &systems[i], &t, o.secs, &mut samples, i) {
                    failures.push(format!("{}: {e}", systems[i].name));
                }
            }
        }
    }
    // Added latency per round against the same round's direct figure.
    for i in 1..systems.len() {
        let (d, s) = (
            samples.get(&("p50", 0)).cloned().unwrap_or_default(),
            samples.get(&("p50", i)).cloned().unwrap_or_default(),
        );
        let added: Vec<f64> = d.iter().zip(&s).map(|(d, s)| s - d).collect();
        samples.insert(("add50", i), added);
    }

    // Idle tunnels: fresh relay pairs.
    let mut idle_ns = vec![1000usize];
    let big = (((nofile.saturating_sub(200)) / 2) as usize / 1000 * 1000).min(10_000);
    if !o.quick && big > 1000 {
        idle_ns.push(big);
    }
    let mut memory = Vec::new();
    for rt in &runtimes {
        for &n in &idle_ns {
            match idle_memory(&relay, rt, n, dir) {
                Ok(m) => memory.push((rt.to_string(), n, m)),
                Err(e) => failures.push(format!("idle memory relay {rt} {n}: {e}")),
            }
        }
    }
    let size = stripped_size(&relay, dir);

    // Output.
    println!("## relay-load results\n");
    println!(
        "{} rounds × {} s per measurement{}, interleaved (order rotates each round); medians. {}.",
        o.rounds,
        o.secs,
        if o.quick { " (--quick)" } else { "" },
        machine()
    );
    println!(
        "gost columns: impossible here (the Go module proxy answers 403 for github.com/go-gost \
         modules, so gost cannot be built)."
    );
    for (name, why) in &missing {
        println!("{name}: n/a: {why}");
    }
    println!();
    // Ratio columns for every relay pair that ran (smol, and mio once it starts).
    let relays: Vec<usize> = (0..systems.len())
        .filter(|&i| systems[i].name.starts_with("relay"))
        .collect();
    print!("| measurement |");
    for s in &systems {
        print!(" {} |", s.name);
    }
    for &i in &relays {
        let short = systems[i].name.trim_end_matches(" pair");
        print!(" {short} ÷ direct | {short} ÷ socat |");
    }
    println!();
    print!("|---|");
    for _ in 0..systems.len() + 2 * relays.len() {
        print!("---:|");
    }
    println!();
    for (key, title, _) in ROWS {
        let meds: Vec<f64> = (0..systems.len())
            .map(|i| median(samples.get(&(key, i)).map_or(&[][..], |v| &v[..])))
            .collect();
        if meds.iter().all(|m| !m.is_finite()) {
            continue;
        }
        print!("| {title} |");
        for m in &meds {
            print!(" {} |", fmt_val(*m));
        }
        let vs_socat = socat_idx.map_or(f64::NAN, |i| meds[i]);
        for &i in &relays {
            if key == "add50" || key.starts_with("loss") {
                print!(" – | – |");
            } else {
                print!(
                    " {} | {} |",
                    ratio(meds[i], meds[0]),
                    ratio(meds[i], vs_socat)
                );
            }
        }
        println!();
    }
    println!();
    println!("Resident memory per idle tunnel (fresh relay pair; VmRSS after − before, ÷ N):\n");
    println!(
        "| system | idle tunnels N | client B/tunnel | server B/tunnel | client RSS before (KiB) | server RSS before (KiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (rt, n, (c, s, c0, s0)) in &memory {
        println!("| relay {rt} pair | {n} | {c:.0} | {s:.0} | {c0} | {s0} |");
    }
    if !o.quick && big < 10_000 {
        println!(
            "\n10000 idle tunnels not run: RLIMIT_NOFILE hard limit {nofile} allows {big} \
             (each side of a relay hop holds two descriptors per tunnel)."
        );
    }
    println!("\nsocat: memory not measured (it forks one process per connection).");
    match size {
        Ok(b) => println!(
            "\nStripped `relay` binary: {b} bytes ({:.2} MiB; target ≤ 4 MiB).",
            b as f64 / (1 << 20) as f64
        ),
        Err(e) => println!("\nStripped binary size: n/a: {e}"),
    }
    if !failures.is_empty() {
        println!("\nFailed measurements ({}):", failures.len());
        for f in failures.iter().take(20) {
            println!("- {f}");
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("relay-load: {e}");
            std::process::exit(2);
        }
    };
    // Hard stop: a stuck measurement must not keep children (or CI) alive.
    let budget = Duration::from_secs(if o.quick { 180 } else { 1200 })
        + Duration::from_secs_f64(o.secs * o.rounds as f64 * 40.0);
    thread::spawn(move || {
        thread::sleep(budget);
        eprintln!("relay-load: over the time budget ({budget:?}), stopping");
        kill_all();
        std::process::exit(3);
    });
    // Orphans of killed children (socat's per-connection forks) come back here to be reaped.
    // SAFETY: plain syscall.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    install_signal_handlers();
    let dir = std::env::temp_dir().join(format!("relay-load-{}", std::process::id()));
    let code = match fs::create_dir_all(&dir).map_err(|e| e.to_string()) {
        Ok(()) => match run(&o, &dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("relay-load: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("relay-load: {}: {e}", dir.display());
            1
        }
    };
    kill_all();
    reap_orphans();
    let _ = fs::remove_dir_all(&dir);
    std::process::exit(code);
}
