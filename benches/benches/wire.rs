//! The wire codec: a CONNECT request with user auth and a domain address (decode, single-pass
//! decode, encode), a BIND reply with a bound address, and a bare IPv6 address.
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use relay_core::wire::{Command, Feature, Features, Request, Response, Status};
use relay_core::{Address, Decoded};

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
    c.bench_function("wire/decode connect+auth+domain, one pass", |b| {
        b.iter(|| {
            let (r, _) = Request::decode(black_box(&bytes))
                .unwrap()
                .complete()
                .unwrap();
            let (mut auth, mut addr) = (None, None);
            for f in r.features {
                match f {
                    Feature::UserAuth { username, password } => auth = Some((username, password)),
                    Feature::Addr(a) => addr = Some(a),
                    _ => {}
                }
            }
            black_box((auth, addr))
        })
    });
    c.bench_function("wire/encode connect+auth+domain", |b| {
        let mut out = [0u8; 128];
        b.iter(|| black_box(&req).encode(black_box(&mut out)).unwrap())
    });
}

fn bind_reply_and_address(c: &mut Criterion) {
    let features = [Feature::Addr(Address::parse("203.0.113.5:34567").unwrap())];
    let resp = Response {
        status: Status::OK,
        features: Features::new(&features),
    };
    let mut buf = [0u8; 64];
    let n = resp.encode(&mut buf).unwrap();
    let bytes = buf[..n].to_vec();
    c.bench_function("wire/decode bind reply+ipv4", |b| {
        b.iter(|| {
            let (r, _) = Response::decode(black_box(&bytes))
                .unwrap()
                .complete()
                .unwrap();
            black_box((r.status, r.features.addr()))
        })
    });

    let addr = Address::parse("[2001:db8::1]:443").unwrap();
    let mut abuf = [0u8; 32];
    let n = addr.encode(&mut abuf).unwrap();
    let abytes = abuf[..n].to_vec();
    c.bench_function("wire/address decode ipv6", |b| {
        b.iter(|| match Address::decode(black_box(&abytes)).unwrap() {
            Decoded::Complete { value, .. } => black_box(value),
            Decoded::Partial { .. } => unreachable!(),
        })
    });
}

criterion_group!(benches, connect_request, bind_reply_and_address);
criterion_main!(benches);
