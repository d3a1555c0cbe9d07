//! Property tests of the wire codec: round trips, any split of the input, arbitrary bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use relay_core::wire::{
    Command, Feature, Features, METADATA_MAX_FIELD, METADATA_MAX_PAIRS, Metadata, Network, Request,
    Response, Status, TunnelId,
};
use relay_core::{Address, Decoded, Host};

// ---------------------------------------------------------------------------------------------
// Owned values and strategies (features borrow, so strategies build owned ones first)

#[derive(Debug, Clone)]
enum OwnedHost {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Domain(Vec<u8>),
}

#[derive(Debug, Clone)]
struct OwnedAddr(OwnedHost, u16);

impl OwnedAddr {
    fn as_addr(&self) -> Address<'_> {
        Address {
            host: match &self.0 {
                OwnedHost::V4(v4) => Host::V4(*v4),
                OwnedHost::V6(v6) => Host::V6(*v6),
                OwnedHost::Domain(d) => Host::Domain(d),
            },
            port: self.1,
        }
    }
}

#[derive(Debug, Clone)]
enum Owned {
    UserAuth(Vec<u8>, Vec<u8>),
    Addr(OwnedAddr),
    Tunnel([u8; 20]),
    Network(u16),
    Metadata(Vec<(Vec<u8>, Vec<u8>)>),
    Opaque(u8, Vec<u8>),
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn arb_addr() -> impl Strategy<Value = OwnedAddr> {
    let host = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| OwnedHost::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| OwnedHost::V6(Ipv6Addr::from(b))),
        bytes(255).prop_map(OwnedHost::Domain),
    ];
    (host, any::<u16>()).prop_map(|(h, p)| OwnedAddr(h, p))
}

/// Metadata within GOST's limits (≤ 20 pairs, fields ≤ 255 bytes): it round-trips exactly.
fn arb_metadata(field: usize) -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    vec((bytes(field), bytes(field)), 0..=METADATA_MAX_PAIRS)
}

fn arb_feature() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (bytes(255), bytes(255)).prop_map(|(u, p)| Owned::UserAuth(u, p)),
        arb_addr().prop_map(Owned::Addr),
        any::<[u8; 20]>().prop_map(Owned::Tunnel),
        any::<u16>().prop_map(Owned::Network),
        arb_metadata(24).prop_map(Owned::Metadata),
        (
            any::<u8>().prop_filter("unknown type", |k| !(1..=5).contains(k)),
            bytes(300)
        )
            .prop_map(|(k, b)| Owned::Opaque(k, b)),
    ]
}

