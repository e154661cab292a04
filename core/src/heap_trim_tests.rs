use super::*;

/// 64 MiB freed in 64 KiB blocks (below glibc's 128 KiB mmap threshold, so they live in an
/// arena), with the last block kept so that `free` itself cannot shrink the heap from the top:
/// only `malloc_trim` gives those pages back.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn freed_memory_in_the_middle_of_the_heap_is_given_back() {
    let mut blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8; 64 * 1024]).collect();
    let kept = blocks.pop().expect("1024 blocks");
    drop(blocks);
    assert!(
        trim(),
        "malloc_trim released nothing after 64 MiB were freed"
    );
    assert_eq!(kept[0], (1023 % 256) as u8);
}

#[test]
fn the_trimming_thread_starts_and_runs() {
    // A short period: the thread must survive several trims without disturbing the caller.
    start(Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(50));
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(
            names.iter().any(|n| n == "ember-heap-trim"),
            "no ember-heap-trim thread among {names:?}"
        );
    }
}
