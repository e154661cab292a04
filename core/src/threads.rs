//! The async runtime every Ember process uses.
//!
//! Its threads get [`THREAD_STACK_BYTES`] of stack instead of tokio's 2 MiB. DataFusion's
//! protobuf plan decoding (`try_into_logical_plan` → `parse_expr`, run by Ballista's scheduler
//! on tokio's blocking threads) recurses once per plan level and expression. A job whose views
//! nest a few levels overflowed 2 MiB in a debug build. The size is reserved virtual memory,
//! touched only when used.

use std::future::Future;

/// Stack size of the runtime's worker and blocking threads, in bytes (16 MiB).
pub const THREAD_STACK_BYTES: usize = 16 * 1024 * 1024;

/// A multi-threaded tokio runtime with I/O and timers, and [`THREAD_STACK_BYTES`] stacks.
///
/// # Errors
/// The OS error when the runtime's threads cannot be created.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
}

/// Runs `future` to completion on a fresh [`tokio_runtime`] (tests, short-lived tools).
///
/// # Panics
/// When the runtime cannot be created.
pub fn block_on<F: Future>(future: F) -> F::Output {
    #[allow(clippy::expect_used)]
    tokio_runtime()
        .expect("create the tokio runtime")
        .block_on(future)
}
