//! Sans-IO implementation of GOST's *relay* protocol.
//!
//! Everything in this crate is a pure function or a state machine over bytes: no socket, file,
//! clock, thread or executor. Time comes in as an argument; decisions go out as values.
//!
//! | module | what it does |
//! |---|---|
//! | [`codec`] | the `Partial`/`Complete` result and the encode errors every codec shares |
//! | [`admission`] | per-service limits: connections, handshakes (oldest evicted), per-source rate |
//! | [`addr`] | the SOCKS5-style address shared by the relay Addr feature and the UDP framings |
//! | [`buf`] | a fixed-capacity receive buffer for decoding framed messages in place |
//! | [`wire`] | relay requests, responses and features (GOST's `go-gost/relay` codec) |
//! | [`target`] | owned dial/listen addresses handed to adapters without allocating |
//! | [`server`] | the server handshake: deadline, auth, CONNECT, forwarding, BIND, statuses |
//! | [`client`] | the client handshake: GOST's request bytes, lazy or immediate, never stalling |
//! | [`policy`] | target rules: GOST's bypass (status 3), allow lists, the SSRF guard |
//! | [`route`] | chains of relay nodes: one node per hop, one request per hop |
//! | [`select`] | GOST's node selection: round-robin, random, failover, fail filter |
//! | `sim` | (feature `sim`) a deterministic client + server + target simulation on a fake clock |
//! | [`auth`] | user/password tables with constant-time checks, shared by every server handshake |
//! | [`entry`] | client-facing proxy handshakes: SOCKS5, SOCKS4/4a, HTTP, and protocol sniffing |
//! | [`udp`] | UDP datagram framings: length-prefixed (UDP CONNECT), SOCKS5-style (UDP BIND / association), SOCKS5 UDP packets |
//! | [`bind`] | BIND's data phase: per-stream preamble, rebind backoff, UDP BIND relay policy |
//! | [`mux`] | the smux-compatible stream multiplexer used by TCP BIND (frames and session) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod admission;
pub mod auth;
pub mod bind;
pub mod buf;
pub mod client;
pub mod codec;
pub mod entry;
pub mod mux;
pub mod policy;
pub mod route;
pub mod select;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim;
pub mod target;
pub mod udp;
pub mod wire;

pub use addr::{Address, Host};
pub use codec::{BufferTooSmall, Decoded, EncodeError};
