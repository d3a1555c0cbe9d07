//! The configuration layer of the `relay` binary: GOST's `-L`/`-F`/`-C`
//! command line and YAML/JSON configuration, resolved into a runtime plan.

#![warn(missing_docs)]

pub mod config;
pub mod flags;
pub mod logging;
pub mod run;
pub mod runtime;
pub mod shutdown;
pub mod url;
