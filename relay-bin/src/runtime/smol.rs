//! The plan on smol.

use crate::config::resolve::Plan;
use crate::run::RunError;

/// Runs `plan` on smol until it stops.
pub fn run(plan: &Plan) -> Result<(), RunError> {
    let _ = plan;
    Err(RunError("the smol runtime is not wired yet".into()))
}
