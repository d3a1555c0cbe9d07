//! Decoding and encoding requests, responses, features and addresses allocates nothing.
//!
//! A counting global allocator counts, per thread, the allocations made while a closure runs;
//! the thread-local counter is const-initialised and has no destructor, so touching it from the
//! allocator never allocates itself. Only this thread's allocations are counted, so the test
//! harness's own threads cannot disturb the count.

use std::hint::black_box;

use relay_core::wire::{
    Command, Feature, Features, Metadata, Network, Request, Response, Status, TunnelId,
};
use relay_core::{Address, Decoded, Host};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn wire_codec_allocates_nothing() {
    // The counter works: a Vec allocation is seen.
    let (n, v) = allocations(|| black_box(vec![1u8; 16]));
    assert_eq!(n, 1);
    drop(v);

    let pairs: [(&[u8], &[u8]); 2] = [(b"record.mode", b"full"), (b"k", b"v")];
    let features = [
        Feature::UserAuth {
            username: b"user",
            password: b"pass",
        },
        Feature::Addr(Address {
            host: Host::Domain(b"example.com"),
            port: 443,
        }),
        Feature::Addr(Address {
            host: Host::V6(std::net::Ipv6Addr::LOCALHOST),
            port: 22,
        }),
        Feature::Tunnel(TunnelId([7; 20])),
        Feature::Network(Network::UDP),
        Feature::Metadata(Metadata::from_pairs(&pairs)),
        Feature::Opaque {
            kind: 0xfe,
            body: b"\x11\x22",
        },
    ];
    let req = Request {
        cmd: Command::CONNECT_UDP,
        features: Features::new(&features),
    };
    let resp = Response {
        status: Status::OK,
        features: Features::new(&features[1..2]),
    };

    let (n, ()) = allocations(|| {
        let mut buf = [0u8; 512];
        let mut out = [0u8; 512];

        // Request: encode, decode, read every feature, re-encode.
        let len = req.encode(&mut buf).unwrap();
        assert_eq!(len, req.encoded_len());
        let Decoded::Complete { value, consumed } = Request::decode(&buf[..len]).unwrap() else {
            panic!()
        };
        assert_eq!(consumed, len);
        assert_eq!(value, req);
        assert_eq!(value.features.len(), features.len());
        assert_eq!(
            value.features.user_auth(),
            Some((&b"user"[..], &b"pass"[..]))
        );
        assert_eq!(value.features.network(), Some(Network::UDP));
        for f in value.features {
            if let Feature::Metadata(m) = f {
                assert_eq!(m.get(b"record.mode"), Some(&b"full"[..]));
                assert_eq!(m.pairs().count(), 2);
            }
            black_box(f);
        }
        assert_eq!(value.encode(&mut out).unwrap(), len);
        assert_eq!(out[..len], buf[..len]);
        assert!(matches!(
            Request::decode(&buf[..len - 1]),
            Ok(Decoded::Partial { .. })
        ));
        assert!(Request::decode(&[2, 1, 0, 0]).is_err());

        // Response.
        let len = resp.encode(&mut buf).unwrap();
        let (value, _) = Response::decode(&buf[..len]).unwrap().complete().unwrap();
        assert_eq!(value, resp);
        assert_eq!(
            value.features.addr(),
            Some(Address {
                host: Host::Domain(b"example.com"),
                port: 443
            })
        );
        assert_eq!(
            Response::status(Status::FORBIDDEN)
                .encode(&mut out)
                .unwrap(),
            4
        );

        // Each feature alone.
        for f in &features {
            let len = f.encode(&mut buf).unwrap();
            assert_eq!(Feature::decode(&buf[..len]), Ok((*f, len)));
            black_box(Feature::decode_body(buf[0], &buf[3..len]).unwrap());
        }
        assert!(Feature::decode(&[2, 0, 4, 0xff, 0, 0, 0]).is_err());

        // Addresses: parse, encode, stream decode, body decode.
        for text in [
            "1.2.3.4:80",
            "[::1]:443",
            "example.com:8080",
            ":22",
            "demo.sock",
        ] {
            let a = Address::parse(text).unwrap();
            let len = a.encode(&mut buf).unwrap();
            assert_eq!(
                Address::decode(&buf[..len]).unwrap().complete(),
                Some((a, len))
            );
            assert_eq!(Address::decode_body(&buf[..len]), Ok(a));
            black_box(a.socket_addr());
        }
        assert!(Address::decode(&[9, 0, 0, 0]).is_err());
    });
    assert_eq!(n, 0, "the wire codec allocated {n} times");
}
