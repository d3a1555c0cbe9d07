//! Behaviour of `relay_core::mux::Session` beyond the recorded vectors: keepalive on a fake
//! clock, stream lifecycle, backpressure with bounded memory, and properties over arbitrary input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use relay_core::Decoded;
use relay_core::mux::{Command, Frame, MuxConfig, MuxError, MuxEvent, Role, Session, frame};

fn pair(config: MuxConfig, t0: Instant) -> (Session, Session) {
    (
        Session::new(Role::Client, config, t0).unwrap(),
        Session::new(Role::Server, config, t0).unwrap(),
    )
}

/// Moves everything queued both ways (unbounded wire; the receivers must take it all).
fn pump(a: &mut Session, b: &mut Session) {
    loop {
        let ab = transmit_all(a);
        assert_eq!(b.handle_input(&ab).unwrap(), ab.len());
        let ba = transmit_all(b);
        assert_eq!(a.handle_input(&ba).unwrap(), ba.len());
        if ab.is_empty() && ba.is_empty() {
            return;
        }
    }
}

#[test]
fn keepalive_keeps_a_chatty_pair_alive() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(MuxConfig::default(), t0);
    let mut t = t0;
    let mut nops = 0;
    while t < t0 + Duration::from_secs(300) {
        t = a.poll_timeout().unwrap().min(b.poll_timeout().unwrap());
        a.handle_timeout(t);
        b.handle_timeout(t);
        let ab = transmit_all(&mut a);
        nops += ab.len() / 8;
        assert_eq!(b.handle_input(&ab).unwrap(), ab.len());
        let ba = transmit_all(&mut b);
        assert_eq!(a.handle_input(&ba).unwrap(), ba.len());
    }
    assert!(!a.is_closed() && !b.is_closed());
    assert_eq!(nops, 30); // one NOP every 10 s
}

