//! Requests, responses and their features area.

use core::fmt;

use crate::addr::Address;
use crate::codec::{Decoded, EncodeError, ensure_room};
use crate::wire::feature::{Feature, Network};
use crate::wire::{DecodeError, VERSION, WireError};

/// The features of a message, in wire order.
///
/// A decoded message borrows its checked features area; a message built for sending borrows a
/// slice of [`Feature`]s. Both iterate the same way and encode to the same bytes.
#[derive(Clone, Copy)]
pub struct Features<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Wire(&'a [u8]),
    List(&'a [Feature<'a>]),
}

impl<'a> Features<'a> {
    /// No features.
    pub const EMPTY: Features<'static> = Features(Repr::List(&[]));

    /// Features to send, in this order.
    pub fn new(list: &'a [Feature<'a>]) -> Self {
        Features(Repr::List(list))
    }

    /// Checks a received features area: every TLV must be whole and every known body valid.
    fn check(area: &'a [u8]) -> Result<Self, WireError> {
        let mut rest = area;
        while !rest.is_empty() {
            let (_, used) = Feature::decode(rest)?;
            rest = &rest[used..];
        }
        Ok(Features(Repr::Wire(area)))
    }

    /// Iterates the features in wire order.
    pub fn iter(&self) -> FeatureIter<'a> {
        match self.0 {
            Repr::Wire(area) => FeatureIter::Wire(area),
            Repr::List(list) => FeatureIter::List(list.iter()),
        }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The last user/password pair (GOST takes the last feature of each type).
    pub fn user_auth(&self) -> Option<(&'a [u8], &'a [u8])> {
        self.iter()
            .filter_map(|f| match f {
                Feature::UserAuth { username, password } => Some((username, password)),
                _ => None,
            })
            .last()
    }

    /// The last address.
    pub fn addr(&self) -> Option<Address<'a>> {
        self.iter()
            .filter_map(|f| match f {
                Feature::Addr(a) => Some(a),
                _ => None,
            })
            .last()
    }

    /// The last network id.
    pub fn network(&self) -> Option<Network> {
        self.iter()
            .filter_map(|f| match f {
                Feature::Network(n) => Some(n),
                _ => None,
            })
            .last()
    }

    /// Length of the encoded features area (FLEN).
    pub fn encoded_len(&self) -> usize {
        match self.0 {
            Repr::Wire(area) => area.len(),
            Repr::List(list) => list.iter().map(Feature::encoded_len).sum(),
        }
    }

    fn check_encode(&self) -> Result<usize, EncodeError> {
        if let Repr::List(list) = self.0 {
            for f in list {
                f.check()?;
            }
        }
        let len = self.encoded_len();
        if len > u16::MAX as usize {
            return Err(EncodeError::FeaturesTooLong);
        }
        Ok(len)
    }

    fn write_unchecked(&self, out: &mut [u8]) {
        match self.0 {
            Repr::Wire(area) => out[..area.len()].copy_from_slice(area),
            Repr::List(list) => {
                let mut at = 0;
                for f in list {
                    f.write_unchecked(&mut out[at..]);
                    at += f.encoded_len();
                }
            }
        }
    }
}

impl PartialEq for Features<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Features<'_> {}

impl fmt::Debug for Features<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Features<'a> {
    type Item = Feature<'a>;
    type IntoIter = FeatureIter<'a>;
    fn into_iter(self) -> FeatureIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Features`].
#[derive(Clone)]
pub enum FeatureIter<'a> {
    #[doc(hidden)]
    Wire(&'a [u8]),
    #[doc(hidden)]
    List(core::slice::Iter<'a, Feature<'a>>),
}

impl<'a> Iterator for FeatureIter<'a> {
    type Item = Feature<'a>;

    fn next(&mut self) -> Option<Feature<'a>> {
        match self {
            FeatureIter::Wire(rest) => {
                // The area was checked when decoded, so this cannot fail; stop if it ever did.
                let (f, used) = Feature::decode(rest).ok()?;
                *rest = &rest[used..];
                Some(f)
            }
            FeatureIter::List(it) => it.next().copied(),
        }
    }
}

/// Reads the 4-byte header and the features area shared by requests and responses.
fn decode_message(buf: &[u8]) -> Result<Decoded<(u8, Features<'_>)>, DecodeError> {
    let Some(header) = buf.get(..4) else {
        return Ok(Decoded::Partial { needed: 4 });
    };
    if header[0] != VERSION {
        return Err(DecodeError {
            error: WireError::BadVersion,
            consumed: 4,
        });
    }
    let total = 4 + u16::from_be_bytes([header[2], header[3]]) as usize;
    let Some(area) = buf.get(4..total) else {
        return Ok(Decoded::Partial { needed: total });
    };
    let features = Features::check(area).map_err(|error| DecodeError {
        error,
        consumed: total,
    })?;
    Ok(Decoded::Complete {
        value: (header[1], features),
        consumed: total,
    })
}

/// Writes `VER | byte1 | FLEN | features` into `out`.
fn encode_message(
    byte1: u8,
    features: &Features<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let flen = features.check_encode()?;
    let total = 4 + flen;
    ensure_room(out, total)?;
    out[0] = VERSION;
    out[1] = byte1;
    out[2..4].copy_from_slice(&(flen as u16).to_be_bytes());
    features.write_unchecked(&mut out[4..total]);
    Ok(total)
}

/// A relay request: command nibble, flags nibble and features.
///
/// ```
/// use relay_core::wire::{Command, Feature, Features, Request};
/// use relay_core::{Address, Decoded};
///
/// let features = [
///     Feature::UserAuth { username: b"user", password: b"pass" },
///     Feature::Addr(Address::parse("example.com:443").unwrap()),
/// ];
/// let req = Request { cmd: Command::CONNECT, features: Features::new(&features) };
/// let mut buf = [0u8; 64];
/// let n = req.encode(&mut buf).unwrap();
/// assert_eq!(n, req.encoded_len());
///
/// let Decoded::Complete { value, consumed } = Request::decode(&buf[..n]).unwrap() else { panic!() };
/// assert_eq!(consumed, n);
/// assert_eq!(value, req);
/// assert_eq!(value.features.user_auth(), Some((&b"user"[..], &b"pass"[..])));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The CMD byte: command in the low nibble, flags in the high nibble.
    pub cmd: Command,
    /// The features.
    pub features: Features<'a>,
}

