//! The framings that carry UDP datagrams: two over a relay stream, one on a local SOCKS5 UDP
//! socket.
//!
//! | framing | layout | used by |
//! |---|---|---|
//! | [`LengthFrame`] | `LEN(2, BE) \| DATA(LEN)` | UDP CONNECT / port forwarding (client.md §4, server.md §4) |
//! | [`Datagram::decode`] / [`Datagram::encode`] | `RSV(2, BE) = LEN \| FRAG(1) = 0xFF \| ADDR \| DATA(LEN)` | UDP BIND and UDP association (client.md §5, bind.md §5) |
//! | [`Datagram::decode_packet`] / [`Datagram::encode_packet`] | `RSV(2) = 0 \| FRAG(1) \| ADDR \| DATA` | one standard SOCKS5 UDP packet (RFC 1928 §7) on the local UDP socket of a UDP ASSOCIATE |
//!
//! ADDR is the SOCKS5 address of [`crate::addr`]. Nothing here allocates: decoders borrow the
//! datagram from the input, encoders write into the caller's buffer (or hand back just the header
//! so the payload can be written without a copy).
//!
//! ```
//! use relay_core::udp::{Datagram, LengthFrame};
//! use relay_core::{Address, Decoded};
//!
//! // UDP CONNECT: one length-prefixed datagram, followed by the start of the next.
//! let Decoded::Complete { value, consumed } = LengthFrame::decode(&[0, 2, 0xAB, 0xCD, 0]).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!((value, consumed), (&[0xAB, 0xCD][..], 4));
//!
//! // UDP BIND / association: 2 bytes to 8.8.8.8:53 (client.md §5 example).
//! let dgram = Datagram { addr: Address::parse("8.8.8.8:53").unwrap(), payload: &[0xAB, 0xCD] };
//! let mut out = [0u8; 32];
//! let n = dgram.encode(&mut out).unwrap();
//! assert_eq!(&out[..n], &[0x00, 0x02, 0xFF, 0x01, 8, 8, 8, 8, 0x00, 0x35, 0xAB, 0xCD]);
//! assert_eq!(Datagram::decode(&out[..n]).unwrap(), Decoded::Complete { value: dgram, consumed: n });
//! ```

use core::fmt;

use crate::addr::{AddrError, Address};
use crate::codec::{Decoded, EncodeError, ensure_room};

/// Largest datagram either stream framing can carry (its length field is 16 bits).
pub const MAX_DATAGRAM: usize = u16::MAX as usize;

/// GOST's default UDP buffer (`udpBufferSize` / `udp.bufferSize`): datagrams longer than this
/// are truncated by a GOST peer.
pub const GOST_UDP_BUFFER: usize = 4096;

/// The FRAG byte GOST writes in the stream datagram framing ("UDP tunnel" marker).
pub const FRAG_TUNNEL: u8 = 0xFF;

/// Why a datagram could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// The address has an ATYP other than 1, 3 or 4. On a stream this ends the association
    /// (framing is lost); on a UDP socket, drop the packet.
    BadAddressType,
    /// A standard SOCKS5 UDP packet ends inside its header or address: drop it.
    ShortPacket,
    /// A standard SOCKS5 UDP packet with FRAG other than 0: fragmentation is not supported
    /// (RFC 1928 allows dropping these).
    Fragmented,
    /// Refused to encode an empty datagram in the stream framing: GOST's reader takes RSV = 0 as
    /// "plain SOCKS5" and desynchronises. The caller must drop the datagram.
    EmptyDatagram,
    /// A datagram over [`MAX_DATAGRAM`] bytes has no stream encoding.
    TooLarge,
    /// A domain over 255 bytes has no encoding.
    DomainTooLong,
    /// The output buffer is too small; nothing was written.
    BufferTooSmall {
        /// The buffer length the encoding needs.
        needed: usize,
    },
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::BadAddressType => f.write_str("bad address type"),
            UdpError::ShortPacket => f.write_str("UDP packet shorter than its header"),
            UdpError::Fragmented => f.write_str("fragmented SOCKS5 UDP packet"),
            UdpError::EmptyDatagram => f.write_str("empty datagram cannot be framed for GOST"),
            UdpError::TooLarge => f.write_str("datagram longer than 65535 bytes"),
            UdpError::DomainTooLong => f.write_str("domain longer than 255 bytes"),
            UdpError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl std::error::Error for UdpError {}

