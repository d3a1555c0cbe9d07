//! Drives every vector of `tests/vectors/codec.json` (produced by GOST's Go codec, go-gost/relay
//! d3237303) through our codec.
//!
//! * encode vectors (`kind` request/response/feature): the encoder input in `fields` is mapped to
//!   our types and encoded; the output must be exactly `hex`, or refused with the `EncodeError`
//!   matching Go's error text, writing nothing.
//! * the same vectors' `hex` is decoded and compared, field by field, with `fields.decoded`.
//! * `decode_error` vectors: the decoder must give `decoded`, or fail with the `WireError` matching
//!   Go's text after consuming the same number of bytes. A whole message cut short is our
//!   `Decoded::Partial`: Go's failure must then be a short read at the end of the input.
//!
//! Deliberate differences from Go are written in `docs/wire-decisions.md` (D1…) and asserted here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use relay_core::wire::{
    Command, DecodeError, Feature, Features, Metadata, Network, Request, Response, Status,
    TunnelId, WireError,
};
use relay_core::{Address, Decoded, EncodeError, Host};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/codec.json");

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
}

/// A string field, from its authoritative `<key>_hex` twin when there is one.
fn bytes_of(v: &Value, key: &str) -> Vec<u8> {
    match v.get(format!("{key}_hex")).and_then(Value::as_str) {
        Some(h) => hex(h),
        None => text(v, key).as_bytes().to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Go inputs mapped to our types

/// An owned feature, built from a vector's encoder input.
#[derive(Debug)]
enum Owned {
    UserAuth(Vec<u8>, Vec<u8>),
    Addr(OwnedHost, u16),
    /// An address Go was asked to encode with an ATYP our types cannot express (D2).
    UnrepresentableAddr(u8),
    Tunnel([u8; 20]),
    Network(u16),
    Metadata(Vec<(Vec<u8>, Vec<u8>)>),
    Opaque(u8, Vec<u8>),
}

#[derive(Debug)]
enum OwnedHost {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Domain(Vec<u8>),
}

/// Go's address encoder: the ATYP decides the layout and the host text is coerced into it (D1).
fn map_addr(f: &Value) -> Owned {
    let atyp = num(f, "atype") as u8;
    let port = num(f, "port") as u16;
    let host = text(f, "host");
    let ip = host.parse::<IpAddr>().ok();
    let host = match atyp {
        1 => OwnedHost::V4(match ip {
            Some(IpAddr::V4(v4)) => v4,
            Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            None => Ipv4Addr::UNSPECIFIED,
        }),
        4 => OwnedHost::V6(match ip {
            Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped(),
            Some(IpAddr::V6(v6)) => v6,
            None => Ipv6Addr::UNSPECIFIED,
        }),
        3 => OwnedHost::Domain(bytes_of(f, "host")),
        other => return Owned::UnrepresentableAddr(other),
    };
    Owned::Addr(host, port)
}

fn map_feature(f: &Value) -> Owned {
    match text(f, "type_name") {
        "user_auth" => Owned::UserAuth(bytes_of(f, "username"), bytes_of(f, "password")),
        "addr" => map_addr(f),
        "tunnel" => Owned::Tunnel(hex(text(f, "id_hex")).try_into().unwrap()),
        "network" => Owned::Network(num(f, "network") as u16),
        "metadata" => Owned::Metadata(
            f["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (bytes_of(p, "key"), bytes_of(p, "value")))
                .collect(),
        ),
        "unknown" => Owned::Opaque(num(f, "type") as u8, opaque_body(f)),
        other => panic!("unknown type_name {other}"),
    }
}

/// An opaque body, possibly summarised as `data_len` copies of one byte.
fn opaque_body(f: &Value) -> Vec<u8> {
    if f.get("data_all_same_byte").and_then(Value::as_bool) == Some(true) {
        let first = hex(text(f, "data_hex_first16"));
        vec![first[0]; num(f, "data_len") as usize]
    } else {
        let body = hex(text(f, "data_hex"));
        assert_eq!(body.len() as u64, num(f, "data_len"));
        body
    }
}

/// A feature list: an array, or `{summarized, count, first}` for `count` identical features.
fn feature_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.get("summarized").and_then(Value::as_bool) == Some(true) => {
            assert_eq!(o["all_identical"], Value::Bool(true));
            vec![&o["first"]; o["count"].as_u64().unwrap() as usize]
        }
        other => panic!("bad feature list {other}"),
    }
}

/// Builds borrowed features from owned ones, or `None` when one is unrepresentable.
fn with_features<R>(owned: &[Owned], f: impl FnOnce(Option<&[Feature<'_>]>) -> R) -> R {
    if owned
        .iter()
        .any(|o| matches!(o, Owned::UnrepresentableAddr(_)))
    {
        return f(None);
    }
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
            Owned::Addr(h, port) => Feature::Addr(Address {
                host: match h {
                    OwnedHost::V4(v4) => Host::V4(*v4),
                    OwnedHost::V6(v6) => Host::V6(*v6),
                    OwnedHost::Domain(d) => Host::Domain(d),
                },
                port: *port,
            }),
            Owned::UnrepresentableAddr(_) => unreachable!(),
            Owned::Tunnel(t) => Feature::Tunnel(TunnelId(*t)),
            Owned::Network(n) => Feature::Network(Network(*n)),
            Owned::Metadata(_) => Feature::Metadata(Metadata::from_pairs(m)),
            Owned::Opaque(kind, body) => Feature::Opaque { kind: *kind, body },
        })
        .collect();
    f(Some(&list))
}

fn encode_error_of(go: &str) -> EncodeError {
    match go {
        "username maximum length exceeded" => EncodeError::UsernameTooLong,
        "password maximum length exceeded" => EncodeError::PasswordTooLong,
        "addr maximum length exceeded" => EncodeError::DomainTooLong,
        "features maximum length exceeded" => EncodeError::FeaturesTooLong,
        other => panic!("no EncodeError for Go error {other:?}"),
    }
}

fn wire_error_of(go: &str) -> WireError {
    match go {
        "bad version" => WireError::BadVersion,
        "short buffer" => WireError::ShortBuffer,
        "bad address type" => WireError::BadAddressType,
        "EOF" => WireError::MissingFeatureBody,
        "unexpected EOF" => WireError::TruncatedFeature,
        other => panic!("no WireError for Go error {other:?}"),
    }
}

/// Runs an encoder into a poisoned buffer; on error, checks nothing was written.
fn run_encode(
    len_hint: usize,
    enc: impl Fn(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0xA5u8; len_hint.max(1) + 8];
    match enc(&mut out) {
        Ok(n) => Ok(out[..n].to_vec()),
        Err(e) => {
            assert!(out.iter().all(|&b| b == 0xA5), "refused encode wrote bytes");
            Err(e)
        }
    }
}

/// Checks an encoder outcome against the vector's `encode` text and `hex`.
fn check_encode(name: &str, fields: &Value, want_hex: &[u8], got: Result<Vec<u8>, EncodeError>) {
    let encode = text(fields, "encode");
    match (encode, got) {
        ("ok", Ok(bytes)) => assert_eq!(to_hex(&bytes), to_hex(want_hex), "{name}: encoded bytes"),
        ("ok", Err(e)) => panic!("{name}: Go encoded, we refused with {e:?}"),
        (go, Ok(bytes)) => panic!("{name}: Go refused ({go}), we wrote {}", to_hex(&bytes)),
        (go, Err(e)) => {
            assert_eq!(e, encode_error_of(go), "{name}: encode error");
            assert!(want_hex.is_empty(), "{name}: Go wrote bytes on error");
            if let Some(n) = fields.get("encode_bytes_written") {
                assert_eq!(n.as_u64(), Some(0), "{name}: Go wrote on error");
            }
        }
    }
}

/// `bad address type` from Go's encoder: our types cannot carry the ATYP at all (D2). Assert the
/// decision: the same ATYP on the wire is refused by our decoder with `BadAddressType`.
fn check_unrepresentable(name: &str, owned: &[Owned], fields: &Value) {
    assert_eq!(text(fields, "encode"), "bad address type", "{name}");
    for o in owned {
        if let Owned::UnrepresentableAddr(atyp) = o {
            assert!(![1, 3, 4].contains(atyp), "{name}");
            let body = [*atyp, 1, 2, 3, 4, 0, 80];
            assert_eq!(
                Address::decode_body(&body)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err("bad address type".into())
            );
            assert_eq!(
                Feature::decode_body(2, &body),
                Err(WireError::BadAddressType),
                "{name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoded values compared with Go's `decoded`

/// Go's rendering of an IP host: an IPv4-mapped IPv6 address prints as dotted IPv4.
fn go_ip_text(host: &Host<'_>) -> String {
    match host {
        Host::V4(v4) => v4.to_string(),
        Host::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        Host::Domain(_) => unreachable!(),
    }
}

fn uuid_text(id: &[u8]) -> String {
    let h = to_hex(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn check_feature(ctx: &str, f: &Feature<'_>, exp: &Value) {
    assert_eq!(f.kind() as u64, num(exp, "type"), "{ctx}: type");
    match (text(exp, "type_name"), f) {
        ("user_auth", Feature::UserAuth { username, password }) => {
            assert_eq!(*username, &bytes_of(exp, "username")[..], "{ctx}: username");
            assert_eq!(*password, &bytes_of(exp, "password")[..], "{ctx}: password");
            assert_eq!(username.len() as u64, num(exp, "username_len"), "{ctx}");
            assert_eq!(password.len() as u64, num(exp, "password_len"), "{ctx}");
        }
        ("addr", Feature::Addr(a)) => {
            assert_eq!(a.atyp() as u64, num(exp, "atype"), "{ctx}: atyp");
            assert_eq!(a.port as u64, num(exp, "port"), "{ctx}: port");
            let want_name = match a.atyp() {
                1 => "ipv4",
                3 => "domain",
                _ => "ipv6",
            };
            assert_eq!(text(exp, "atype_name"), want_name, "{ctx}");
            match a.host {
                Host::Domain(d) => assert_eq!(d, &bytes_of(exp, "host")[..], "{ctx}: domain"),
                ip => assert_eq!(go_ip_text(&ip), text(exp, "host"), "{ctx}: host text"),
            }
        }
        ("tunnel", Feature::Tunnel(t)) => {
            assert_eq!(to_hex(&t.0), text(exp, "id_hex"), "{ctx}: tunnel bytes");
            assert_eq!(t.flags() as u64, num(exp, "flags"), "{ctx}: flags");
            assert_eq!(t.weight() as u64, num(exp, "weight"), "{ctx}: weight");
            assert_eq!(
                to_hex(&t.0[17..19]),
                text(exp, "reserved_hex"),
                "{ctx}: reserved"
            );
            assert_eq!(uuid_text(t.id()), text(exp, "uuid"), "{ctx}: uuid");
        }
        ("network", Feature::Network(n)) => {
            assert_eq!(n.0 as u64, num(exp, "network"), "{ctx}: network");
            // The vectors name unregistered ids "unregistered"; Go's own lookup says "tcp".
            let want = match text(exp, "network_name") {
                "unregistered" => "tcp",
                name => name,
            };
            assert_eq!(n.name(), want, "{ctx}: network name");
        }
        ("metadata", Feature::Metadata(m)) => {
            // Go decodes into a map (a repeated key keeps the last value); compare as maps.
            let mut ours = BTreeMap::new();
            for (k, v) in m.pairs() {
                ours.insert(k.to_vec(), v.to_vec());
            }
            let pairs = exp["pairs"].as_array().unwrap();
            let theirs: BTreeMap<_, _> = pairs
                .iter()
                .map(|p| (bytes_of(p, "key"), bytes_of(p, "value")))
                .collect();
            assert_eq!(theirs.len(), pairs.len(), "{ctx}: Go map has unique keys");
            assert_eq!(ours, theirs, "{ctx}: metadata pairs");
            for (k, v) in &theirs {
                assert_eq!(m.get(k), Some(&v[..]), "{ctx}: get");
            }
        }
        ("unknown", Feature::Opaque { body, .. }) => {
            assert_eq!(*body, &opaque_body(exp)[..], "{ctx}: opaque body");
            assert_eq!(text(exp, "go_type"), "*relay.OpaqueFeature", "{ctx}");
        }
        (name, f) => panic!("{ctx}: Go decoded {name}, we decoded {f:?}"),
    }
}

fn check_features(ctx: &str, ours: Features<'_>, exp: &Value, n_feature: u64) {
    let want = feature_list(&exp["features"]);
    assert_eq!(ours.len() as u64, n_feature, "{ctx}: feature count");
    assert_eq!(want.len() as u64, n_feature, "{ctx}: vector feature count");
    for (i, (f, e)) in ours.iter().zip(want).enumerate() {
        check_feature(&format!("{ctx} feature {i}"), &f, e);
    }
}

fn check_request(ctx: &str, r: &Request<'_>, consumed: usize, exp: &Value) {
    assert_eq!(num(exp, "version"), 1, "{ctx}");
    assert_eq!(r.cmd.0 as u64, num(exp, "cmd_byte"), "{ctx}: cmd byte");
    assert_eq!(r.cmd.command() as u64, num(exp, "cmd"), "{ctx}: command");
    assert_eq!(r.cmd.flags() as u64, num(exp, "flags"), "{ctx}: flags");
    assert_eq!(
        Value::Bool(r.cmd.is_udp()),
        exp["flag_udp"],
        "{ctx}: udp flag"
    );
    let name = match r.cmd.command() {
        0 => "none(0)",
        1 => "connect",
        2 => "bind",
        3 => "associate",
        _ => "unassigned",
    };
    assert_eq!(name, text(exp, "cmd_name"), "{ctx}");
    assert_eq!(consumed as u64, num(exp, "consumed"), "{ctx}: consumed");
    check_features(ctx, r.features, exp, num(exp, "n_feature"));
}

fn check_response(ctx: &str, r: &Response<'_>, consumed: usize, exp: &Value) {
    assert_eq!(num(exp, "version"), 1, "{ctx}");
    assert_eq!(r.status.0 as u64, num(exp, "status"), "{ctx}: status");
    let label = match r.status.label() {
        "" => "unassigned".to_string(),
        l => l.replace(' ', ""),
    };
    assert_eq!(label, text(exp, "status_name"), "{ctx}: status name");
    assert_eq!(consumed as u64, num(exp, "consumed"), "{ctx}: consumed");
    check_features(ctx, r.features, exp, num(exp, "n_feature"));
}

/// Decodes `bytes` as `target` and checks the outcome against Go's (`go_result`, `decoded` or
/// `consumed`).
fn check_decode(
    name: &str,
    target: &str,
    bytes: &[u8],
    go_result: &str,
    decoded: Option<&Value>,
    go_consumed: Option<u64>,
) {
    match target {
        "request" | "response" => {
            let outcome = if target == "request" {
                Request::decode(bytes).map(|d| d.map(Msg::Req))
            } else {
                Response::decode(bytes).map(|d| d.map(Msg::Resp))
            };
            match (go_result, outcome) {
                ("ok", Ok(Decoded::Complete { value, consumed })) => {
                    let exp = decoded.unwrap_or_else(|| panic!("{name}: no decoded"));
                    match value {
                        Msg::Req(r) => check_request(name, &r, consumed, exp),
                        Msg::Resp(r) => check_response(name, &r, consumed, exp),
                    }
                    // The decoded message re-encodes to the bytes it came from.
                    let again = match value {
                        Msg::Req(r) => run_encode(consumed, |o| r.encode(o)),
                        Msg::Resp(r) => run_encode(consumed, |o| r.encode(o)),
                    };
                    assert_eq!(again.unwrap(), &bytes[..consumed], "{name}: re-encode");
                }
                (go, Ok(Decoded::Partial { needed })) => {
                    // Go read from a stream and hit its end; we wait for more bytes.
                    assert!(
                        go == "EOF" || go == "unexpected EOF",
                        "{name}: Partial but Go said {go}"
                    );
                    assert_eq!(
                        go_consumed,
                        Some(bytes.len() as u64),
                        "{name}: Go failed before end of input"
                    );
                    let want_needed = if bytes.len() < 4 {
                        4
                    } else {
                        4 + u16::from_be_bytes([bytes[2], bytes[3]]) as usize
                    };
                    assert_eq!(needed, want_needed, "{name}: needed");
                    assert!(needed > bytes.len(), "{name}");
                }
                (go, Err(DecodeError { error, consumed })) => {
                    assert_ne!(go, "ok", "{name}: Go decoded, we refused with {error:?}");
                    assert_eq!(error, wire_error_of(go), "{name}: decode error");
                    assert_eq!(Some(consumed as u64), go_consumed, "{name}: consumed");
                }
                (go, Ok(other)) => panic!("{name}: Go said {go}, we gave {other:?}"),
            }
        }
        "feature" => match (go_result, Feature::decode(bytes)) {
            ("ok", Ok((f, used))) => {
                let exp = decoded.unwrap_or_else(|| panic!("{name}: no decoded"));
                assert_eq!(used as u64, num(exp, "consumed"), "{name}: consumed");
                check_feature(name, &f, exp);
                // Re-encoding gives a TLV that decodes to the same feature (a known body loses
                // any surplus bytes after its layout: D5).
                let again = run_encode(f.encoded_len(), |o| f.encode(o)).unwrap();
                let (f2, used2) = Feature::decode(&again).unwrap();
                assert_eq!((f2, used2), (f, again.len()), "{name}: re-encode");
            }
            ("ok", Err(e)) => panic!("{name}: Go decoded, we refused with {e:?}"),
            (go, Ok((f, _))) => panic!("{name}: Go said {go}, we decoded {f:?}"),
            (go, Err(e)) => {
                assert_eq!(e, wire_error_of(go), "{name}: decode error");
                // Our TLV decoder reports no count: it needs the whole TLV in the buffer. A short
                // read consumed the whole input; a body error consumed the whole TLV (3 + LEN).
                let implied = match e {
                    WireError::MissingFeatureBody | WireError::TruncatedFeature => bytes.len(),
                    _ => 3 + u16::from_be_bytes([bytes[1], bytes[2]]) as usize,
                };
                assert_eq!(Some(implied as u64), go_consumed, "{name}: consumed");
            }
        },
        other => panic!("{name}: unknown target {other}"),
    }
}

#[derive(Debug)]
enum Msg<'a> {
    Req(Request<'a>),
    Resp(Response<'a>),
}

// ---------------------------------------------------------------------------------------------

fn check_encode_vector(name: &str, kind: &str, fields: &Value, want: &[u8]) {
    let owned: Vec<Owned> = match kind {
        "feature" => vec![map_feature(fields)],
        _ => feature_list(&fields["features"])
            .into_iter()
            .map(map_feature)
            .collect(),
    };
    with_features(&owned, |list| {
        let Some(list) = list else {
            return check_unrepresentable(name, &owned, fields);
        };
        let got = match kind {
            "feature" => run_encode(want.len(), |o| list[0].encode(o)),
            "request" => {
                let cmd = num(fields, "cmd_byte") as u8;
                assert_eq!(cmd & 0x0f, num(fields, "cmd") as u8, "{name}");
                assert_eq!(cmd & 0xf0, num(fields, "flags") as u8, "{name}");
                let req = Request {
                    cmd: Command(cmd),
                    features: Features::new(list),
                };
                run_encode(want.len(), |o| req.encode(o))
            }
            "response" => {
                let resp = Response {
                    status: Status(num(fields, "status") as u8),
                    features: Features::new(list),
                };
                run_encode(want.len(), |o| resp.encode(o))
            }
            _ => unreachable!(),
        };
        let version = fields.get("version").and_then(Value::as_u64).unwrap_or(1);
        if version != 1 {
            // D3: we only write version 1. Go wrote the version it was given; the rest is equal.
            assert_eq!(text(fields, "encode"), "ok", "{name}");
            assert_eq!(want[0] as u64, version, "{name}");
            let mut patched = want.to_vec();
            patched[0] = 1;
            check_encode(name, fields, &patched, got);
        } else {
            check_encode(name, fields, want, got);
        }
    });
}

/// `ParseFrom("…")` vectors: our `Address::parse` gives the same address, except that a port
/// outside 0–65535 is refused instead of wrapped (D4).
fn check_parse_from(name: &str, fields: &Value, want: &[u8]) {
    let Some(note) = fields.get("note").and_then(Value::as_str) else {
        return;
    };
    let Some(start) = note.find("ParseFrom(\"") else {
        return;
    };
    let rest = &note[start + 11..];
    let input = &rest[..rest.find("\")").unwrap()];
    match Address::parse(input) {
        Ok(a) => {
            let mut out = [0u8; 300];
            let n = Feature::Addr(a).encode(&mut out).unwrap();
            assert_eq!(to_hex(&out[..n]), to_hex(want), "{name}: parse({input:?})");
        }
        Err(e) => {
            let port: i64 = input.rsplit_once(':').unwrap().1.parse().unwrap();
            assert!(
                !(0..=65535).contains(&port),
                "{name}: parse({input:?}) refused: {e}"
            );
        }
    }
}

#[test]
fn codec_vectors() {
    let vectors: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
    let mut checked = 0;
    let mut names = std::collections::HashSet::new();
    for v in &vectors {
        let name = text(v, "name");
        assert!(names.insert(name), "duplicate vector {name}");
        let kind = text(v, "kind");
        let fields = &v["fields"];
        let bytes = hex(text(v, "hex"));
        let go_result = text(v, "go_result");
        match kind {
            "request" | "response" | "feature" => {
                check_encode_vector(name, kind, fields, &bytes);
                if kind == "feature" && text(fields, "type_name") == "addr" {
                    check_parse_from(name, fields, &bytes);
                }
                if let Some(decode) = fields.get("decode").and_then(Value::as_str) {
                    let go_consumed =
                        (decode != "ok").then_some(if decode == "bad version" { 4 } else { 0 });
                    check_decode(
                        name,
                        kind,
                        &bytes,
                        decode,
                        fields.get("decoded"),
                        go_consumed,
                    );
                } else {
                    assert_ne!(
                        text(fields, "encode"),
                        "ok",
                        "{name}: encoded but not decoded"
                    );
                }
                let want_result = fields
                    .get("decode")
                    .and_then(Value::as_str)
                    .filter(|d| *d != "ok")
                    .unwrap_or(text(fields, "encode"));
                assert_eq!(go_result, want_result, "{name}: go_result");
            }
            "decode_error" => {
                assert_eq!(num(fields, "input_len") as usize, bytes.len(), "{name}");
                let consumed = fields.get("consumed").and_then(Value::as_u64);
                let decoded = fields.get("decoded");
                assert_eq!(go_result == "ok", decoded.is_some(), "{name}");
                check_decode(
                    name,
                    text(fields, "target"),
                    &bytes,
                    go_result,
                    decoded,
                    consumed,
                );
            }
            other => panic!("{name}: unknown kind {other}"),
        }
        checked += 1;
    }
    println!("checked {checked} vectors");
    assert_eq!(checked, 209);
}
