//! Go `flag`-compatible command-line parsing.
//!
//! GOST uses Go's `flag` package: long flags take one or two dashes
//! (`-runtime`, `--runtime`), values follow as `-L x` or `-L=x`, boolean flags
//! take no value (`-D`, or `-D=false`), and parsing stops at the first
//! argument that is not a flag (or after `--`). Error texts match Go's.

use std::fmt;

/// Which I/O runtime runs the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// The smol (async) runtime; the default.
    #[default]
    Smol,
    /// The hand-written mio event loop.
    Mio,
}

/// The `-O` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `-O yaml`.
    Yaml,
    /// `-O json`.
    Json,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-L` service URLs, in order.
    pub services: Vec<String>,
    /// `-F` chain node URLs, in order.
    pub nodes: Vec<String>,
    /// `-C` configuration sources (file path or inline JSON), in order.
    pub configs: Vec<String>,
    /// `-D`: debug logging.
    pub debug: bool,
    /// `-DD`: trace logging.
    pub trace: bool,
    /// `-V`: print the version and exit.
    pub version: bool,
    /// `-O yaml|json`: print the configuration and exit.
    pub output: Option<OutputFormat>,
    /// `-runtime smol|mio`.
    pub runtime: Runtime,
    /// Arguments after the flags (GOST ignores them).
    pub rest: Vec<String>,
}

/// Why the command line was rejected (exit code 2), or help was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// `-h` / `-help` was given: print usage and exit 0.
    Help,
    /// A flag that is not defined, e.g. `-x` (the text holds the name without dashes).
    NotDefined(String),
    /// A value flag at the end of the command line.
    NeedsArgument(String),
    /// Malformed flag syntax such as `---x` or `-=x`.
    BadSyntax(String),
    /// A value was not accepted for a flag.
    InvalidValue {
        /// The flag name without dashes.
        flag: String,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl FlagError {
    /// The process exit code Go's `flag.ExitOnError` uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            FlagError::Help => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Help => write!(f, "flag: help requested"),
            FlagError::NotDefined(n) => write!(f, "flag provided but not defined: -{n}"),
            FlagError::NeedsArgument(n) => write!(f, "flag needs an argument: -{n}"),
            FlagError::BadSyntax(a) => write!(f, "bad flag syntax: {a}"),
            FlagError::InvalidValue {
                flag,
                value,
                reason,
            } => write!(f, "invalid value {value:?} for flag -{flag}: {reason}"),
        }
    }
}

impl std::error::Error for FlagError {}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Flags, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        if arg.len() < 2 || !arg.starts_with('-') {
            flags.rest.push(arg);
            break;
        }
        let body = if let Some(b) = arg.strip_prefix("--") {
            if b.is_empty() {
                break; // "--" terminates the flags
            }
            b
        } else {
            &arg[1..]
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::BadSyntax(arg.clone()));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let name = name.to_string();
        let bool_flag = |flag: &mut bool, inline: Option<String>| -> Result<(), FlagError> {
            *flag = match inline {
                None => true,
                Some(v) => parse_go_bool(&v).ok_or_else(|| FlagError::InvalidValue {
                    flag: name.clone(),
                    value: v,
                    reason: "parse error".into(),
                })?,
            };
            Ok(())
        };
        match name.as_str() {
            "h" | "help" => return Err(FlagError::Help),
            "D" => bool_flag(&mut flags.debug, inline)?,
            "DD" => bool_flag(&mut flags.trace, inline)?,
            "V" => bool_flag(&mut flags.version, inline)?,
            "L" | "F" | "C" | "O" | "runtime" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| FlagError::NeedsArgument(name.clone()))?,
                };
                match name.as_str() {
                    "L" => flags.services.push(value),
                    "F" => flags.nodes.push(value),
                    "C" => flags.configs.push(value),
                    "O" => {
                        flags.output = Some(match value.as_str() {
                            "yaml" => OutputFormat::Yaml,
                            "json" => OutputFormat::Json,
                            _ => {
                                return Err(FlagError::InvalidValue {
                                    flag: name,
                                    value,
                                    reason: "want yaml or json".into(),
                                });
                            }
                        })
                    }
                    _ => {
                        flags.runtime = match value.as_str() {
                            "smol" => Runtime::Smol,
                            "mio" => Runtime::Mio,
                            _ => {
                                return Err(FlagError::InvalidValue {
                                    flag: name,
                                    value,
                                    reason: "want smol or mio".into(),
                                });
                            }
                        }
                    }
                }
            }
            _ => return Err(FlagError::NotDefined(name)),
        }
    }
    flags.rest.extend(args);
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_forms() {
        let f = parse([
            "-L",
            "relay://:8420",
            "--L=tcp://:1/x:2",
            "-F=relay://h:1",
            "--runtime",
            "mio",
            "-D",
            "-O",
            "json",
            "-C",
            "a.yaml",
        ])
        .unwrap();
        assert_eq!(f.services, ["relay://:8420", "tcp://:1/x:2"]);
        assert_eq!(f.nodes, ["relay://h:1"]);
        assert_eq!(f.configs, ["a.yaml"]);
        assert_eq!(f.runtime, Runtime::Mio);
        assert!(f.debug);
        assert_eq!(f.output, Some(OutputFormat::Json));
    }

    #[test]
    fn stops_at_non_flag() {
        let f = parse(["-D", "x", "-L", ":1"]).unwrap();
        assert_eq!(f.rest, ["x", "-L", ":1"]);
        assert!(f.services.is_empty());
        let f = parse(["--", "-L"]).unwrap();
        assert_eq!(f.rest, ["-L"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(["-x"]).unwrap_err().to_string(),
            "flag provided but not defined: -x"
        );
        assert_eq!(parse(["-x"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(["-L"]).unwrap_err().to_string(),
            "flag needs an argument: -L"
        );
        assert_eq!(
            parse(["---L"]).unwrap_err().to_string(),
            "bad flag syntax: ---L"
        );
        assert!(matches!(
            parse(["-D=maybe"]),
            Err(FlagError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(["-O", "xml"]),
            Err(FlagError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(["-runtime=tokio"]),
            Err(FlagError::InvalidValue { .. })
        ));
        assert_eq!(parse(["-help"]), Err(FlagError::Help));
        assert_eq!(parse(["--h"]).unwrap_err().exit_code(), 0);
        assert!(!parse(["-D=false"]).unwrap().debug);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec("-{0,3}[A-Za-z=]{0,8}", 0..6)) {
            let _ = parse(args);
        }
    }
}
