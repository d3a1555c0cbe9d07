//! Glue between the command line and the runtime: loading every configuration
//! source, and the entry point the runtimes will fill in.

use std::fmt;

use crate::config::model::Config;
use crate::config::yaml::{self, Format};
use crate::config::{ConfigError, cli};
use crate::flags::Flags;

/// Load every `-C` source in order, then append the `-L` / `-F` configuration.
///
/// A `-C` value starting with `{` is inline JSON; anything else is a file path
/// (`.json` → JSON, otherwise YAML). URLs are not supported.
pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    for src in &flags.configs {
        let part = if src.trim_start().starts_with('{') {
            yaml::parse_str(src, Format::Json, "-C")?
        } else if src.starts_with("http://") || src.starts_with("https://") {
            return Err(ConfigError::new(
                src,
                0,
                "",
                "loading configuration from a URL is not supported",
            ));
        } else {
            let text = std::fs::read_to_string(src)
                .map_err(|e| ConfigError::new(src, 0, "", e.to_string()))?;
            yaml::parse_str(&text, Format::detect(src, &text), src)?
        };
        cfg.merge(part);
    }
    cfg.merge(cli::build(&flags.services, &flags.nodes)?);
    Ok(cfg)
}

/// The runtime did not start or stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}
