//! The smux layer: frame encode/decode (a 16 KiB PSH, a SYN and a version-2 UPD) and 1 MiB moved
//! through two `relay_core::mux::Session`s back to back, in memory (version 1 and 2).
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use relay_benches::MuxPair;
use relay_core::Decoded;
use relay_core::mux::{Command, Frame, WindowUpdate};

fn frames(c: &mut Criterion) {
    let payload = vec![0x5Au8; 16 * 1024];
    let psh = Frame::new(1, Command::Psh, 3, &payload).unwrap();
    let mut wire = vec![0u8; 8 + payload.len()];
    let n = psh.encode(&mut wire).unwrap();
    let upd_body = WindowUpdate {
        consumed: 123_456,
        window: 65_536,
    }
    .to_bytes();
    let upd = Frame::new(2, Command::Upd, 3, &upd_body).unwrap();
    let mut upd_wire = [0u8; 16];
    upd.encode(&mut upd_wire).unwrap();

    let mut g = c.benchmark_group("mux/frame");
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("encode psh 16KiB", |b| {
        let mut out = vec![0u8; 8 + payload.len()];
        b.iter(|| black_box(&psh).encode(black_box(&mut out)).unwrap())
    });
    g.bench_function("decode psh 16KiB", |b| {
        b.iter(|| match Frame::decode(black_box(&wire)).unwrap() {
            Decoded::Complete { value, consumed } => black_box((value.payload().len(), consumed)),
            Decoded::Partial { .. } => unreachable!(),
        })
    });
    g.finish();
    c.bench_function("mux/frame/encode syn", |b| {
        let syn = Frame::new(1, Command::Syn, 3, &[]).unwrap();
        let mut out = [0u8; 8];
        b.iter(|| black_box(&syn).encode(black_box(&mut out)).unwrap())
    });
    c.bench_function("mux/frame/decode upd+window", |b| {
        b.iter(|| match Frame::decode(black_box(&upd_wire)).unwrap() {
            Decoded::Complete { value, .. } => black_box(value.window_update()),
            Decoded::Partial { .. } => unreachable!(),
        })
    });
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("mux/session");
    g.throughput(Throughput::Bytes(1 << 20));
    for v in [1u8, 2] {
        let mut pair = MuxPair::new(v);
        pair.transfer(1 << 20); // warm-up: buffers reach their steady size
        g.bench_function(format!("1MiB back to back, v{v}"), |b| {
            b.iter(|| pair.transfer(black_box(1 << 20)))
        });
    }
    g.finish();
}

criterion_group!(benches, frames, session);
criterion_main!(benches);
