//! Relay on smol: connect through a relay server, serve one, remote-forward with BIND.
#![warn(missing_docs)]
