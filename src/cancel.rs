//! Ctrl-C handling for long runs: the first SIGINT (or SIGTERM) asks the running job to stop at
//! the next step boundary (the command then records the job `canceled` and exits 130); a second
//! one ends the process at once with status 130.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::models::Control;

/// A shared "stop requested" flag, set from the signal handler.
#[derive(Debug, Clone)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag no signal sets (for tests and library use).
    pub fn new() -> CancelFlag {
        CancelFlag(Arc::new(AtomicBool::new(false)))
    }

    /// Installs the handlers: the first SIGINT/SIGTERM sets the flag, the next one exits 130.
    pub fn install() -> std::io::Result<CancelFlag> {
        let flag = CancelFlag::new();
        for signal in [SIGINT, SIGTERM] {
            // Order matters: the shutdown check must run before the flag is set, so that
            // only a second signal finds it set.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(crate::error::exit::CANCELED),
                Arc::clone(&flag.0),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&flag.0))?;
        }
        Ok(flag)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// What a model's step callback should answer.
    pub fn control(&self) -> Control {
        if self.is_canceled() {
            Control::Cancel
        } else {
            Control::Continue
        }
    }
}

impl Default for CancelFlag {
    fn default() -> Self {
        CancelFlag::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sigint_sets_the_flag_instead_of_killing_the_process() {
        let flag = CancelFlag::install().unwrap();
        assert_eq!(flag.control(), Control::Continue);
        // Were the handler missing, this would end the test process (and fail the run).
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert!(flag.is_canceled());
        assert_eq!(flag.control(), Control::Cancel);
    }

    #[test]
    fn manual_cancel_is_shared_by_clones() {
        let flag = CancelFlag::new();
        let seen_by_worker = flag.clone();
        flag.cancel();
        assert!(seen_by_worker.is_canceled());
    }
}
