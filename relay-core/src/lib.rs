//! Sans-IO implementation of GOST's *relay* protocol.
//!
//! Everything in this crate is a pure function or a state machine over bytes: no socket, file,
//! clock, thread or executor. Time comes in as an argument; decisions go out as values.
//!
//! | module | what it does |
//! |---|---|
//! | [`codec`] | the `Partial`/`Complete` result and the encode errors every codec shares |
//! | [`addr`] | the SOCKS5-style address shared by the relay Addr feature and the UDP framings |
//! | [`wire`] | relay requests, responses and features (GOST's `go-gost/relay` codec) |
//! | [`mux`] | the smux-compatible stream multiplexer used by TCP BIND (frames and session) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod codec;
pub mod mux;
pub mod wire;

pub use addr::{Address, Host};
pub use codec::{BufferTooSmall, Decoded, EncodeError};
