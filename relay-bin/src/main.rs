//! The `relay` binary: GOST's command line for relay setups.

use std::process::ExitCode;

const USAGE: &str = "Usage: relay [options]
  -L value   service address, repeatable (e.g. relay://:8420)
  -F value   chain node address, repeatable (e.g. relay://host:8420)
  -C file    configuration file (YAML or JSON)
  -D         debug logging
  -V         print version and exit
  -O format  print the resolved configuration (yaml|json) and exit
  -runtime name  smol or mio (default smol)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for arg in &args {
        match arg.trim_start_matches('-') {
            "h" | "help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "V" => {
                println!("relay {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') => {
                eprintln!("relay: flag provided but not defined: {arg}");
                return ExitCode::from(2);
            }
            _ => {}
        }
    }
    eprintln!("relay: nothing to run yet");
    ExitCode::from(1)
}
