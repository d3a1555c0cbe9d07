//! UDP framings: `LengthFrame` (UDP CONNECT / forwarding) and `Datagram` (UDP BIND / association,
//! with a SOCKS5 address) encode and decode, at 64 and 1400 bytes of payload.
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use relay_core::udp::{Datagram, LengthFrame};
use relay_core::{Address, Decoded};

fn length_frame(c: &mut Criterion) {
    for size in [64usize, 1400] {
        let payload = vec![0x33u8; size];
        let mut wire = vec![0u8; 2 + size];
        LengthFrame::encode(&payload, &mut wire).unwrap();
        let mut g = c.benchmark_group(format!("udp/length frame {size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("encode", |b| {
            let mut out = vec![0u8; 2 + size];
            b.iter(|| LengthFrame::encode(black_box(&payload), black_box(&mut out)).unwrap())
        });
        g.bench_function("header only", |b| {
            b.iter(|| LengthFrame::header(black_box(size)).unwrap())
        });
        g.bench_function("decode", |b| {
            b.iter(|| match LengthFrame::decode(black_box(&wire)).unwrap() {
                Decoded::Complete { value, consumed } => black_box((value.len(), consumed)),
                Decoded::Partial { .. } => unreachable!(),
            })
        });
        g.finish();
    }
}

fn datagram(c: &mut Criterion) {
    for (label, addr) in [("ipv4", "203.0.113.5:53"), ("domain", "dns.example.com:53")] {
        for size in [64usize, 1400] {
            let payload = vec![0x44u8; size];
            let d = Datagram {
                addr: Address::parse(addr).unwrap(),
                payload: &payload,
            };
            let mut wire = vec![0u8; d.encoded_len()];
            let n = d.encode(&mut wire).unwrap();
            let mut g = c.benchmark_group(format!("udp/datagram {label} {size}B"));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function("encode", |b| {
                let mut out = vec![0u8; n];
                b.iter(|| black_box(&d).encode(black_box(&mut out)).unwrap())
            });
            g.bench_function("decode", |b| {
                b.iter(|| match Datagram::decode(black_box(&wire)).unwrap() {
                    Decoded::Complete { value, consumed } => {
                        black_box((value.payload.len(), consumed))
                    }
                    Decoded::Partial { .. } => unreachable!(),
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, length_frame, datagram);
criterion_main!(benches);