/// Builds borrowed features from owned ones.
fn with_features<R>(owned: &[Owned], f: impl FnOnce(&[Feature<'_>]) -> R) -> R {
    let meta: Vec<Vec<(&[u8], &[u8])>> = owned
        .iter()
        .map(|o| match o {
            Owned::Metadata(p) => p.iter().map(|(k, v)| (&k[..], &v[..])).collect(),
            _ => Vec::new(),
        })
        .collect();
    let list: Vec<Feature<'_>> = owned
        .iter()
        .zip(&meta)
        .map(|(o, m)| match o {
            Owned::UserAuth(u, p) => Feature::UserAuth {
                username: u,
                password: p,
            },
            Owned::Addr(a) => Feature::Addr(a.as_addr()),
            Owned::Tunnel(t) => Feature::Tunnel(TunnelId(*t)),
            Owned::Network(n) => Feature::Network(Network(*n)),
            Owned::Metadata(_) => Feature::Metadata(Metadata::from_pairs(m)),
            Owned::Opaque(kind, body) => Feature::Opaque { kind: *kind, body },
        })
        .collect();
    f(&list)
}

fn encode_request(req: &Request<'_>) -> Vec<u8> {
    let mut out = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

fn encode_response(resp: &Response<'_>) -> Vec<u8> {
    let mut out = vec![0u8; resp.encoded_len()];
    let n = resp.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Every proper prefix of the first `n` bytes of `buf` is `Partial` with a `needed` beyond it and
/// within the message; the whole message, alone or followed by the rest of `buf` (payload), is
/// `Complete` with the same value.
fn check_prefixes<'a, T: PartialEq + core::fmt::Debug, E: core::fmt::Debug>(
    buf: &'a [u8],
    n: usize,
    decode: impl Fn(&'a [u8]) -> Result<Decoded<T>, E>,
    want: &T,
) {
    for k in 0..n {
        match decode(&buf[..k]) {
            Ok(Decoded::Partial { needed }) => {
                assert!(needed > k && needed <= n, "prefix {k}: needed {needed}")
            }
            other => panic!("prefix {k} of {n}: {other:?}"),
        }
    }
    for whole in [&buf[..n], buf] {
        match decode(whole) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, n);
                assert_eq!(&value, want);
            }
            other => panic!("whole message: {other:?}"),
        }
    }
}

/// `bytes` followed by `trailing`.
fn glue(bytes: &[u8], trailing: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(trailing);
    v
}

// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn address_round_trip(a in arb_addr(), trailing in bytes(8)) {
        let addr = a.as_addr();
        let mut out = [0u8; 260];
        let n = addr.encode(&mut out).unwrap();
        prop_assert_eq!(n, addr.encoded_len());
        prop_assert_eq!(out[0], addr.atyp());
        prop_assert_eq!(Address::decode_body(&out[..n]), Ok(addr));
        // A feature body ignores bytes after the port.
        let mut body = out[..n].to_vec();
        body.extend_from_slice(&trailing);
        prop_assert_eq!(Address::decode_body(&body), Ok(addr));
        let glued = glue(&out[..n], &trailing);
        check_prefixes(&glued, n, Address::decode, &addr);
        // Too small a buffer writes nothing.
        let mut small = vec![0xEEu8; n - 1];
        prop_assert!(addr.encode(&mut small).is_err());
        prop_assert!(small.iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn feature_round_trip(o in arb_feature(), trailing in bytes(8)) {
        with_features(std::slice::from_ref(&o), |list| {
            let f = list[0];
            let mut out = vec![0u8; f.encoded_len()];
            let n = f.encode(&mut out).unwrap();
            assert_eq!(n, out.len());
            assert_eq!(out[0], f.kind());
            let mut glued = out.clone();
            glued.extend_from_slice(&trailing);
            assert_eq!(Feature::decode(&out), Ok((f, n)));
            assert_eq!(Feature::decode(&glued), Ok((f, n)));
            // Decode then encode gives the same bytes.
            let (again, _) = Feature::decode(&out).unwrap();
            let mut out2 = vec![0u8; again.encoded_len()];
            again.encode(&mut out2).unwrap();
            assert_eq!(out2, out);
        });
    }

    #[test]
    fn request_round_trip(cmd in any::<u8>(), owned in vec(arb_feature(), 0..8), trailing in bytes(16)) {
        with_features(&owned, |list| {
            let req = Request { cmd: Command(cmd), features: Features::new(list) };
            let bytes = encode_request(&req);
            let (value, consumed) = Request::decode(&bytes).unwrap().complete().unwrap();
            assert_eq!((value, consumed), (req, bytes.len()));
            assert_eq!(value.features.len(), list.len());
            assert!(value.features.iter().eq(list.iter().copied()));
            assert_eq!(encode_request(&value), bytes);
            let glued = glue(&bytes, &trailing);
            check_prefixes(&glued, bytes.len(), Request::decode, &req);
        });
    }

    #[test]
    fn response_round_trip(status in any::<u8>(), owned in vec(arb_feature(), 0..8), trailing in bytes(16)) {
        with_features(&owned, |list| {
            let resp = Response { status: Status(status), features: Features::new(list) };
            let bytes = encode_response(&resp);
            let (value, consumed) = Response::decode(&bytes).unwrap().complete().unwrap();
            assert_eq!((value, consumed), (resp, bytes.len()));
            assert_eq!(encode_response(&value), bytes);
            let glued = glue(&bytes, &trailing);
            check_prefixes(&glued, bytes.len(), Response::decode, &resp);
        });
    }

    /// Metadata over GOST's limits is written as GOST writes it (first 20 pairs, fields cut to
    /// 255 bytes), and the value equals what decodes from it.
    #[test]
    fn metadata_over_limits(pairs in vec((bytes(300), bytes(300)), 0..26)) {
        let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let f = Feature::Metadata(Metadata::from_pairs(&refs));
        let mut out = vec![0u8; f.encoded_len()];
        f.encode(&mut out).unwrap();
        let (back, _) = Feature::decode(&out).unwrap();
        prop_assert_eq!(back, f);
        let Feature::Metadata(m) = back else { unreachable!() };
        let cut: Vec<(&[u8], &[u8])> = refs
            .iter()
            .take(METADATA_MAX_PAIRS)
            .map(|(k, v)| (&k[..k.len().min(METADATA_MAX_FIELD)], &v[..v.len().min(METADATA_MAX_FIELD)]))
            .collect();
        prop_assert_eq!(m.pairs().collect::<Vec<_>>(), cut);
    }

    /// Arbitrary bytes never panic a decoder, and whatever decodes re-encodes to its bytes.
    #[test]
    fn arbitrary_bytes(data in bytes(600), kind in any::<u8>()) {
        let _ = Feature::decode_body(kind, &data);
        let _ = Address::decode_body(&data);
        if let Ok(Decoded::Complete { value, consumed }) = Address::decode(&data) {
            let mut out = [0u8; 260];
            let n = value.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &data[..consumed]);
        }
        if let Ok((f, used)) = Feature::decode(&data) {
            prop_assert!(used <= data.len());
            let _ = format!("{f:?}");
        }
        for decoded in [Request::decode(&data).map(|d| d.map(|r| (r.encoded_len(), r.features))),
                        Response::decode(&data).map(|d| d.map(|r| (r.encoded_len(), r.features)))] {
            if let Ok(Decoded::Complete { value: (len, features), consumed }) = decoded {
                prop_assert_eq!(len, consumed);
                let _ = features.iter().count();
                let _ = (features.user_auth(), features.addr(), features.network());
            }
        }
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = Address::parse(text);
        }
    }

    /// Framed arbitrary areas (version 1, FLEN = area length) reach the feature parser; any
    /// message that decodes re-encodes to the identical bytes, and every prefix is `Partial`.
    #[test]
    fn framed_arbitrary_area(cmd in any::<u8>(), area in bytes(200)) {
        let mut msg = vec![1, cmd];
        msg.extend_from_slice(&(area.len() as u16).to_be_bytes());
        msg.extend_from_slice(&area);
        match Request::decode(&msg) {
            Ok(Decoded::Complete { value, consumed }) => {
                prop_assert_eq!(consumed, msg.len());
                prop_assert_eq!(encode_request(&value), msg.clone());
                for f in value.features {
                    let mut out = vec![0u8; f.encoded_len()];
                    f.encode(&mut out).unwrap();
                    prop_assert_eq!(Feature::decode(&out), Ok((f, out.len())));
                }
                let glued = glue(&msg, b"payload");
                check_prefixes(&glued, msg.len(), Request::decode, &value);
            }
            Ok(Decoded::Partial { .. }) => prop_assert!(false, "whole message was Partial"),
            Err(e) => prop_assert_eq!(e.consumed, msg.len()),
        }
        let (resp_ok, req_ok) = (Response::decode(&msg).is_ok(), Request::decode(&msg).is_ok());
        prop_assert_eq!(resp_ok, req_ok);
    }
}

