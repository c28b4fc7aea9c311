//! Ctrl-C handling for long runs: the first SIGINT (or SIGTERM) asks the running job to stop at
//! the next step boundary (the command then records the job `canceled` and exits 130); a second
//! one ends the process at once with status 130, after running the abort hook the command
//! registered (which records the job `canceled` and removes its files), so that even an
//! impatient interrupt loses nothing and leaves nothing half-done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::models::Control;

/// What runs on a second signal, just before the process exits.
type AbortHook = Box<dyn FnOnce() + Send>;

/// A shared "stop requested" flag, set from the signal handler, and the abort hook.
#[derive(Clone)]
pub struct CancelFlag {
    flag: Arc<AtomicBool>,
    abort: Arc<Mutex<Option<AbortHook>>>,
}

impl std::fmt::Debug for CancelFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelFlag")
            .field("canceled", &self.is_canceled())
            .finish_non_exhaustive()
    }
}

impl CancelFlag {
    /// A flag no signal sets (for tests and library use).
    pub fn new() -> CancelFlag {
        CancelFlag {
            flag: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(Mutex::new(None)),
        }
    }

    /// Installs the handlers: every SIGINT/SIGTERM sets the flag (in the handler itself); a
    /// thread watches the count and, from the second signal on, runs the abort hook and exits
    /// with 130.
    pub fn install() -> std::io::Result<CancelFlag> {
        let flag = CancelFlag::new();
        let count = Arc::new(AtomicUsize::new(0));
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag.flag))?;
            let count = Arc::clone(&count);
            // SAFETY: the action only increments an atomic, which is async-signal-safe.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    count.fetch_add(1, Ordering::SeqCst);
                })?;
            }
        }
        let abort = Arc::clone(&flag.abort);
        std::thread::Builder::new()
            .name("aivideo-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if count.load(Ordering::SeqCst) >= 2 {
                        let hook = abort.lock().unwrap_or_else(|p| p.into_inner()).take();
                        if let Some(hook) = hook {
                            hook();
                        }
                        std::process::exit(i32::from(crate::error::exit::CANCELED));
                    }
                }
            })?;
        Ok(flag)
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn is_canceled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// What a model's step callback should answer.
    pub fn control(&self) -> Control {
        if self.is_canceled() {
            Control::Cancel
        } else {
            Control::Continue
        }
    }

    /// Sets what a second signal runs before the process exits (replacing any earlier hook).
    pub fn on_abort(&self, hook: impl FnOnce() + Send + 'static) {
        *self.abort.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Removes the abort hook (the work it would clean up is finished).
    pub fn clear_abort(&self) {
        self.abort.lock().unwrap_or_else(|p| p.into_inner()).take();
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
    fn manual_cancel_and_the_abort_hook_are_shared_by_clones() {
        let flag = CancelFlag::new();
        let seen_by_worker = flag.clone();
        flag.cancel();
        assert!(seen_by_worker.is_canceled());
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        flag.on_abort(move || r.store(true, Ordering::SeqCst));
        let hook = seen_by_worker.abort.lock().unwrap().take().unwrap();
        hook();
        assert!(ran.load(Ordering::SeqCst));
        flag.on_abort(|| {});
        flag.clear_abort();
        assert!(seen_by_worker.abort.lock().unwrap().is_none());
    }
}