#[test]
fn dead_peer_is_detected_within_one_to_two_check_windows() {
    let t0 = Instant::now();
    let s = |t| Session::new(Role::Server, MuxConfig::default(), t).unwrap();
    let nop = [1u8, 3, 0, 0, 0, 0, 0, 0];

    // Silent from the start: closed at the first check, 30 s.
    let mut a = s(t0);
    let mut closed_at = None;
    while let Some(t) = a.poll_timeout() {
        // Spurious calls before and at the same instant are harmless.
        a.handle_timeout(t - Duration::from_millis(1));
        a.handle_timeout(t);
        a.handle_timeout(t);
        closed_at = Some(t - t0);
    }
    assert_eq!(closed_at, Some(Duration::from_secs(30)));
    // A closed session sends nothing, not even the NOPs queued before.
    assert_eq!(transmit_all(&mut a), b"");
    assert_eq!(
        events(&mut a),
        [MuxEvent::SessionClosed {
            reason: MuxError::KeepAliveTimeout
        }]
    );

    // Last frame at 25 s: the 30 s check passes, the 60 s one closes.
    let mut a = s(t0);
    a.handle_timeout(t0 + Duration::from_secs(20));
    a.handle_input(&nop).unwrap();
    a.handle_timeout(t0 + Duration::from_secs(30));
    assert!(!a.is_closed());
    a.handle_timeout(t0 + Duration::from_secs(59));
    assert!(!a.is_closed());
    a.handle_timeout(t0 + Duration::from_secs(60));
    assert!(a.is_closed());
    assert_eq!(a.poll_timeout(), None);

    // A late call after a long sleep checks once and skips missed deadlines.
    let mut a = s(t0);
    a.handle_input(&nop).unwrap();
    a.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(!a.is_closed());
    assert_eq!(transmit_all(&mut a), nop); // one NOP, not 360
    assert!(a.poll_timeout().unwrap() > t0 + Duration::from_secs(3600));

    // Keepalive off: no timer at all.
    let off = MuxConfig {
        keep_alive_disabled: true,
        ..MuxConfig::default()
    };
    let a = Session::new(Role::Client, off, t0).unwrap();
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn held_input_is_not_a_dead_peer() {
    // Receive budget exhausted and never read: the check must not close the session.
    let t0 = Instant::now();
    let config = MuxConfig {
        max_receive_buffer: 65536,
        ..MuxConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    let id = a.open_stream().unwrap();
    let data = pattern(65536);
    let mut wire = Vec::new();
    for _ in 0..3 {
        assert_eq!(a.stream_write(id, &data).unwrap(), 65536);
        wire.extend(transmit_all(&mut a));
    }
    let n = b.handle_input(&wire).unwrap();
    assert!(n < wire.len());
    b.handle_timeout(t0 + Duration::from_secs(30));
    b.handle_timeout(t0 + Duration::from_secs(60));
    assert!(!b.is_closed());
}

#[test]
fn thousand_streams_leave_no_state() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(MuxConfig::default(), t0);
    let ids: Vec<u32> = (0..1000).map(|_| a.open_stream().unwrap()).collect();
    assert_eq!(ids[..3], [3, 5, 7]);
    for &id in &ids {
        a.stream_write(id, b"hi").unwrap();
    }
    pump(&mut a, &mut b);
    assert_eq!(b.stream_count(), 1000);
    for ev in events(&mut b) {
        if let MuxEvent::StreamOpened { id } = ev {
            b.stream_write(id, b"yo").unwrap();
        }
    }
    pump(&mut a, &mut b);
    // Each side closes half first; the FINs cross.
    for &id in &ids {
        if id % 4 == 1 {
            a.stream_close(id).unwrap();
        } else {
            b.stream_close(id).unwrap();
        }
    }
    pump(&mut a, &mut b);
    for ev in events(&mut a).into_iter().chain(events(&mut b)) {
        assert!(matches!(
            ev,
            MuxEvent::StreamFinished { .. } | MuxEvent::StreamReadable { .. }
        ));
    }
    for &id in &ids {
        if id % 4 == 1 {
            b.stream_close(id).unwrap();
        } else {
            a.stream_close(id).unwrap();
        }
    }
    pump(&mut a, &mut b);
    assert_eq!((a.stream_count(), b.stream_count()), (0, 0));
    assert_eq!((a.buffered(), b.buffered()), (0, 0));
    assert_eq!(events(&mut a), []);
    assert_eq!(events(&mut b), []);
    assert_eq!(
        a.stream_write(3, b"x"),
        Err(MuxError::UnknownStream { id: 3 })
    );
}

#[test]
fn stream_and_accept_caps_push_back() {
    let t0 = Instant::now();
    let config = MuxConfig {
        max_streams: 4,
        max_pending_accept: 2,
        ..MuxConfig::default()
    };
    let (mut a, mut b) = pair(config, t0);
    for _ in 0..4 {
        a.open_stream().unwrap();
    }
    assert_eq!(a.open_stream(), Err(MuxError::TooManyStreams));
    let syns = transmit_all(&mut a);
    // Two unpolled StreamOpened: the third SYN waits.
    assert_eq!(b.handle_input(&syns).unwrap(), 16);
    assert_eq!(b.handle_input(&syns[16..]).unwrap(), 0);
    assert_eq!(b.poll_event(), Some(MuxEvent::StreamOpened { id: 3 }));
    assert_eq!(b.handle_input(&syns[16..]).unwrap(), 8);
    events(&mut b);
    assert_eq!(b.handle_input(&syns[24..]).unwrap(), 8);
    assert_eq!(b.stream_count(), 4);
    // Full table: a fifth SYN waits until a stream is gone.
    let syn9 = [1u8, 0, 0, 0, 11, 0, 0, 0];
    assert_eq!(b.handle_input(&syn9).unwrap(), 0);
    b.stream_close(3).unwrap();
    transmit_all(&mut b);
    assert_eq!(b.handle_input(&syn9).unwrap(), 8);
    // A duplicate SYN never waits.
    assert_eq!(b.handle_input(&syn9).unwrap(), 8);
}

#[test]
fn receive_budget_pushes_back_and_resumes() {
    let config = MuxConfig {
        max_receive_buffer: 100_000,
        ..MuxConfig::default()
    };
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config, t0);
    let id = a.open_stream().unwrap();
    let data = pattern(200_000);
    let mut wire = Vec::new();
    let mut off = 0;
    while off < data.len() {
        off += a.stream_write(id, &data[off..]).unwrap();
        wire.extend(transmit_all(&mut a));
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 10_000];
    while !wire.is_empty() {
        let n = b.handle_input(&wire).unwrap();
        wire.drain(..n);
        assert!(b.buffered() <= 100_000);
        while let Ok(n) = b.stream_read(id, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, data);
}

#[test]
fn control_frames_go_first_and_fin_follows_data() {
    let t0 = Instant::now();
    let (mut a, _) = pair(MuxConfig::default(), t0);
    let s3 = a.open_stream().unwrap();
    a.stream_write(s3, &pattern(40_000)).unwrap();
    a.stream_close(s3).unwrap();
    let s5 = a.open_stream().unwrap();
    a.stream_write(s5, b"five").unwrap();
    a.handle_timeout(t0 + Duration::from_secs(10));
    // A tiny output buffer: frames still come in the same order, PSH cut to fit.
    let mut out = [0u8; 1000];
    let mut wire = Vec::new();
    loop {
        let n = a.poll_transmit(&mut out);
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&out[..n]);
    }
    let mut seq = Vec::new();
    let mut data3 = 0;
    for f in split_frames(&wire) {
        let Decoded::Complete { value, .. } = Frame::decode(f).unwrap() else {
            unreachable!()
        };
        if value.command() == Command::Psh && value.stream_id() == 3 {
            data3 += value.payload().len();
            if seq.last() == Some(&(Command::Psh, 3)) {
                continue;
            }
        }
        seq.push((value.command(), value.stream_id()));
    }
    assert_eq!(data3, 40_000);
    assert_eq!(
        seq,
        [
            (Command::Syn, 3),
            (Command::Syn, 5),
            (Command::Nop, 0),
            (Command::Psh, 3),
            (Command::Psh, 5),
            (Command::Psh, 3),
            (Command::Fin, 3),
        ]
    );
    assert_eq!(a.stream_count(), 1);
    // A buffer shorter than a header moves nothing and loses nothing.
    a.stream_write(s5, b"more").unwrap();
    assert_eq!(a.poll_transmit(&mut out[..7]), 0);
    assert_eq!(a.poll_transmit(&mut out[..9]), 9);
    assert_eq!(&out[..9], &[1, 2, 1, 0, 5, 0, 0, 0, b'm']);
}

