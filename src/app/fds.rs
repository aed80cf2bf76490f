//! The process's file-descriptor limit (`RLIMIT_NOFILE`): raised at start from the soft to the
//! hard limit, and compared with what the configured caps can open, so a relay that could run
//! out of descriptors says so before it does.
//!
//! It also grows the process's descriptor table once, at start, to what the caps can hold
//! ([`grow_table`]), so serving never waits for the kernel to grow it.
//!
//! It only reads and sets the limit, sizes the table and hands the limit to the count of held
//! descriptors ([`crate::ops::descriptors`]); it never closes or refuses a connection.

// `rlim_t` is `u64` on Linux but not on every platform `libc` serves: the casts stay.
#![allow(clippy::unnecessary_cast)]

use std::io;
use std::sync::Arc;

use crate::ops::descriptors::Descriptors;

pub use crate::ops::descriptors::RESERVE;

/// The soft and hard `RLIMIT_NOFILE`, descriptors.
///
/// # Errors
/// The OS error of `getrlimit(2)`.
pub fn limits() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
///
/// # Errors
/// The OS error of `getrlimit(2)` or `setrlimit(2)`.
pub fn raise_to_hard_limit() -> io::Result<u64> {
    let (soft, hard) = limits()?;
    if soft >= hard {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: hard as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `limit` is a valid `rlimit`; raising the soft limit up to the hard one needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}

/// Grows the process's descriptor table to hold `descriptors` entries, by duplicating a
/// descriptor to the lowest free number at or above `descriptors - 1` (`F_DUPFD`, which never
/// takes an open number) and closing it again; the kernel never shrinks a table. Growing it
/// while serving stalls the thread that opened the descriptor crossing each power of two (in
/// a process with several threads the old table is freed only after an RCU grace period):
/// slow first events in bursts at the 256th, 512th, … connection. Costs about 8 bytes per
/// entry (160 KiB for the default caps).
///
/// # Errors
/// The OS error of `open(2)`, `fcntl(2)` (e.g. `descriptors` above the limit) or `close(2)`.
pub fn grow_table(descriptors: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Some(last) = descriptors.checked_sub(1) else {
        return Ok(());
    };
    let last = libc::c_int::try_from(last).unwrap_or(libc::c_int::MAX);
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: `null` is an open descriptor for the call; F_DUPFD takes no pointer.
    let high = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, last) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` was just opened by F_DUPFD above and is owned by nothing else.
    if unsafe { libc::close(high) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Descriptors the caps can hold open at once: one per client connection, one per topic's
/// upstream connection, and [`RESERVE`].
pub fn needed(max_connections: usize, max_topics: usize) -> u64 {
    max_connections as u64 + max_topics as u64 + RESERVE as u64
}

/// Raises the limit ([`raise_to_hard_limit`]) and warns, with the figures, when
/// `max_connections` and `max_topics` (plus [`RESERVE`]) can exceed it: past the limit
/// accepts and upstream connects fail with EMFILE. Returns the limit in force, if it could be
/// read.
pub fn prepare(max_connections: usize, max_topics: usize) -> Option<u64> {
    let limit = match raise_to_hard_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit");
            return None;
        }
    };
    let needed = needed(max_connections, max_topics);
    if let Err(e) = grow_table(needed.min(limit)) {
        tracing::debug!(error = %e, "the descriptor table was not grown at start");
    }
    if needed > limit {
        tracing::warn!(
            limit,
            needed,
            max_connections,
            max_topics,
            reserve = RESERVE,
            "the file-descriptor limit (RLIMIT_NOFILE, raised to the hard limit) is below \
             limits.max_connections + limits.max_topics + the reserve: new topics will be \
             refused before the reserve is reached, so clients of open topics are still served; \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower the caps"
        );
    }
    Some(limit)
}

/// Raises and checks the limit ([`prepare`]), and counts the descriptors the relay's
/// connections and topics hold against it (without a limit when it cannot be read).
pub fn descriptors(max_connections: usize, max_topics: usize) -> Arc<Descriptors> {
    match prepare(max_connections, max_topics) {
        Some(limit) => Descriptors::new(usize::try_from(limit).unwrap_or(usize::MAX)),
        None => Descriptors::unlimited(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's size (`FDSize` in /proc/self/status), entries.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_table_is_grown_to_hold_what_the_caps_need() {
        let (soft, _) = limits().unwrap();
        let wanted = soft.min(4096);
        grow_table(wanted).unwrap();
        assert!(table_size() >= wanted, "{} < {wanted}", table_size());
        let null = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        assert!(
            (null.as_raw_fd() as u64) < 256,
            "the high descriptor was closed again; new ones take low numbers"
        );
    }
}
