//! Runs independent simulation jobs on a few threads, in any order, with a
//! progress bar; results come back in the jobs' order, so output is
//! deterministic whatever the scheduling.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A progress bar for `len` jobs labelled `what`; hidden when `quiet`.
pub fn bar(len: usize, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(what.to_string());
    pb
}

/// Hands the heap freed by a finished simulation back to the system. glibc
/// keeps freed chunks of its arenas resident; a run of 10,000 proxies frees
/// about a gigabyte, and without this the next runs grow the process by as
/// much each time.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes
    // each arena's lock, so it is safe while other threads allocate.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `f` over `jobs` on `threads` threads (at least one).
pub fn map<T: Sync, R: Send>(
    jobs: &[T],
    threads: usize,
    pb: &ProgressBar,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = f(job);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
                release_free_memory();
                pb.inc(1);
            });
        }
    });
    pb.finish();
    results
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_jobs_order() {
        let jobs: Vec<u64> = (0..50).collect();
        let out = map(&jobs, 3, &ProgressBar::hidden(), |&x| x * x);
        assert_eq!(out, jobs.iter().map(|x| x * x).collect::<Vec<_>>());
    }
}
