//! Feature TLVs: `TYPE(1) | LEN(2, big-endian) | BODY(LEN)`.

use core::fmt;

use crate::addr::{AddrError, Address};
use crate::codec::{EncodeError, ensure_room};
use crate::wire::WireError;

/// Feature type of [`Feature::UserAuth`].
pub const TYPE_USER_AUTH: u8 = 0x01;
/// Feature type of [`Feature::Addr`].
pub const TYPE_ADDR: u8 = 0x02;
/// Feature type of [`Feature::Tunnel`].
pub const TYPE_TUNNEL: u8 = 0x03;
/// Feature type of [`Feature::Network`].
pub const TYPE_NETWORK: u8 = 0x04;
/// Feature type of [`Feature::Metadata`].
pub const TYPE_METADATA: u8 = 0x05;

/// Most metadata pairs GOST reads or writes.
pub const METADATA_MAX_PAIRS: usize = 20;
/// Longest metadata key or value GOST writes (longer ones are cut).
pub const METADATA_MAX_FIELD: usize = 255;

/// One feature of a request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature<'a> {
    /// `0x01`: user name and password, raw bytes of up to 255 each.
    UserAuth {
        /// User name bytes.
        username: &'a [u8],
        /// Password bytes (may be empty).
        password: &'a [u8],
    },
    /// `0x02`: an address (target, bound address or peer address).
    Addr(Address<'a>),
    /// `0x03`: tunnel or connector id.
    Tunnel(TunnelId),
    /// `0x04`: network id.
    Network(Network),
    /// `0x05`: key/value metadata.
    Metadata(Metadata<'a>),
    /// Any other type, kept as received so that it re-encodes unchanged.
    Opaque {
        /// The feature type byte.
        kind: u8,
        /// The body, possibly empty.
        body: &'a [u8],
    },
}

/// The 20-byte tunnel / connector id: 16 id bytes, flags, 2 reserved bytes, weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId(pub [u8; 20]);

impl TunnelId {
    /// Flag bit of a private tunnel (in requests).
    pub const FLAG_PRIVATE: u8 = 0x80;
    /// Flag bit of a UDP connector (in responses).
    pub const FLAG_UDP: u8 = 0x01;

    /// The 16 id bytes: the only part that identity and the zero test look at.
    pub fn id(&self) -> &[u8] {
        &self.0[..16]
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.0[16]
    }
    /// The weight byte.
    pub fn weight(&self) -> u8 {
        self.0[19]
    }
    /// True when the 16 id bytes are all zero (GOST answers BadRequest to such a tunnel).
    pub fn is_zero(&self) -> bool {
        self.id().iter().all(|&b| b == 0)
    }
}

/// The network id of a [`Feature::Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network(pub u16);

impl Network {
    /// TCP (also what an absent feature means).
    pub const TCP: Network = Network(0x0000);
    /// UDP.
    pub const UDP: Network = Network(0x0001);
    /// IP (router association).
    pub const IP: Network = Network(0x0002);
    /// Unix-domain socket.
    pub const UNIX: Network = Network(0x0010);
    /// Serial port.
    pub const SERIAL: Network = Network(0x0011);

    /// GOST's name for this network; unregistered ids are named `tcp`, as GOST does.
    pub fn name(self) -> &'static str {
        match self {
            Network::UDP => "udp",
            Network::IP => "ip",
            Network::UNIX => "unix",
            Network::SERIAL => "serial",
            _ => "tcp",
        }
    }
}

/// Metadata: up to 20 key/value pairs of raw bytes.
///
/// A decoded value holds the checked body; a value built for sending holds a slice of pairs.
#[derive(Clone, Copy)]
pub struct Metadata<'a>(MetaRepr<'a>);

