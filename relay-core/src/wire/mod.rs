//! The relay wire codec: requests, responses and feature TLVs, byte-compatible with GOST's
//! `go-gost/relay` (newest codec: unknown features kept opaque, metadata feature 5).
//!
//! ```text
//! VER(1)=0x01 | CMD or STATUS(1) | FLEN(2, big-endian) | FLEN bytes of features
//! feature:  TYPE(1) | LEN(2, big-endian) | BODY(LEN)
//! ```
//!
//! Decoding borrows from the input, never reads past `4 + FLEN` (what follows is payload) and
//! returns [`Decoded::Partial`](crate::Decoded::Partial) until the whole message is there.
//! Encoding writes into a caller buffer; [`Request::encoded_len`] says how much it needs.
//!
//! ```
//! use relay_core::wire::{Command, Request, Response, Status};
//! use relay_core::{Address, Decoded, Host};
//!
//! // What a GOST client sends for a TCP target ":22", glued to its first payload bytes.
//! let bytes = [0x01, 0x01, 0x00, 0x07, 0x02, 0x00, 0x04, 0x03, 0x00, 0x00, 0x16, b'S', b'S'];
//! let Decoded::Complete { value: req, consumed } = Request::decode(&bytes).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(consumed, 11); // the payload "SS" is left for the caller
//! assert_eq!(req.cmd, Command::CONNECT);
//! assert_eq!(req.features.addr(), Some(Address { host: Host::Domain(b""), port: 22 }));
//!
//! // A prefix is Partial, with the length to wait for.
//! assert_eq!(Request::decode(&bytes[..6]).unwrap(), Decoded::Partial { needed: 11 });
//!
//! let mut out = [0u8; 4];
//! assert_eq!(Response::status(Status::OK).encode(&mut out).unwrap(), 4);
//! assert_eq!(out, [1, 0, 0, 0]);
//! ```

use core::fmt;

mod feature;
mod message;

pub use feature::{
    Feature, METADATA_MAX_FIELD, METADATA_MAX_PAIRS, Metadata, MetadataPairs, Network, TYPE_ADDR,
    TYPE_METADATA, TYPE_NETWORK, TYPE_TUNNEL, TYPE_USER_AUTH, TunnelId,
};
pub use message::{Command, FeatureIter, Features, Request, Response, Status};

/// The only protocol version.
pub const VERSION: u8 = 0x01;

/// Why a message or feature was refused. Each variant is one of the Go decoder's outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// VER is not 1 (Go: `bad version`). GOST closes without a response.
    BadVersion,
    /// A known feature body too short for its layout, including an empty one (Go: `short
    /// buffer`).
    ShortBuffer,
    /// An address with ATYP other than 1, 3 or 4 (Go: `bad address type`).
    BadAddressType,
    /// A feature header announces a body but the features area ends right after the header
    /// (Go: `EOF`).
    MissingFeatureBody,
    /// The features area ends inside a feature header or body (Go: `unexpected EOF`).
    TruncatedFeature,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::BadVersion => "bad relay version",
            WireError::ShortBuffer => "feature body too short",
            WireError::BadAddressType => "bad address type",
            WireError::MissingFeatureBody => "feature body missing",
            WireError::TruncatedFeature => "feature truncated",
        })
    }
}

impl std::error::Error for WireError {}

/// A refused message: why, and how many bytes it occupied (4 for a bad version, else the
/// whole `4 + FLEN`, as GOST's decoder consumes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Why the message was refused.
    pub error: WireError,
    /// Bytes of input the refused message occupied.
    pub consumed: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} bytes)", self.error, self.consumed)
    }
}

impl std::error::Error for DecodeError {}