impl<'a> Request<'a> {
    /// Decodes a request at the front of `buf`, never reading past it.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Request<'a>>, DecodeError> {
        Ok(decode_message(buf)?.map(|(cmd, features)| Request {
            cmd: Command(cmd),
            features,
        }))
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        4 + self.features.encoded_len()
    }

    /// Encodes into `out`, returning the length written. Nothing is written on error.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        encode_message(self.cmd.0, &self.features, out)
    }
}

/// A relay response: status and features.
///
/// ```
/// use relay_core::wire::{Response, Status};
/// use relay_core::Decoded;
/// let bytes = [0x01, 0x07, 0x00, 0x00, b'x'];
/// let Decoded::Complete { value, consumed } = Response::decode(&bytes).unwrap() else { panic!() };
/// assert_eq!((value.status, consumed), (Status::NETWORK_UNREACHABLE, 4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status byte.
    pub status: Status,
    /// The features (a bound or peer address, for BIND).
    pub features: Features<'a>,
}

impl<'a> Response<'a> {
    /// A response with no features.
    pub const fn status(status: Status) -> Response<'static> {
        Response {
            status,
            features: Features::EMPTY,
        }
    }

    /// Decodes a response at the front of `buf`, never reading past it.
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Response<'a>>, DecodeError> {
        Ok(decode_message(buf)?.map(|(status, features)| Response {
            status: Status(status),
            features,
        }))
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        4 + self.features.encoded_len()
    }

    /// Encodes into `out`, returning the length written. Nothing is written on error.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        encode_message(self.status.0, &self.features, out)
    }
}

/// The CMD byte of a request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command(pub u8);

impl Command {
    /// CONNECT (`0x01`).
    pub const CONNECT: Command = Command(0x01);
    /// BIND (`0x02`).
    pub const BIND: Command = Command(0x02);
    /// ASSOCIATE (`0x03`, GOST's router; the relay handler answers BadRequest).
    pub const ASSOCIATE: Command = Command(0x03);
    /// The UDP flag (`0x80`).
    pub const FLAG_UDP: u8 = 0x80;
    /// UDP CONNECT (`0x81`).
    pub const CONNECT_UDP: Command = Command(0x81);
    /// UDP BIND (`0x82`): rudp and UDP association.
    pub const BIND_UDP: Command = Command(0x82);

    /// The command nibble.
    pub fn command(self) -> u8 {
        self.0 & 0x0f
    }
    /// The flags nibble.
    pub fn flags(self) -> u8 {
        self.0 & 0xf0
    }
    /// True when the UDP flag is set.
    pub fn is_udp(self) -> bool {
        self.0 & Self::FLAG_UDP != 0
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.command() {
            0 => "none",
            1 => "connect",
            2 => "bind",
            3 => "associate",
            _ => "unknown",
        };
        write!(
            f,
            "Command({:#04x} {name}{})",
            self.0,
            if self.is_udp() { "+udp" } else { "" }
        )
    }
}

/// The status byte of a response.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// `0x00` OK.
    pub const OK: Status = Status(0);
    /// `0x01` Bad Request.
    pub const BAD_REQUEST: Status = Status(1);
    /// `0x02` Unauthorized.
    pub const UNAUTHORIZED: Status = Status(2);
    /// `0x03` Forbidden.
    pub const FORBIDDEN: Status = Status(3);
    /// `0x04` Timeout (never sent by GOST).
    pub const TIMEOUT: Status = Status(4);
    /// `0x05` Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Status = Status(5);
    /// `0x06` Host Unreachable.
    pub const HOST_UNREACHABLE: Status = Status(6);
    /// `0x07` Network Unreachable.
    pub const NETWORK_UNREACHABLE: Status = Status(7);
    /// `0x08` Internal Server Error (never sent by GOST).
    pub const INTERNAL_SERVER_ERROR: Status = Status(8);

    /// GOST's text label, empty for unassigned codes.
    pub fn label(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "Bad Request",
            2 => "Unauthorized",
            3 => "Forbidden",
            4 => "Timeout",
            5 => "Service Unavailable",
            6 => "Host Unreachable",
            7 => "Network Unreachable",
            8 => "Internal Server Error",
            _ => "",
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({} {})", self.0, self.label())
    }
}

impl fmt::Display for Status {
    /// `"<code> <label>"`, as GOST's connectors report a refusal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.label())
    }
}
