//! SIGINT and SIGTERM: the first asks for a graceful stop (the command's
//! loop sees [`Stop::requested`]), the second exits at once with 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::exit::Code;

/// Set by the first SIGINT/SIGTERM.
#[derive(Clone)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Installs the handlers.
///
/// # Errors
/// The handlers could not be registered.
pub fn install() -> anyhow::Result<Stop> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit runs first, so it fires only
        // when the flag was already set by an earlier signal.
        signal_hook::flag::register_conditional_shutdown(
            sig,
            Code::Interrupted as i32,
            Arc::clone(&flag),
        )
        .context("cannot install signal handlers")?;
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install signal handlers")?;
    }
    Ok(Stop(flag))
}