/// A one-way bounded wire, like a TCP connection's buffers.
struct Wire {
    bytes: Vec<u8>,
    cap: usize,
    peak: usize,
}

impl Wire {
    fn send(&mut self, s: &mut Session, out: &mut [u8]) {
        while self.bytes.len() + 9 <= self.cap {
            let room = (self.cap - self.bytes.len()).min(out.len());
            let n = s.poll_transmit(&mut out[..room]);
            if n == 0 {
                break;
            }
            self.bytes.extend_from_slice(&out[..n]);
        }
        self.peak = self.peak.max(self.bytes.len());
    }

    fn deliver(&mut self, s: &mut Session) {
        let n = s.handle_input(&self.bytes).unwrap();
        self.bytes.drain(..n);
    }
}

/// 1 MiB each way on one stream; B reads at most `slow` bytes per round.
fn both_ways(version: u8, slow: usize) {
    let config = MuxConfig {
        version,
        max_receive_buffer: 256 * 1024,
        ..MuxConfig::default()
    };
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config, t0);
    let id = a.open_stream().unwrap();
    let data = pattern(1 << 20);
    let (mut a_off, mut b_off) = (0, 0);
    let (mut a_got, mut b_got) = (Vec::new(), Vec::new());
    let mut ab = Wire {
        bytes: Vec::new(),
        cap: 128 * 1024,
        peak: 0,
    };
    let mut ba = Wire {
        bytes: Vec::new(),
        cap: 128 * 1024,
        peak: 0,
    };
    let mut out = vec![0u8; OUT];
    let mut buf = vec![0u8; 64 * 1024];
    let mut b_accepted = false;
    let mut rounds = 0;
    while a_got.len() < data.len() || b_got.len() < data.len() {
        rounds += 1;
        assert!(
            rounds < 100_000,
            "stalled: a_got {} b_got {}",
            a_got.len(),
            b_got.len()
        );
        a_off += a.stream_write(id, &data[a_off..]).unwrap();
        if b_accepted {
            b_off += b.stream_write(id, &data[b_off..]).unwrap();
        }
        ab.send(&mut a, &mut out);
        ba.send(&mut b, &mut out);
        ab.deliver(&mut b);
        ba.deliver(&mut a);
        for ev in events(&mut b) {
            if ev == (MuxEvent::StreamOpened { id }) {
                b_accepted = true;
            }
        }
        events(&mut a);
        if let Ok(n) = b.stream_read(id, &mut buf[..slow]) {
            b_got.extend_from_slice(&buf[..n]);
        }
        while let Ok(n) = a.stream_read(id, &mut buf) {
            a_got.extend_from_slice(&buf[..n]);
        }
        // Memory stays bounded on both sides.
        for s in [&a, &b] {
            assert!(s.buffered() <= config.max_receive_buffer + 65535);
        }
    }
    assert!(a_got == data && b_got == data);
    assert!(ab.peak <= ab.cap && ba.peak <= ba.cap);
}