/// Messages back to back, fed in chunks of every size, decode to the same values.
#[test]
fn every_split_of_a_stream_of_messages() {
    // Two requests and a response back to back, fed in chunks of every size.
    let features = [
        Feature::UserAuth {
            username: b"user",
            password: b"pass",
        },
        Feature::Addr(Address::parse("example.com:443").unwrap()),
        Feature::Metadata(Metadata::from_pairs(&[(b"record.mode", b"full")])),
        Feature::Opaque {
            kind: 0xfe,
            body: b"\x11\x22",
        },
    ];
    let req = Request {
        cmd: Command::CONNECT,
        features: Features::new(&features),
    };
    let resp = Response::status(Status::OK);
    let mut stream = encode_request(&req);
    stream.extend(encode_request(&req));
    let n1 = stream.len();
    stream.extend(encode_response(&resp));
    for chunk in 1..=stream.len() {
        let mut fed = 0;
        let mut at = 0;
        let mut got = 0;
        while at < stream.len() {
            fed = (fed + chunk).min(stream.len());
            loop {
                let buf = &stream[at..fed];
                if at < n1 {
                    match Request::decode(buf).unwrap() {
                        Decoded::Partial { .. } => break,
                        Decoded::Complete { value, consumed } => {
                            assert_eq!(value, req);
                            at += consumed;
                            got += 1;
                        }
                    }
                } else {
                    match Response::decode(buf).unwrap() {
                        Decoded::Partial { .. } => break,
                        Decoded::Complete { value, consumed } => {
                            assert_eq!(value, resp);
                            at += consumed;
                            got += 1;
                        }
                    }
                }
                if at == stream.len() {
                    break;
                }
            }
        }
        assert_eq!(got, 3, "chunk {chunk}");
    }
}
