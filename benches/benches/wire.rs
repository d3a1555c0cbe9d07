//! Decode and encode of a CONNECT request with user auth and a domain address.
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use relay_core::Address;
use relay_core::wire::{Command, Feature, Features, Request};

fn connect_request(c: &mut Criterion) {
    let features = [
        Feature::UserAuth {
            username: b"user",
            password: b"pass",
        },
        Feature::Addr(Address::parse("example.com:443").unwrap()),
    ];
    let req = Request {
        cmd: Command::CONNECT,
        features: Features::new(&features),
    };
    let mut buf = [0u8; 128];
    let n = req.encode(&mut buf).unwrap();
    let bytes = buf[..n].to_vec();

    c.bench_function("wire/decode connect+auth+domain", |b| {
        b.iter(|| {
            let d = Request::decode(black_box(&bytes)).unwrap();
            let (r, _) = d.complete().unwrap();
            black_box((r.features.user_auth(), r.features.addr()))
        })
    });
    c.bench_function("wire/encode connect+auth+domain", |b| {
        let mut out = [0u8; 128];
        b.iter(|| black_box(&req).encode(black_box(&mut out)).unwrap())
    });
}

criterion_group!(benches, connect_request);
criterion_main!(benches);
