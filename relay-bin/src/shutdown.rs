//! Clean shutdown on SIGINT and SIGTERM, the same for both runtimes: a watcher thread logs the
//! signal and ends the process, which closes every listener and tunnel at once (the kernel sends
//! the FINs). Bounded by construction: nothing is waited for.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts the watcher. Failing to install it is logged, not fatal: the default action of both
/// signals already ends the process.
pub fn install() {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch SIGINT/SIGTERM: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!("{name}: shutting down");
                std::process::exit(0);
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot watch SIGINT/SIGTERM: {e}");
    }
}