impl From<AddrError> for UdpError {
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::BadAddressType => UdpError::BadAddressType,
            AddrError::ShortBuffer => UdpError::ShortPacket,
        }
    }
}

/// The errors of [`Address::encode`], the only encoder used here.
fn from_addr_encode(e: EncodeError) -> UdpError {
    match e {
        EncodeError::BufferTooSmall { needed } => UdpError::BufferTooSmall { needed },
        _ => UdpError::DomainTooLong,
    }
}

/// Cuts `payload` to at most `max` bytes, returning what is kept and how many bytes were cut
/// (0 when nothing was). GOST truncates silently; this lets the caller count or log it.
///
/// ```
/// assert_eq!(relay_core::udp::truncate(b"abcdef", 4), (&b"abcd"[..], 2));
/// assert_eq!(relay_core::udp::truncate(b"ab", 4), (&b"ab"[..], 0));
/// ```
pub fn truncate(payload: &[u8], max: usize) -> (&[u8], usize) {
    if payload.len() > max {
        (&payload[..max], payload.len() - max)
    } else {
        (payload, 0)
    }
}

/// The length framing of UDP CONNECT and UDP port forwarding: `LEN(2, BE) | DATA(LEN)`, both
/// directions, no address. Zero-length datagrams are allowed (`00 00`).
///
/// ```
/// use relay_core::udp::LengthFrame;
/// use relay_core::Decoded;
/// let mut out = [0u8; 8];
/// assert_eq!(LengthFrame::encode(b"hi", &mut out).unwrap(), 4);
/// assert_eq!(&out[..4], b"\x00\x02hi");
/// assert_eq!(LengthFrame::decode(&out[..3]).unwrap(), Decoded::Partial { needed: 4 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthFrame;

impl LengthFrame {
    /// Length of the header (the LEN field).
    pub const HEADER_LEN: usize = 2;

    /// Decodes one datagram at the front of a stream buffer, borrowing it. `Partial` until the
    /// whole datagram is there; never an error (the `Result` keeps the codec shape uniform).
    pub fn decode(buf: &[u8]) -> Result<Decoded<&[u8]>, UdpError> {
        let Some(h) = buf.get(..2) else {
            return Ok(Decoded::Partial { needed: 2 });
        };
        let end = 2 + u16::from_be_bytes([h[0], h[1]]) as usize;
        Ok(match buf.get(2..end) {
            Some(value) => Decoded::Complete {
                value,
                consumed: end,
            },
            None => Decoded::Partial { needed: end },
        })
    }

    /// Length of the framed datagram: `2 + payload_len`.
    pub fn encoded_len(payload_len: usize) -> usize {
        Self::HEADER_LEN + payload_len
    }

    /// The header alone, for writing the payload from where it already is.
    ///
    /// ```
    /// assert_eq!(relay_core::udp::LengthFrame::header(300).unwrap(), [0x01, 0x2C]);
    /// ```
    pub fn header(payload_len: usize) -> Result<[u8; 2], UdpError> {
        u16::try_from(payload_len)
            .map(u16::to_be_bytes)
            .map_err(|_| UdpError::TooLarge)
    }

    /// Writes header and payload into `out`, returning the length written. Nothing is written
    /// on error.
    pub fn encode(payload: &[u8], out: &mut [u8]) -> Result<usize, UdpError> {
        let header = Self::header(payload.len())?;
        let len = Self::encoded_len(payload.len());
        ensure_room(out, len).map_err(|e| UdpError::BufferTooSmall { needed: e.needed })?;
        out[..2].copy_from_slice(&header);
        out[2..len].copy_from_slice(payload);
        Ok(len)
    }
}