#[test]
fn one_mib_both_ways_v1_slow_reader() {
    both_ways(1, 1000);
}

#[test]
fn one_mib_both_ways_v2_slow_reader() {
    both_ways(2, 1000);
}

#[test]
fn config_validation() {
    let ok = MuxConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    let bad = [
        MuxConfig { version: 3, ..ok },
        MuxConfig {
            max_frame_size: 0,
            ..ok
        },
        MuxConfig {
            keep_alive_timeout: Duration::from_secs(5),
            ..ok
        },
        MuxConfig {
            max_stream_buffer: 8 << 20,
            ..ok
        },
        MuxConfig {
            max_streams: 0,
            ..ok
        },
    ];
    for c in bad {
        assert_eq!(
            Session::new(Role::Client, c, Instant::now()).err(),
            Some(MuxError::InvalidConfig)
        );
    }
}

fn frame_strategy() -> impl Strategy<Value = (u8, u8, u32, Vec<u8>)> {
    (
        1u8..=2,
        0u8..5,
        0u32..8,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(v, cmd, sid, mut payload)| {
            match cmd {
                0 | 1 | 3 => payload.clear(),
                4 => payload.resize(8, 0),
                _ => {}
            }
            (v, cmd, sid, payload)
        })
}

/// Events, the first error, and the bytes read per stream.
type Outcome = (Vec<MuxEvent>, Option<MuxError>, Vec<(u32, Vec<u8>)>);

