//! The configuration layer: GOST's config model, its YAML/JSON loader, the
//! `-L`/`-F` converter, and the resolver that turns it into a runtime plan.

pub mod cli;
pub mod metadata;
pub mod model;
pub mod resolve;
pub mod yaml;

use std::fmt;

/// A configuration error: `source:line: path: message` (line omitted when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name, `command line`, or empty.
    pub source: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// Key path, e.g. `services[0].handler.metadata.readTimeout`; may be empty.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// Build an error.
    pub fn new(
        source: &str,
        line: u32,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            source: source.to_string(),
            line,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source.is_empty() {
            f.write_str(&self.source)?;
            if self.line > 0 {
                write!(f, ":{}", self.line)?;
            }
            f.write_str(": ")?;
        } else if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        // Keep it on one line whatever the underlying parser said.
        let msg = self.message.lines().next().unwrap_or("");
        f.write_str(msg)
    }
}

impl std::error::Error for ConfigError {}