/// One datagram with its address: the destination when sent towards the relay server, the
/// source when received from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Datagram<'a> {
    /// Destination or source address.
    pub addr: Address<'a>,
    /// The datagram itself.
    pub payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Decodes one datagram in the stream framing of UDP BIND / association:
    /// `RSV(2, BE) = LEN | FRAG(1) | ADDR | DATA(LEN)`. FRAG is ignored.
    ///
    /// `Partial` until the whole datagram is there. RSV = 0 decodes as an empty datagram (header
    /// and address only): that is what a GOST sender wrote, although GOST's own reader would
    /// desynchronise on it.
    ///
    /// ```
    /// use relay_core::udp::{Datagram, UdpError};
    /// use relay_core::Decoded;
    /// let Decoded::Complete { value, consumed } = Datagram::decode(&[0, 0, 0xFF, 1, 127, 0, 0, 1, 0, 53]).unwrap() else {
    ///     unreachable!()
    /// };
    /// assert_eq!((value.payload, consumed), (&[][..], 10));
    /// assert_eq!(Datagram::decode(&[0, 1, 0xFF, 9]), Err(UdpError::BadAddressType));
    /// ```
    pub fn decode(buf: &'a [u8]) -> Result<Decoded<Datagram<'a>>, UdpError> {
        let Some(h) = buf.get(..3) else {
            return Ok(Decoded::Partial { needed: 4 });
        };
        let len = u16::from_be_bytes([h[0], h[1]]) as usize;
        let (addr, addr_len) = match Address::decode(&buf[3..])? {
            Decoded::Complete { value, consumed } => (value, consumed),
            Decoded::Partial { needed } => {
                return Ok(Decoded::Partial {
                    needed: 3 + needed + len,
                });
            }
        };
        let start = 3 + addr_len;
        let end = start + len;
        Ok(match buf.get(start..end) {
            Some(payload) => Decoded::Complete {
                value: Datagram { addr, payload },
                consumed: end,
            },
            None => Decoded::Partial { needed: end },
        })
    }

    /// Length of the stream header (RSV, FRAG and address), without the payload.
    pub fn header_len(&self) -> usize {
        3 + self.addr.encoded_len()
    }

    /// Length of the stream encoding: header plus payload.
    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    fn check_stream(&self) -> Result<(), UdpError> {
        if self.payload.is_empty() {
            return Err(UdpError::EmptyDatagram);
        }
        if self.payload.len() > MAX_DATAGRAM {
            return Err(UdpError::TooLarge);
        }
        self.addr.check().map_err(from_addr_encode)?;
        Ok(())
    }

    /// Writes only the stream header (RSV = payload length, FRAG = 0xFF, address) into `out`,
    /// returning its length; the payload is to be written right after it, as one unit. Same
    /// checks as [`Datagram::encode`].
    pub fn encode_header(&self, out: &mut [u8]) -> Result<usize, UdpError> {
        self.check_stream()?;
        let len = self.header_len();
        ensure_room(out, len).map_err(|e| UdpError::BufferTooSmall { needed: e.needed })?;
        out[..2].copy_from_slice(&(self.payload.len() as u16).to_be_bytes());
        out[2] = FRAG_TUNNEL;
        self.addr.encode(&mut out[3..]).map_err(from_addr_encode)?;
        Ok(len)
    }

    /// Writes the whole datagram in the stream framing into `out`, returning the length
    /// written. Refuses an empty payload ([`UdpError::EmptyDatagram`]: drop it instead) and one
    /// over 65535 bytes. Nothing is written on error.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, UdpError> {
        self.check_stream()?;
        let len = self.encoded_len();
        ensure_room(out, len).map_err(|e| UdpError::BufferTooSmall { needed: e.needed })?;
        let h = self.encode_header(out)?;
        out[h..len].copy_from_slice(self.payload);
        Ok(len)
    }

    /// The datagram with its payload cut to at most `max` bytes (GOST: [`GOST_UDP_BUFFER`]), and
    /// how many bytes were cut.
    ///
    /// ```
    /// use relay_core::udp::Datagram;
    /// use relay_core::Address;
    /// let d = Datagram { addr: Address::parse("1.2.3.4:5").unwrap(), payload: &[0; 5000] };
    /// let (cut, lost) = d.truncated(4096);
    /// assert_eq!((cut.payload.len(), lost), (4096, 904));
    /// ```
    pub fn truncated(self, max: usize) -> (Datagram<'a>, usize) {
        let (payload, cut) = truncate(self.payload, max);
        (
            Datagram {
                addr: self.addr,
                payload,
            },
            cut,
        )
    }

    /// Decodes one standard SOCKS5 UDP packet (RFC 1928 §7): `RSV(2) | FRAG(1) | ADDR | DATA`,
    /// the payload being the rest of the packet. RSV is ignored; FRAG other than 0 is
    /// [`UdpError::Fragmented`]. Every error means "drop this packet".
    ///
    /// ```
    /// use relay_core::udp::{Datagram, UdpError};
    /// let d = Datagram::decode_packet(&[0, 0, 0, 1, 10, 0, 0, 1, 0, 53, b'q']).unwrap();
    /// assert_eq!((d.addr.to_string().as_str(), d.payload), ("10.0.0.1:53", &b"q"[..]));
    /// assert_eq!(Datagram::decode_packet(&[0, 0, 1, 1, 10, 0, 0, 1, 0, 53]), Err(UdpError::Fragmented));
    /// ```
    pub fn decode_packet(packet: &'a [u8]) -> Result<Datagram<'a>, UdpError> {
        let Some(&frag) = packet.get(2) else {
            return Err(UdpError::ShortPacket);
        };
        if frag != 0 {
            return Err(UdpError::Fragmented);
        }
        match Address::decode(&packet[3..])? {
            Decoded::Complete { value, consumed } => Ok(Datagram {
                addr: value,
                payload: &packet[3 + consumed..],
            }),
            Decoded::Partial { .. } => Err(UdpError::ShortPacket),
        }
    }

    /// Length of the standard SOCKS5 UDP packet: header plus payload.
    pub fn packet_len(&self) -> usize {
        self.encoded_len()
    }

    /// Writes a standard SOCKS5 UDP packet (RSV = 0, FRAG = 0) into `out`, returning its length.
    /// An empty payload is allowed here. Nothing is written on error.
    pub fn encode_packet(&self, out: &mut [u8]) -> Result<usize, UdpError> {
        self.addr.check().map_err(from_addr_encode)?;
        let len = self.packet_len();
        ensure_room(out, len).map_err(|e| UdpError::BufferTooSmall { needed: e.needed })?;
        out[..3].fill(0);
        let a = self.addr.encode(&mut out[3..]).map_err(from_addr_encode)?;
        out[3 + a..len].copy_from_slice(self.payload);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Host;
    use proptest::prelude::*;

    #[test]
    fn length_frame_edges() {
        assert_eq!(
            LengthFrame::decode(&[]).unwrap(),
            Decoded::Partial { needed: 2 }
        );
        assert_eq!(
            LengthFrame::decode(&[0]).unwrap(),
            Decoded::Partial { needed: 2 }
        );
        assert_eq!(
            LengthFrame::decode(&[0, 0, 9]).unwrap(),
            Decoded::Complete {
                value: &[][..],
                consumed: 2
            }
        );
        assert_eq!(
            LengthFrame::decode(&[0xFF, 0xFF]).unwrap(),
            Decoded::Partial { needed: 65537 }
        );
        let big = vec![7u8; MAX_DATAGRAM];
        let mut out = vec![0u8; MAX_DATAGRAM + 2];
        assert_eq!(
            LengthFrame::encode(&big, &mut out).unwrap(),
            MAX_DATAGRAM + 2
        );
        assert_eq!(&out[..2], &[0xFF, 0xFF]);
        let too_big = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            LengthFrame::encode(&too_big, &mut out),
            Err(UdpError::TooLarge)
        );
        assert_eq!(
            LengthFrame::encode(b"abc", &mut [0u8; 4]),
            Err(UdpError::BufferTooSmall { needed: 5 })
        );
    }

    #[test]
    fn captured_udp_bind_frames() {
        // bind.md §5.1, capture `udp_bind`.
        let bytes = b"\x00\x07\xff\x01\x7f\x00\x00\x01\xc9\x9aquery-1";
        let (d, n) = Datagram::decode(bytes).unwrap().complete().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(d.addr.to_string(), "127.0.0.1:51610");
        assert_eq!(d.payload, b"query-1");
        let mut out = [0u8; 64];
        assert_eq!(d.encode(&mut out).unwrap(), bytes.len());
        assert_eq!(&out[..bytes.len()], bytes);
    }

    #[test]
    fn stream_datagram_refusals() {
        let addr = Address {
            host: Host::Domain(b"example.com"),
            port: 53,
        };
        let mut out = [0u8; 64];
        assert_eq!(
            Datagram { addr, payload: b"" }.encode(&mut out),
            Err(UdpError::EmptyDatagram)
        );
        assert_eq!(
            Datagram { addr, payload: b"" }.encode_header(&mut out),
            Err(UdpError::EmptyDatagram)
        );
        let long = [b'a'; 256];
        let bad = Address {
            host: Host::Domain(&long),
            port: 1,
        };
        assert_eq!(
            Datagram {
                addr: bad,
                payload: b"x"
            }
            .encode(&mut [0u8; 400]),
            Err(UdpError::DomainTooLong)
        );
        let big = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            Datagram {
                addr,
                payload: &big
            }
            .encode(&mut out),
            Err(UdpError::TooLarge)
        );
        let d = Datagram {
            addr,
            payload: b"xy",
        };
        assert_eq!(
            d.encode(&mut [0u8; 10]),
            Err(UdpError::BufferTooSmall {
                needed: d.encoded_len()
            })
        );
        // The header alone, then the payload: same bytes as encode.
        let h = d.encode_header(&mut out).unwrap();
        let mut whole = [0u8; 64];
        let n = d.encode(&mut whole).unwrap();
        assert_eq!(&out[..h], &whole[..h]);
        assert_eq!(&whole[h..n], b"xy");
    }

    #[test]
    fn stream_datagram_partials() {
        assert_eq!(
            Datagram::decode(&[0, 5]).unwrap(),
            Decoded::Partial { needed: 4 }
        );
        assert_eq!(
            Datagram::decode(&[0, 5, 0xFF]).unwrap(),
            Decoded::Partial { needed: 3 + 4 + 5 }
        );
        assert_eq!(
            Datagram::decode(&[0, 5, 0xFF, 1]).unwrap(),
            Decoded::Partial { needed: 3 + 7 + 5 }
        );
        assert_eq!(
            Datagram::decode(&[0, 5, 0xFF, 7]),
            Err(UdpError::BadAddressType)
        );
    }

    #[test]
    fn socks5_packets() {
        let addr = Address::parse("[::1]:5353").unwrap();
        let d = Datagram { addr, payload: b"" };
        let mut out = [0u8; 64];
        let n = d.encode_packet(&mut out).unwrap();
        assert_eq!(n, 3 + 19);
        assert_eq!(&out[..3], &[0, 0, 0]);
        assert_eq!(Datagram::decode_packet(&out[..n]).unwrap(), d);
        assert_eq!(
            Datagram::decode_packet(&out[..n - 1]),
            Err(UdpError::ShortPacket)
        );
        assert_eq!(Datagram::decode_packet(&[0, 0]), Err(UdpError::ShortPacket));
        assert_eq!(
            Datagram::decode_packet(&[0, 0, 0]),
            Err(UdpError::ShortPacket)
        );
        assert_eq!(
            Datagram::decode_packet(&[0, 0, 0, 2]),
            Err(UdpError::BadAddressType)
        );
        assert_eq!(
            Datagram::decode_packet(&[0, 0, 0xFF, 1]),
            Err(UdpError::Fragmented)
        );
    }

    fn arb_addr() -> impl Strategy<Value = (u8, Vec<u8>, u16)> {
        prop_oneof![
            (
                Just(1u8),
                proptest::collection::vec(any::<u8>(), 4),
                any::<u16>()
            ),
            (
                Just(4u8),
                proptest::collection::vec(any::<u8>(), 16),
                any::<u16>()
            ),
            (
                Just(3u8),
                proptest::collection::vec(any::<u8>(), 0..=255),
                any::<u16>()
            ),
        ]
    }

    fn build_addr((atyp, bytes, port): &(u8, Vec<u8>, u16)) -> Address<'_> {
        let host = match atyp {
            1 => Host::V4(<[u8; 4]>::try_from(&bytes[..]).unwrap().into()),
            4 => Host::V6(<[u8; 16]>::try_from(&bytes[..]).unwrap().into()),
            _ => Host::Domain(bytes),
        };
        Address { host, port: *port }
    }

    proptest! {
        #[test]
        fn length_frame_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = vec![0u8; payload.len() + 2];
            let n = LengthFrame::encode(&payload, &mut out).unwrap();
            out.extend_from_slice(&tail);
            prop_assert_eq!(LengthFrame::decode(&out).unwrap(), Decoded::Complete { value: &payload[..], consumed: n });
            for cut in 0..n {
                match LengthFrame::decode(&out[..cut]).unwrap() {
                    Decoded::Partial { needed } => prop_assert!(needed > cut && needed <= n),
                    Decoded::Complete { .. } => prop_assert!(false, "prefix decoded"),
                }
            }
        }

        #[test]
        fn datagram_round_trip(a in arb_addr(), payload in proptest::collection::vec(any::<u8>(), 1..600), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let d = Datagram { addr: build_addr(&a), payload: &payload };
            let mut out = vec![0u8; d.encoded_len()];
            let n = d.encode(&mut out).unwrap();
            prop_assert_eq!(n, d.encoded_len());
            out.extend_from_slice(&tail);
            prop_assert_eq!(Datagram::decode(&out).unwrap(), Decoded::Complete { value: d, consumed: n });
            for cut in 0..n {
                match Datagram::decode(&out[..cut]).unwrap() {
                    Decoded::Partial { needed } => prop_assert!(needed > cut && needed <= n),
                    Decoded::Complete { .. } => prop_assert!(false, "prefix decoded"),
                }
            }
            let mut pkt = vec![0u8; d.packet_len()];
            let m = d.encode_packet(&mut pkt).unwrap();
            prop_assert_eq!(Datagram::decode_packet(&pkt[..m]).unwrap(), d);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = LengthFrame::decode(&bytes);
            if let Ok(Decoded::Complete { value, consumed }) = Datagram::decode(&bytes) {
                prop_assert!(consumed <= bytes.len());
                if !value.payload.is_empty() {
                    let mut out = vec![0u8; value.encoded_len()];
                    let n = value.encode(&mut out).unwrap();
                    // FRAG is ignored on read and written as 0xFF.
                    prop_assert_eq!(&out[..2], &bytes[..2]);
                    prop_assert_eq!(&out[3..n], &bytes[3..consumed]);
                }
            }
            if let Ok(d) = Datagram::decode_packet(&bytes) {
                let mut out = vec![0u8; d.packet_len()];
                let n = d.encode_packet(&mut out).unwrap();
                prop_assert_eq!(&out[3..n], &bytes[3..]);
            }
        }

        #[test]
        fn truncate_reports_cut(len in 0usize..10_000, max in 0usize..10_000) {
            let data = vec![0u8; len];
            let (kept, cut) = truncate(&data, max);
            prop_assert_eq!(kept.len() + cut, len);
            prop_assert!(kept.len() <= max);
        }
    }
}
