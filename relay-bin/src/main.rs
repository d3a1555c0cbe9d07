//! The `relay` binary: GOST's command line and configuration for relay setups.

use std::process::ExitCode;

use relay_bin::config::model::Config;
use relay_bin::config::resolve::resolve;
use relay_bin::flags::{self, FlagError, OutputFormat};
use relay_bin::run::load;
use relay_bin::runtime::run;

const USAGE: &str = "Usage: relay [options]
  -L value       service address, repeatable (e.g. relay://:8420)
  -F value       chain node address, repeatable (e.g. relay://host:8420)
  -C value       configuration file (YAML or JSON) or inline JSON, repeatable
  -D             debug logging
  -DD            trace logging
  -V             print version and exit
  -O format      print the configuration (yaml|json) and exit
  -runtime name  smol or mio (default smol)
";

fn fail(msg: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(code)
}

fn print_config(cfg: &Config, format: OutputFormat) -> Result<String, String> {
    match format {
        OutputFormat::Yaml => serde_saphyr::to_string(cfg).map_err(|e| e.to_string()),
        OutputFormat::Json => serde_json::to_string_pretty(cfg)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let flags = match flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(FlagError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e, e.exit_code()),
    };
    if flags.version {
        println!("relay {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let cfg = match load(&flags) {
        Ok(c) => c,
        Err(e) => return fail(e, 1),
    };
    if cfg.services.is_empty() {
        return fail("no services configured (use -L or -C)", 1);
    }
    let resolved = resolve(&cfg);
    if let Some(format) = flags.output {
        // Like GOST, print the configuration even when this build cannot run
        // it (e.g. relay+tls); say why on stderr.
        if let Err(e) = &resolved {
            eprintln!("warning: {e}");
        }
        return match print_config(&cfg, format) {
            Ok(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e, 1),
        };
    }
    relay_bin::logging::init(flags.debug, flags.trace);
    relay_bin::shutdown::install();
    let plan = match resolved {
        Ok(p) => p,
        Err(e) => return fail(e, 1),
    };
    match run(&plan, flags.runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}
