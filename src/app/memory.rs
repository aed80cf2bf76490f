//! Gives memory back to the OS after a load went away. glibc's malloc returns freed memory
//! only from the top of a heap; what thousands of topics, rings and connections freed in the
//! middle of its arenas stays in the process, so after a burst the relay's RSS stayed near its
//! peak (docs/performance.md, "Memory after a load goes away"). Every [`CHECK_EVERY`], when the
//! allocator holds more than [`TRIM_ABOVE`] free, the relay trims it (`malloc_trim(3)`: free
//! pages are handed back), on a blocking thread so no worker waits for it.
//!
//! It only hands back memory the allocator already holds free; it never frees anything of the
//! relay's. Outside glibc it does nothing.

use std::time::Duration;

use tokio::task::JoinHandle;

/// How often the allocator's free memory is looked at: a load that went away is given back
/// within this, and a look costs a walk of the allocator's free lists, a few per minute.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Free memory the allocator may keep without a trim, bytes: 16 MiB, about the relay's own
/// idle RSS, kept for the next burst (a trim walks the heap, and memory handed back is faulted
/// in again when needed).
pub const TRIM_ABOVE: usize = 16 * 1024 * 1024;

/// Starts the periodic trim (glibc only; `None` elsewhere); abort the handle to stop it.
pub fn spawn_trim() -> Option<JoinHandle<()>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    Some(tokio::spawn(async {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Ok(Some(freed)) = tokio::task::spawn_blocking(trim_if_above).await {
                tracing::debug!(bytes = freed, "memory the allocator held free was trimmed");
            }
        }
    }))
}

/// Trims the allocator when it holds more than [`TRIM_ABOVE`] free; returns the free bytes it
/// held before, if it trimmed.
pub fn trim_if_above() -> Option<usize> {
    let free = free_bytes()?;
    if free <= TRIM_ABOVE {
        return None;
    }
    trim();
    Some(free)
}

/// Bytes the allocator holds free in its arenas (`mallinfo2(3)`, `fordblks`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn free_bytes() -> Option<usize> {
    // SAFETY: `mallinfo2` only reads the allocator's statistics.
    Some(unsafe { libc::mallinfo2() }.fordblks)
}

/// Without glibc: unknown.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn free_bytes() -> Option<usize> {
    None
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` hands free pages back to the OS; it touches no live allocation.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The process's resident memory (`/proc/self/status`, `VmRSS`), bytes.
    fn rss() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    #[test]
    fn memory_a_load_freed_is_handed_back() {
        // 64 MiB in blocks below glibc's mmap threshold, so they come from an arena, and
        // every other one freed: the arena keeps the holes.
        let mut blocks: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 32 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(2).map(std::mem::take).collect();
        drop(blocks);
        let free = free_bytes().unwrap();
        assert!(free > TRIM_ABOVE, "{free} bytes free after the load");
        let before = rss();
        assert!(trim_if_above().is_some(), "over the threshold: trimmed");
        let after = rss();
        assert!(
            after + 16 * 1024 * 1024 < before,
            "the 32 MiB of holes left the process: RSS {before} → {after} bytes"
        );
        drop(kept);
    }
}