/// Feeds `bytes` in the given chunks the way a caller would (keeping what was not consumed);
/// returns events, the first error, and what was read per stream.
fn run(version: u8, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let config = MuxConfig {
        version,
        ..MuxConfig::default()
    };
    let mut s = Session::new(Role::Server, config, Instant::now()).unwrap();
    let mut pending = Vec::new();
    let mut error = None;
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(bytes.len());
    for end in ends {
        pending.extend_from_slice(&bytes[start..end]);
        start = end;
        match s.handle_input(&pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let evs = events(&mut s);
    let reads = (0..8).map(|id| (id, read_all(&mut s, id))).collect();
    (evs, error, reads)
}

proptest! {
    #[test]
    fn frame_round_trip((v, cmd, sid, payload) in frame_strategy()) {
        let command = Command::from_byte(cmd).unwrap();
        let f = Frame::new(v, command, sid, &payload).unwrap();
        let mut out = vec![0u8; f.encoded_len()];
        prop_assert_eq!(f.encode(&mut out[..f.encoded_len() - 1]).err().map(|e| e.needed), Some(f.encoded_len()));
        prop_assert_eq!(f.encode(&mut out).unwrap(), f.encoded_len());
        prop_assert_eq!(Frame::decode(&out).unwrap(), Decoded::Complete { value: f, consumed: out.len() });
        for cut in 0..out.len() {
            let partial = matches!(Frame::decode(&out[..cut]).unwrap(), Decoded::Partial { needed } if needed > cut);
            prop_assert!(partial);
        }
        let mut header = [0u8; 8];
        frame::encode_header(v, command, payload.len() as u16, sid, &mut header).unwrap();
        prop_assert_eq!(&header[..], &out[..8]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(version in 1u8..=2, bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::decode(&bytes);
        let config = MuxConfig { version, ..MuxConfig::default() };
        let t0 = Instant::now();
        let mut s = Session::new(Role::Client, config, t0).unwrap();
        let id = s.open_stream().unwrap();
        let _ = s.stream_write(id, b"abc");
        let _ = s.handle_input(&bytes);
        let mut buf = [0u8; 64];
        while let Some(ev) = s.poll_event() {
            if let MuxEvent::StreamReadable { id } | MuxEvent::StreamOpened { id } = ev {
                let _ = s.stream_read(id, &mut buf);
                let _ = s.stream_write(id, &bytes);
                let _ = s.stream_close(id);
            }
        }
        transmit_all(&mut s);
        s.handle_timeout(t0 + Duration::from_secs(60));
    }

    #[test]
    fn any_split_gives_the_same_events(
        version in 1u8..=2,
        frames in proptest::collection::vec(frame_strategy(), 0..24),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        for (_, cmd, sid, payload) in &frames {
            let f = Frame::new(version, Command::from_byte(*cmd).unwrap(), *sid, payload).unwrap();
            let mut out = vec![0u8; f.encoded_len()];
            f.encode(&mut out).unwrap();
            bytes.extend(out);
        }
        prop_assert_eq!(run(version, &bytes, &cuts), run(version, &bytes, &[]));
    }
}

#[test]
fn upd_claiming_more_than_sent_ends_the_session() {
    let config = MuxConfig {
        version: 2,
        ..MuxConfig::default()
    };
    let mut a = Session::new(Role::Client, config, Instant::now()).unwrap();
    let id = a.open_stream().unwrap();
    a.stream_write(id, b"abc").unwrap();
    transmit_all(&mut a);
    // consumed 3 of 3: fine; consumed 4: protocol error.
    let upd = |consumed: u32| {
        let mut f = vec![2u8, 4, 8, 0, 3, 0, 0, 0];
        f.extend(consumed.to_le_bytes());
        f.extend(65536u32.to_le_bytes());
        f
    };
    assert_eq!(a.handle_input(&upd(3)), Ok(16));
    let e = MuxError::ConsumedMoreThanSent { id };
    assert_eq!(a.handle_input(&upd(4)), Err(e));
    assert_eq!(events(&mut a), [MuxEvent::SessionClosed { reason: e }]);
    assert_eq!(a.stream_write(id, b"x"), Err(MuxError::Closed));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn reads_drain_after_the_session_ends() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(MuxConfig::default(), t0);
    let id = a.open_stream().unwrap();
    a.stream_write(id, b"last words").unwrap();
    pump(&mut a, &mut b);
    b.handle_eof();
    let mut buf = [0u8; 64];
    assert_eq!(b.stream_read(id, &mut buf), Ok(10));
    assert_eq!(b.stream_read(id, &mut buf), Err(MuxError::Closed));
    b.stream_close(id).unwrap();
    assert_eq!(b.stream_count(), 0);
}
