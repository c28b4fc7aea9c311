//! The process allocator's tuning: the binary and the benchmarks install mimalloc (candle
//! allocates a fresh buffer for every tensor, and the system allocator hands large ones back
//! to the kernel and faults them in again). [`KeepFreed`] keeps freed memory for reuse
//! where the same buffers come back again and again; [`release_free_memory`] hands it back.

use std::ffi::c_long;
use std::sync::Mutex;

// Links mimalloc (whose functions this module calls) into every binary of the crate, also
// those that keep the system allocator, such as the tests.
extern crate mimalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its `mimalloc.h`; the Rust
/// bindings do not name it): how long freed memory stays with the process before mimalloc
/// returns it to the kernel, in milliseconds.
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// The purge delay while a [`KeepFreed`] lives.
const KEEP_MS: c_long = 60_000;

unsafe extern "C" {
    fn mi_option_get(option: i32) -> c_long;
    fn mi_option_set(option: i32, value: c_long);
    fn mi_collect(force: bool);
}

/// How many [`KeepFreed`] live, and the purge delay to restore when none does.
static HOLDERS: Mutex<(usize, c_long)> = Mutex::new((0, 0));

/// While one lives, memory freed stays with the process for a minute (instead of mimalloc's
/// second) so that it is reused. For work that allocates the same buffers over and over,
/// such as a transformer's layers: with mimalloc's default, each Wan layer's buffers came
/// back from the kernel as fresh pages that it zeroed again, about 6 % of a 1.3B forward at
/// 5 latent frames. Not for work whose buffers change size as it goes (the VAE decoder's
/// stages): kept memory that no later buffer fits only adds to the peak.
///
/// Without mimalloc as the global allocator it changes nothing.
pub struct KeepFreed(());

impl KeepFreed {
    pub fn new() -> Self {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if holders.0 == 0 {
            // SAFETY: reads and sets one integer option, which mimalloc allows at any time.
            holders.1 = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
            unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, KEEP_MS) };
        }
        holders.0 += 1;
        KeepFreed(())
    }
}

impl Default for KeepFreed {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KeepFreed {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        holders.0 -= 1;
        if holders.0 == 0 {
            // SAFETY: as in `new`.
            unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, holders.1) };
        }
    }
}

/// Returns the memory freed so far to the kernel at once (between a job's phases, and after
/// a job, so that a worker waiting for the next one does not hold its peak).
pub fn release_free_memory() {
    // SAFETY: a collection of mimalloc's own heaps, safe from any thread.
    unsafe { mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_kept_while_a_holder_lives_and_restored_after() {
        let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        {
            let _a = KeepFreed::new();
            let _b = KeepFreed::new();
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, KEEP_MS);
            drop(_a);
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, KEEP_MS);
        }
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, before);
        release_free_memory();
    }
}