#[derive(Clone, Copy)]
enum MetaRepr<'a> {
    Body(&'a [u8]),
    Pairs(&'a [(&'a [u8], &'a [u8])]),
}

impl<'a> Metadata<'a> {
    /// Metadata to send. At most the first 20 pairs are written and keys and values are cut to
    /// 255 bytes, exactly as GOST's encoder does.
    pub fn from_pairs(pairs: &'a [(&'a [u8], &'a [u8])]) -> Self {
        Metadata(MetaRepr::Pairs(pairs))
    }

    /// The pairs in wire order (the first 20 when decoded, as GOST reads them).
    pub fn pairs(&self) -> MetadataPairs<'a> {
        match self.0 {
            MetaRepr::Body(body) => {
                let count = body
                    .get(..2)
                    .map_or(0, |n| u16::from_be_bytes([n[0], n[1]]) as usize);
                MetadataPairs::Body {
                    rest: body.get(2..).unwrap_or(&[]),
                    left: count.min(METADATA_MAX_PAIRS),
                }
            }
            MetaRepr::Pairs(pairs) => {
                MetadataPairs::Slice(pairs[..pairs.len().min(METADATA_MAX_PAIRS)].iter())
            }
        }
    }

    /// The value of the last pair whose key is `key` (a repeated key keeps the last value).
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.pairs()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    fn body_len(&self) -> usize {
        match self.0 {
            MetaRepr::Body(body) => body.len(),
            MetaRepr::Pairs(_) => {
                2 + self
                    .pairs()
                    .map(|(k, v)| {
                        4 + k.len().min(METADATA_MAX_FIELD) + v.len().min(METADATA_MAX_FIELD)
                    })
                    .sum::<usize>()
            }
        }
    }

    fn write_body(&self, out: &mut [u8]) {
        match self.0 {
            MetaRepr::Body(body) => out[..body.len()].copy_from_slice(body),
            MetaRepr::Pairs(pairs) => {
                let n = pairs.len().min(METADATA_MAX_PAIRS);
                out[..2].copy_from_slice(&(n as u16).to_be_bytes());
                let mut at = 2;
                for (k, v) in self.pairs() {
                    for field in [k, v] {
                        let field = &field[..field.len().min(METADATA_MAX_FIELD)];
                        out[at..at + 2].copy_from_slice(&(field.len() as u16).to_be_bytes());
                        out[at + 2..at + 2 + field.len()].copy_from_slice(field);
                        at += 2 + field.len();
                    }
                }
            }
        }
    }

    /// Checks a received body: every length of the first 20 pairs must fit.
    fn check_body(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < 2 {
            return Err(WireError::ShortBuffer);
        }
        let meta = Metadata(MetaRepr::Body(body));
        let MetadataPairs::Body { mut rest, left } = meta.pairs() else {
            return Err(WireError::ShortBuffer);
        };
        for _ in 0..left {
            for _field in 0..2 {
                let (_, after) = take_field(rest).ok_or(WireError::ShortBuffer)?;
                rest = after;
            }
        }
        Ok(meta)
    }
}

/// Splits a `LEN(2) | bytes` field off the front of `buf`.
fn take_field(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    let field = buf.get(2..2 + len)?;
    Some((field, &buf[2 + len..]))
}

impl PartialEq for Metadata<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for Metadata<'_> {}

impl fmt::Debug for Metadata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs()).finish()
    }
}

/// Iterator over metadata pairs, see [`Metadata::pairs`].
#[derive(Clone)]
pub enum MetadataPairs<'a> {
    #[doc(hidden)]
    Body { rest: &'a [u8], left: usize },
    #[doc(hidden)]
    Slice(core::slice::Iter<'a, (&'a [u8], &'a [u8])>),
}

impl<'a> Iterator for MetadataPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            MetadataPairs::Body { rest, left } => {
                if *left == 0 {
                    return None;
                }
                let (k, after) = take_field(rest)?;
                let (v, after) = take_field(after)?;
                *rest = after;
                *left -= 1;
                Some((k, v))
            }
            MetadataPairs::Slice(it) => it.next().copied(),
        }
    }
}

