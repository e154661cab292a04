//! Giving freed heap memory back to the operating system in long-running processes.
//!
//! glibc's allocator keeps memory that Arrow buffers freed in its arenas (one per thread that
//! allocated, up to 8 × cores) and returns it only from the top of the main heap. An executor
//! or scheduler running a 1-second-trigger stream for hours frees gigabytes of batches: under
//! heaptrack its live heap stayed flat at 3 MB while its resident size grew by about
//! 30 MiB per hour (BENCHMARKS.md, "The executors"). `malloc_trim(0)` walks every arena and
//! gives the free pages back (`madvise(MADV_DONTNEED)`), as the JVM's `-XX:TrimNativeHeapInterval`
//! does for the same reason.
//!
//! [`start`] runs it on a thread of its own every [`TRIM_EVERY`]. On other allocators and
//! platforms (musl, macOS) it does nothing.

use std::time::Duration;

/// How often [`start`]'s thread trims: 30 s. A trim of a 100–300 MiB heap takes well under a
/// millisecond of that thread's time; the task threads are not stopped.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Starts a thread named `ember-heap-trim` that calls [`trim`] every `every`, for the life of the
/// process. Call it once, at the start of a daemon or a stream driver; a second call starts a
/// second thread, which is harmless but useless.
pub fn start(every: Duration) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ember-heap-trim".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                trim();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("heap trimming not started (the process keeps freed memory): {e}");
    }
}

/// Gives the allocator's free pages back to the operating system now. Returns true when some
/// memory was released (glibc's `malloc_trim` result), false when there was nothing to give or
/// the allocator is not glibc's.
#[allow(unsafe_code)]
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only takes glibc's arena locks and returns free pages; it reads no
        // pointer of ours and is documented thread-safe (glibc manual, "Heap Consistency").
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
#[path = "heap_trim_tests.rs"]
mod tests;
