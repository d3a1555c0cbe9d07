//! Running a resolved [`Plan`] on one of the two runtimes.

use crate::config::resolve::Plan;
use crate::flags::Runtime;
use crate::run::RunError;

pub mod mio;
pub mod smol;

/// Runs `plan` on `runtime` until it stops.
pub fn run(plan: &Plan, runtime: Runtime) -> Result<(), RunError> {
    match runtime {
        Runtime::Smol => smol::run(plan),
        Runtime::Mio => mio::run(plan),
    }
}