impl<'a> Feature<'a> {
    /// The feature type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Feature::UserAuth { .. } => TYPE_USER_AUTH,
            Feature::Addr(_) => TYPE_ADDR,
            Feature::Tunnel(_) => TYPE_TUNNEL,
            Feature::Network(_) => TYPE_NETWORK,
            Feature::Metadata(_) => TYPE_METADATA,
            Feature::Opaque { kind, .. } => *kind,
        }
    }

    /// Decodes a body of type `kind` with GOST's rules: known types reject a body too short for
    /// their layout (`ShortBuffer`) and ignore bytes after it; other types are kept opaque.
    pub fn decode_body(kind: u8, body: &'a [u8]) -> Result<Feature<'a>, WireError> {
        match kind {
            TYPE_USER_AUTH => {
                let ulen = *body.first().ok_or(WireError::ShortBuffer)? as usize;
                let plen = *body.get(1 + ulen).ok_or(WireError::ShortBuffer)? as usize;
                let password = body
                    .get(2 + ulen..2 + ulen + plen)
                    .ok_or(WireError::ShortBuffer)?;
                Ok(Feature::UserAuth {
                    username: &body[1..1 + ulen],
                    password,
                })
            }
            TYPE_ADDR => Address::decode_body(body)
                .map(Feature::Addr)
                .map_err(|e| match e {
                    AddrError::ShortBuffer => WireError::ShortBuffer,
                    AddrError::BadAddressType => WireError::BadAddressType,
                }),
            TYPE_TUNNEL => {
                let id = body.get(..20).ok_or(WireError::ShortBuffer)?;
                let mut bytes = [0u8; 20];
                bytes.copy_from_slice(id);
                Ok(Feature::Tunnel(TunnelId(bytes)))
            }
            TYPE_NETWORK => {
                let id = body.get(..2).ok_or(WireError::ShortBuffer)?;
                Ok(Feature::Network(Network(u16::from_be_bytes([
                    id[0], id[1],
                ]))))
            }
            TYPE_METADATA => Metadata::check_body(body).map(Feature::Metadata),
            kind => Ok(Feature::Opaque { kind, body }),
        }
    }

    /// Decodes one TLV at the front of `buf` (which must hold all of it), returning the feature
    /// and the bytes it used. Errors as GOST's decoder reports them.
    pub fn decode(buf: &'a [u8]) -> Result<(Feature<'a>, usize), WireError> {
        if buf.len() < 3 {
            return Err(if buf.is_empty() {
                WireError::MissingFeatureBody
            } else {
                WireError::TruncatedFeature
            });
        }
        let kind = buf[0];
        let len = u16::from_be_bytes([buf[1], buf[2]]) as usize;
        let rest = &buf[3..];
        if len > 0 && rest.is_empty() {
            return Err(WireError::MissingFeatureBody);
        }
        let body = rest.get(..len).ok_or(WireError::TruncatedFeature)?;
        Ok((Feature::decode_body(kind, body)?, 3 + len))
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        match self {
            Feature::UserAuth { username, password } => 2 + username.len() + password.len(),
            Feature::Addr(a) => a.encoded_len(),
            Feature::Tunnel(_) => 20,
            Feature::Network(_) => 2,
            Feature::Metadata(m) => m.body_len(),
            Feature::Opaque { body, .. } => body.len(),
        }
    }

    /// Length of the whole TLV: 3 + body.
    pub fn encoded_len(&self) -> usize {
        3 + self.body_len()
    }

    /// Refuses what GOST's encoder refuses: over-long user name, password, domain or body.
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        match self {
            Feature::UserAuth { username, .. } if username.len() > 255 => {
                Err(EncodeError::UsernameTooLong)
            }
            Feature::UserAuth { password, .. } if password.len() > 255 => {
                Err(EncodeError::PasswordTooLong)
            }
            Feature::Addr(a) => a.check(),
            _ if self.body_len() > u16::MAX as usize => Err(EncodeError::FeaturesTooLong),
            _ => Ok(()),
        }
    }

    /// Writes the TLV into `out`, returning its length. Nothing is written on error.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        ensure_room(out, len)?;
        self.write_unchecked(out);
        Ok(len)
    }

    /// Writes a checked feature into a buffer known to be large enough.
    pub(crate) fn write_unchecked(&self, out: &mut [u8]) {
        let body_len = self.body_len();
        out[0] = self.kind();
        out[1..3].copy_from_slice(&(body_len as u16).to_be_bytes());
        let body = &mut out[3..3 + body_len];
        match self {
            Feature::UserAuth { username, password } => {
                body[0] = username.len() as u8;
                body[1..1 + username.len()].copy_from_slice(username);
                body[1 + username.len()] = password.len() as u8;
                body[2 + username.len()..].copy_from_slice(password);
            }
            Feature::Addr(a) => {
                // Checked by `check`: the encoding cannot fail here.
                let _ = a.encode(body);
            }
            Feature::Tunnel(t) => body.copy_from_slice(&t.0),
            Feature::Network(n) => body.copy_from_slice(&n.0.to_be_bytes()),
            Feature::Metadata(m) => m.write_body(body),
            Feature::Opaque { body: b, .. } => body.copy_from_slice(b),
        }
    }
}
