//! Relay on a hand-rolled mio event loop: tokens, readiness and timers, no executor.
#![warn(missing_docs)]
