//! The plan on relay-mio's event loop.

use crate::config::resolve::Plan;
use crate::run::RunError;

/// Runs `plan` on a mio event loop until it stops.
pub fn run(plan: &Plan) -> Result<(), RunError> {
    let _ = plan;
    Err(RunError("the mio runtime is not wired yet".into()))
}
