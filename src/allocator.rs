//! The process allocator's tuning: the binary and the benchmarks install mimalloc (candle
//! allocates a fresh buffer for every tensor, and the system allocator hands large ones back
//! to the kernel and faults them in again); this module keeps freed memory for reuse while
//! a job runs and hands it back when the job is over.

use std::ffi::c_long;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its `mimalloc.h`; the Rust
/// bindings do not name it).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// How long freed memory stays with the process before mimalloc returns it to the kernel.
/// Its default, one second, is shorter than one transformer layer of a Wan forward at
/// video sizes, so every layer's buffers came back from the kernel as fresh pages that it
/// zeroed again: about 6 % of a 1.3B forward at 5 latent frames.
const PURGE_DELAY_MS: c_long = 60_000;

unsafe extern "C" {
    fn mi_option_set(option: i32, value: c_long);
    fn mi_collect(force: bool);
}

/// Sets mimalloc's options for this process. Call it first thing in `main`; it has no
/// effect where mimalloc is not the global allocator.
pub fn configure() {
    // SAFETY: sets one integer option; mimalloc reads options lazily and allows setting
    // them at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Returns the memory freed so far to the kernel at once (after a job, so that a worker
/// waiting for the next one does not hold its peak).
pub fn release_free_memory() {
    // SAFETY: a collection of mimalloc's own heaps, safe from any thread.
    unsafe { mi_collect(true) };
}
